// Constants of the one erf approximation used by every variant's GELU epilogue (and by
// fastdistilbert/reference_ops.py, which spells the same float32 values with float.fromhex).
//
//   erf(x) ~= a * P(z) / Q(z),  a = clamp(x, -4, 4),  z = a * a,
//   P, Q of degree 5 in z (Horner with fused multiply-adds, Q's constant term 1): a rational fit of
//   erf(x) / x on [0, 4] made for this project by csrc/erf_fit.py (reweighted least squares toward minimax).
// Clamping at 4 is exact in fp32 up to the fit (erfc(4) = 1.5e-8 < half an ulp of 1). Max abs error against
// float64 erf over [-6, 6]: 2.1e-8 for the fit in float64, 3.3e-7 evaluated in fp32 (rounding, near |erf| = 1);
// GELU(y) = 0.5 y (1 + erf(y / sqrt 2)) is then within 2.5e-7 max(1, |y|) of the exact GELU
// (tests/test_kernels_ops.py). It replaced Abramowitz & Stegun 7.1.26 (a division, two polynomials and an exp):
// half the instructions in the GELU epilogue at the same accuracy. The FMAs (10 instead of 20 instructions) made
// seq 128 x 8 about 4% faster (80% (4,1), 2 threads); reference_ops.fma32 rounds like one.
// Hex literals so C++ and Python hold bit-identical float32 constants. Plain constants only
// (no inline functions): safe to include from every ISA translation unit.
#pragma once

namespace fastdistilbert {
namespace erfc {

constexpr float kClamp = 4.0f;
// P and Q coefficients from z^0 up to z^5.
constexpr float kErfP[6] = {0x1.20dd72p+0f, 0x1.91e5eap-3f,  0x1.b5fef6p-5f,
                            0x1.065b96p-8f, 0x1.2e079cp-12f, 0x1.091378p-19f};
constexpr float kErfQ[6] = {0x1p+0f,        0x1.03b574p-1f,  0x1.dd124cp-4f,
                            0x1.fa0eb0p-7f, 0x1.3ed6f2p-10f, 0x1.3a6c4ap-15f};
// exp(y), y <= 0 (the fp32 attention's softmax, with fused multiply-adds): n = nearbyint(y * log2(e)),
// r = (y - n * ln2_hi) - n * ln2_lo, exp(y) = 2^n * (Taylor polynomial of e^r, Horner), 2^n from exponent bits.
constexpr float kLog2e = 0x1.715476p+0f;
constexpr float kLn2Hi = 0x1.62e4p-1f;
constexpr float kLn2Lo = 0x1.7f7d1cp-20f;
// Taylor coefficients of e^r from r^7 down to r^0.
constexpr float kExpPoly[8] = {0x1.a01a02p-13f, 0x1.6c16c2p-10f, 0x1.111112p-7f, 0x1.555556p-5f,
                               0x1.555556p-3f,  0x1p-1f,         0x1p+0f,         0x1p+0f};
constexpr float kInvSqrt2 = 0x1.6a09e6p-1f;
// The INT8 attention's softmax codes, 255 exp(d) for d in [-16, 0]: x = d * log2(e), n = nearbyint(x), f = x - n
// (exact), 255 * 2^f ~= ((c3 f + c2) f + c1) f + c0 (Horner, plain multiplies and adds), times 2^n from exponent
// bits. A relative fit of 255 * 2^f on [-1/2, 1/2] (max relative error 7.5e-5, at most 0.019 code units off
// 255 exp(d)): 13 instructions instead of the 20 of a degree-5 exp, and 8-bit codes need no more.
constexpr float kExp2Codes[4] = {0x1.fdf6a0p+7f, 0x1.619026p+7f, 0x1.eeec74p+5f, 0x1.c231e8p+3f};

}  // namespace erfc
}  // namespace fastdistilbert
