# The chat page: the files of src/server/web/ compiled into frugal_lib as byte arrays (see
# src/server/web_assets.h), so `frugal serve` carries its page. Included from the root
# CMakeLists.txt after frugal_lib is defined; regenerated whenever a file changes.
file(GLOB FRUGAL_WEB_FILES CONFIGURE_DEPENDS ${CMAKE_CURRENT_LIST_DIR}/*.html ${CMAKE_CURRENT_LIST_DIR}/*.js
     ${CMAKE_CURRENT_LIST_DIR}/*.css ${CMAKE_CURRENT_LIST_DIR}/*.svg)
set(FRUGAL_WEB_CC ${CMAKE_BINARY_DIR}/generated/web_assets_data.cc)
# A list would be split into separate command arguments: pass it joined with '|'.
string(REPLACE ";" "|" FRUGAL_WEB_FILE_ARG "${FRUGAL_WEB_FILES}")
add_custom_command(
  OUTPUT ${FRUGAL_WEB_CC}
  COMMAND ${CMAKE_COMMAND} -DOUT=${FRUGAL_WEB_CC} "-DFILES=${FRUGAL_WEB_FILE_ARG}" -P
          ${CMAKE_CURRENT_LIST_DIR}/embed_files.cmake
  DEPENDS ${FRUGAL_WEB_FILES} ${CMAKE_CURRENT_LIST_DIR}/embed_files.cmake
  COMMENT "Embedding the chat page (src/server/web)"
  VERBATIM)
target_sources(frugal_lib PRIVATE ${FRUGAL_WEB_CC})
