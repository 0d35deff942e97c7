// Importance matrices: for every weight matrix, the mean square of each input column's
// activations on calibration text. llama.cpp's weighted quantizers (and frugal's) weigh each
// weight's rounding error by it: the expected squared output error of a weight error dw in
// column j is E[x_j^2] dw^2.
//
// Files use llama.cpp's layouts, so llama-imatrix output can be passed to `frugal quantize
// --imatrix` and frugal's to llama-quantize --imatrix. Both are read (by their first bytes);
// a name ending in .gguf is written as GGUF, any other as imatrix.dat.
//   imatrix.dat: i32 n_entries; per entry: i32 name length, name bytes, i32 ncall, i32 nval,
//     nval f32 (the column means of x^2 multiplied by ncall); then i32 ncall of the last entry
//     and i32 length + bytes of the calibration file's name.
//   GGUF (llama-imatrix's default since 2025): general.type "imatrix", imatrix.datasets,
//     imatrix.chunk_count, imatrix.chunk_size, and per matrix two F32 tensors, NAME.in_sum2
//     [n_mat][n_per_row] (sums of x^2 over the rows seen) and NAME.counts [n_mat][1] (rows
//     seen); the importance is their quotient. n_mat > 1 holds a mixture of experts' matrices,
//     which frugal's models do not have.
// Entry names are GGUF tensor names ("blk.0.attn_q.weight").
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace frugal {

struct ImportanceMatrix {
  struct Entry {
    std::vector<float> values;  // mean of x^2 per input column
    int32_t ncall = 1;          // calibration chunks it was computed over
  };
  std::map<std::string, Entry> entries;
  std::string dataset;     // the calibration text's name
  int32_t chunk_size = 0;  // tokens per calibration chunk (0: unknown)

  const std::vector<float>* find(const std::string& name) const {
    auto it = entries.find(name);
    return it == entries.end() ? nullptr : &it->second.values;
  }

  // Atomic write (temporary file renamed into place). Throws frugal::Error naming the path.
  void save(const std::string& path) const;
  // Throws frugal::Error naming the path when it is missing or not an imatrix file.
  static ImportanceMatrix load(const std::string& path);
};

}  // namespace frugal
