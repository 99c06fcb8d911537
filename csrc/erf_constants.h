// Constants of the one erf approximation used by every variant's GELU epilogue (and by
// fastdistilbert/reference_ops.py, which spells the same float32 values with float.fromhex).
//
//   |x| <  1: erf(x) ~= x * S(x^2), S = Taylor series of erf(x)/x to x^20 (11 terms, Horner)
//   |x| >= 1: erf(x) ~= sign(x) * (1 - P(u) * exp(-a^2)),  a = min(|x|, 4),  u = 1 / (1 + p * a),
//             P(u) = ((((a5 u + a4) u + a3) u + a2) u + a1) u        (Abramowitz & Stegun 7.1.26)
// Both branches are evaluated and one is selected per lane.
//   exp(y), y in [-16, 0]: n = nearbyint(y * log2(e)), r = (y - n * ln2_hi) - n * ln2_lo,
//   exp(y) = 2^n * (degree-7 Taylor polynomial of e^r, Horner), 2^n built from exponent bits.
// Clamping |x| at 4 is exact in fp32 (erfc(4) = 1.5e-8 < half an ulp of 1). Measured max abs error
// against float64 erf over [-6, 6] (1.2M points): 1.80e-7, at |x| = 1.40 (A&S's own 1.5e-7 plus fp32
// rounding); tests/test_kernels_ops.py checks <= 2e-7. The series branch exists because A&S
// alone loses to cancellation in 1 - P*exp for small |x| (4.9e-7 there).
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
constexpr float kSeriesBelow = 1.0f;
// Taylor coefficients of erf(x)/x in powers of x^2, from x^20 down to x^0.
constexpr float kSeries[11] = {0x1.fcc572p-27f, -0x1.5f742ep-23f, 0x1.b9e6cap-20f, -0x1.f4d25cp-17f,
                               0x1.f9a326p-14f, -0x1.c02db4p-11f, 0x1.565bcep-8f, -0x1.b82ce4p-6f,
                               0x1.ce2f22p-4f, -0x1.812746p-2f, 0x1.20dd76p+0f};
constexpr float kInvSqrt2 = 0x1.6a09e6p-1f;

}  // namespace erfc
}  // namespace fastdistilbert
