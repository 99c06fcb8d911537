// Constants of the one erf approximation used by every variant's GELU epilogue (and by
// fastdistilbert/reference_ops.py, which spells the same float32 values with float.fromhex).
//
//   erf(x) ~= sign(x) * (1 - P(u) * exp(-a^2)),  a = min(|x|, 4),  u = 1 / (1 + p * a),
//   P(u) = ((((a5 u + a4) u + a3) u + a2) u + a1) u        (Abramowitz & Stegun 7.1.26)
//   exp(y), y in [-16, 0]: n = nearbyint(y * log2(e)), r = (y - n * ln2_hi) - n * ln2_lo,
//   exp(y) = 2^n * (degree-7 Taylor polynomial of e^r, Horner), 2^n built from exponent bits.
// Clamping |x| at 4 is exact in fp32 (erfc(4) = 1.5e-8 < half an ulp of 1). Max abs error against
// float64 erf over [-6, 6]: 5.3e-7 (near 0, where 1 - P*exp cancels). That is plenty for GELU, the only
// user: GELU(y) = 0.5 y (1 + erf(y / sqrt 2)) only needs erf's ABSOLUTE error small, and the abs error of
// GELU is 4.7e-7 (tests/test_kernels_ops.py checks <= 1e-6). A Taylor branch for small |x| (relative accuracy of
// erf itself) cost a third of the epilogue's time for nothing GELU can see, so it was dropped.
// Hex literals so C++ and Python hold bit-identical float32 constants. Plain constants only
// (no inline functions): safe to include from every ISA translation unit.
#pragma once

namespace fastdistilbert {
namespace erfc {

constexpr float kClamp = 4.0f;
constexpr float kP = 0x1.4f740ap-2f;
constexpr float kA1 = 0x1.04f20cp-2f;
constexpr float kA2 = -0x1.23531cp-2f;
constexpr float kA3 = 0x1.6be1c6p+0f;
constexpr float kA4 = -0x1.7401c6p+0f;
constexpr float kA5 = 0x1.0fb844p+0f;
constexpr float kLog2e = 0x1.715476p+0f;
constexpr float kLn2Hi = 0x1.62e4p-1f;
constexpr float kLn2Lo = 0x1.7f7d1cp-20f;
// Taylor coefficients of e^r from r^7 down to r^0.
constexpr float kExpPoly[8] = {0x1.a01a02p-13f, 0x1.6c16c2p-10f, 0x1.111112p-7f, 0x1.555556p-5f,
                               0x1.555556p-3f,  0x1p-1f,         0x1p+0f,         0x1p+0f};
constexpr float kInvSqrt2 = 0x1.6a09e6p-1f;

}  // namespace erfc
}  // namespace fastdistilbert
