// Constants of the one GELU used by every variant's epilogue (and by fastdistilbert/reference_ops.py, which spells
// the same float32 values with float.fromhex), and of the softmax exponentials.
//
//   GELU(y) = y * fma(a, R(u) / S(u), 1/2),  a = clamp(y, -4 sqrt 2, 4 sqrt 2),  u = a * a,
//   R, S of degree 5 in u (Horner with fused multiply-adds, S's constant term 1): 1/2 + a R / S is
//   Phi(y) = 1/2 + 1/2 erf(y / sqrt 2), from a rational fit of erf(x) / x on [0, 4] made for this project by
//   csrc/erf_fit.py (reweighted least squares toward minimax; 2.1e-8 max abs error in float64), rewritten for u = 2 x^2
//   and the factor 1/2 so the epilogue needs no scaling of y and no separate 1/2 y and 1 + erf steps.
// Clamping at 4 sqrt 2 is exact in fp32 up to the fit (erfc(4) = 1.5e-8 < half an ulp of 1). Evaluated in fp32 the
// GELU is within 2.0e-7 max(1, |y|) of the exact one (tests/test_kernels_ops.py). History: Abramowitz & Stegun 7.1.26
// (a division, two polynomials and an exp), then this fit as erf(y / sqrt 2) inside 1/2 y (1 + erf) with fused
// multiply-adds (seq 128 x 8 about 4% faster), then this form: 16 instructions per vector instead of 19 (an
// 80% (4,1) FFN1 GEMM with GELU, 256 tokens, 1 thread: 901-918 -> 886-916 us, within noise of 2%).
// Hex literals so C++ and Python hold bit-identical float32 constants. Plain constants only
// (no inline functions): safe to include from every ISA translation unit.
#pragma once

namespace fastdistilbert {
namespace erfc {

constexpr float kGeluClamp = 0x1.6a09e6p+2f;  // 4 sqrt 2
// R and S coefficients from u^0 up to u^5.
constexpr float kGeluR[6] = {0x1.98844ep-2f,  0x1.1c2f54p-5f,  0x1.35b5bcp-8f,
                             0x1.7307a8p-13f, 0x1.ab2270p-18f, 0x1.76dfcap-26f};
constexpr float kGeluS[6] = {0x1p+0f,         0x1.03b574p-2f,  0x1.dd124cp-6f,
                             0x1.fa0eb0p-10f, 0x1.3ed6f2p-14f, 0x1.3a6c4ap-20f};
// exp(y), y <= 0 (the fp32 attention's softmax, with fused multiply-adds): n = nearbyint(y * log2(e)),
// r = (y - n * ln2_hi) - n * ln2_lo, exp(y) = 2^n * (Taylor polynomial of e^r, Horner), 2^n from exponent bits.
constexpr float kLog2e = 0x1.715476p+0f;
constexpr float kLn2Hi = 0x1.62e4p-1f;
constexpr float kLn2Lo = 0x1.7f7d1cp-20f;
// Taylor coefficients of e^r from r^7 down to r^0.
constexpr float kExpPoly[8] = {0x1.a01a02p-13f, 0x1.6c16c2p-10f, 0x1.111112p-7f, 0x1.555556p-5f,
                               0x1.555556p-3f,  0x1p-1f,         0x1p+0f,         0x1p+0f};
// The INT8 attention's softmax codes, 255 exp(d) for d in [-16, 0]: x = d * log2(e), n = nearbyint(x), f = x - n
// (exact), 255 * 2^f ~= ((c3 f + c2) f + c1) f + c0 (Horner with fused multiply-adds), times 2^n. A relative fit of
// 255 * 2^f on [-1/2, 1/2] (max relative error 7.5e-5, at most 0.019 code units off 255 exp(d)): a third of the
// instructions of a degree-5 exp, and 8-bit codes need no more. (The fused multiply-adds replaced plain multiplies
// and adds: 1% faster at seq 384 x 8, alternating runs.)
constexpr float kExp2Codes[4] = {0x1.fdf6a0p+7f, 0x1.619026p+7f, 0x1.eeec74p+5f, 0x1.c231e8p+3f};

}  // namespace erfc
}  // namespace fastdistilbert
