// The exponential the sampler weighs candidates with: exp(x) for x <= 0 (a logit less the best
// one), exactly 0 below -87 and for -inf (a banned token).
#pragma once

#include <cstddef>

namespace frugal {

// x[i] = exp(x[i]) for every x[i] <= 0 (NaN is never passed: the sampler refuses such logits).
// Plain float operations (Cody-Waite reduction, a degree-6 polynomial, the exponent put in by
// bits) that every machine rounds alike, vectorized or not: a seed draws the same token
// everywhere. Within 3 ulp of exp (2.88 at worst over every float of [-87, 0]).
void exp_in_place(float* x, size_t n);
// w[i] = exp((x[i] - max) / t) for max >= every x[i] and t > 0: the weights of a softmax at
// temperature t, rounded as apply_temperature then exp_in_place round them.
void exp_at_temperature(const float* x, size_t n, float max, float t, float* w);
// The sum of w[0, n) in a fixed order, the same on every machine and vector width: eight double
// lanes (entry i to lane i % 8, each in turn), then the lanes in turn.
double fixed_order_sum(const float* w, size_t n);

}  // namespace frugal
