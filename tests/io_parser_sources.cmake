# The model-file parsers and the few core files they use, for the builds that compile them
# with sanitizers themselves: tests/io_asan (g++) and tests/fuzz/clang (clang++ with
# libFuzzer). The list is explicit so that files other work adds to src/io do not silently
# join (and break) those builds: a new parser source is added here by hand.
cmake_path(GET CMAKE_CURRENT_LIST_DIR PARENT_PATH frugal_parser_root)
set(frugal_io_parser_sources
    ${frugal_parser_root}/src/io/gguf.cc
    ${frugal_parser_root}/src/io/gguf_writer.cc
    ${frugal_parser_root}/src/io/atomic_output_file.cc
    ${frugal_parser_root}/src/io/safetensors.cc
    ${frugal_parser_root}/src/io/mapped_file.cc
    ${frugal_parser_root}/src/core/check.cc
    ${frugal_parser_root}/src/core/dtype.cc
    ${frugal_parser_root}/src/core/tensor.cc)
