// Cutting the queries of one attention call into groups that share every key and value load:
// groups of four, then one group of the remaining three, two or one. A decode step's query
// heads of one kv head (three for SmolLM2's GQA) are then one group, not three single queries
// that each reload the keys. Plain C++ (no intrinsics), so both ISA files include it.
#pragma once

#include <cstdint>
#include <type_traits>

namespace frugal::kernels {

inline constexpr int kMaxQueryGroup = 4;

// fn(std::integral_constant<int, G>{}, first_query) for each group, G a compile-time size.
template <typename Fn>
inline void for_query_groups(int64_t n_q, Fn&& fn) {
  int64_t i = 0;
  for (; i + kMaxQueryGroup <= n_q; i += kMaxQueryGroup) fn(std::integral_constant<int, kMaxQueryGroup>{}, i);
  switch (n_q - i) {
    case 3: fn(std::integral_constant<int, 3>{}, i); break;
    case 2: fn(std::integral_constant<int, 2>{}, i); break;
    case 1: fn(std::integral_constant<int, 1>{}, i); break;
    default: break;
  }
}

}  // namespace frugal::kernels
