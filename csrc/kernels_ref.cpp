// Scalar reference kernels: the exactness oracle for every other ISA. No ISA flags.
// Written independently of the SIMD template (kernels_simd.inc) on purpose: plain loops over the
// packed formats described in kernels.h, natural token order in every activation layout.
#include <cmath>

#include "erf_constants.h"
#include "kernels.h"

namespace fastdistilbert {
namespace ref {

static int32_t dot_u8s8(const uint8_t* a, const int8_t* b, int64_t n) {
  int32_t acc = 0;
  for (int64_t i = 0; i < n; ++i) acc += int32_t(a[i]) * int32_t(b[i]);
  return acc;
}

static int64_t token_align(int32_t) { return 1; }

static void pack_x(const uint8_t* x, int64_t K, int64_t T, int32_t flip_sign, int32_t pattern, uint8_t* xp,
                   int64_t Tp, int64_t t0, int64_t t1) {
  const uint8_t flip = flip_sign ? 0x80 : 0;
  if (pattern == k4x1) {
    for (int64_t k = 0; k < K; ++k)
      for (int64_t t = t0; t < t1; ++t) xp[k * Tp + t] = t < T ? uint8_t(x[k * T + t] ^ flip) : 0;
    return;
  }
  const int64_t Kp = (K + 3) / 4 * 4;
  for (int64_t k = 0; k < Kp; ++k)
    for (int64_t t = t0; t < t1; ++t)
      xp[((k / 4) * Tp + t) * 4 + k % 4] = (t < T && k < K) ? uint8_t(x[k * T + t] ^ flip) : 0;
}

static int32_t s8(int32_t dword, int i) { return int32_t(int8_t(uint32_t(dword) >> (8 * i))); }

// Accumulator of output row n, token t, walking the packed weight.
static int32_t accumulate(const GemmParams& p, int64_t n, int64_t t) {
  int32_t acc = 0;
  const int64_t g = n / 4, r = n % 4;
  if (p.pattern == kDense) {
    const int64_t KG = p.Kp / 4;
    for (int64_t kg = 0; kg < KG; ++kg)
      for (int i = 0; i < 4; ++i)
        acc += int32_t(p.xp[(kg * p.Tp + t) * 4 + i]) * int32_t(p.dense[((g * KG + kg) * 4 + r) * 4 + i]);
  } else if (p.pattern == k4x1) {
    for (int64_t q = p.ptr[g]; q < p.ptr[g + 1]; ++q)
      for (int i = 0; i < 4; ++i) acc += int32_t(p.xp[p.idx[4 * q + i] * p.Tp + t]) * s8(p.wq[4 * q + r], i);
  } else {
    for (int64_t b = p.ptr[n]; b < p.ptr[n + 1]; ++b)
      for (int i = 0; i < 4; ++i) acc += int32_t(p.xp[(int64_t(p.idx[b]) * p.Tp + t) * 4 + i]) * s8(p.wq[b], i);
  }
  return acc;
}

// 255 exp(d) for d in [-16, 0] (the softmax codes) and erf: the formulas of erf_constants.h, in the same
// operation order as the SIMD template and fastdistilbert/reference_ops.py.
static float exp_codes(float d) {
  const float x = d * erfc::kLog2e;
  const float n = std::nearbyint(x);
  const float f = x - n;
  float e = erfc::kExp2Codes[3];
  for (int i = 2; i >= 0; --i) e = std::fma(e, f, erfc::kExp2Codes[i]);
  const int32_t bits = (int32_t(n) + 127) << 23;
  float scale;
  __builtin_memcpy(&scale, &bits, 4);
  return e * scale;
}

static float gelu(float y) {
  const float a = std::fmin(std::fmax(y, -erfc::kGeluClamp), erfc::kGeluClamp);
  const float u = a * a;
  float r = erfc::kGeluR[5], s = erfc::kGeluS[5];
  for (int i = 4; i >= 0; --i) {
    r = std::fma(r, u, erfc::kGeluR[i]);
    s = std::fma(s, u, erfc::kGeluS[i]);
  }
  return y * std::fma(a, r / s, 0.5f);
}

static void softmax_codes(const float* s, int64_t rows, int64_t cols, int64_t Tp, uint8_t* xp, int32_t* sums) {
  const int64_t Kp = (rows + 3) / 4 * 4;
  for (int64_t i = 0; i < Kp * Tp; ++i) xp[i] = 0;
  for (int64_t c = 0; c < cols; ++c) {
    float top = s[c];
    for (int64_t r = 1; r < rows; ++r) top = s[r * cols + c] > top ? s[r * cols + c] : top;
    int32_t sum = 0;
    for (int64_t r = 0; r < rows; ++r) {
      const float d = s[r * cols + c] - top;
      const int32_t code = int32_t(std::nearbyint(exp_codes(d > -16.0f ? d : -16.0f)));
      xp[((r / 4) * Tp + c) * 4 + r % 4] = uint8_t(code);  // pack_x's dense layout
      sum += code;
    }
    sums[c] = sum;
  }
}

static float exp_fma(float y) {
  const float n = std::nearbyint(y * erfc::kLog2e);
  const float r = std::fma(n, -erfc::kLn2Lo, std::fma(n, -erfc::kLn2Hi, y));
  float e = erfc::kExpPoly[0];
  for (int i = 1; i < 8; ++i) e = std::fma(e, r, erfc::kExpPoly[i]);
  const int32_t bits = (int32_t(n) + 127) << 23;
  float scale;
  __builtin_memcpy(&scale, &bits, 4);
  return e * scale;
}

static void attention_head(const float* q, const float* k, const float* v, int64_t ld, int64_t dh, int64_t L,
                           float scaling, float* scratch, float* ctx, int64_t ld_ctx) {
  float* s = scratch;       // [L][L]: keys x queries
  float* inv = s + L * L;   // [L]: 1 / sum of each query's exponentials
  for (int64_t j = 0; j < L; ++j)
    for (int64_t i = 0; i < L; ++i) {
      float acc = 0.0f;
      for (int64_t d = 0; d < dh; ++d) acc = std::fma(k[d * ld + j], q[d * ld + i] * scaling, acc);
      s[j * L + i] = acc;
    }
  for (int64_t i = 0; i < L; ++i) {
    float top = s[i];
    for (int64_t j = 1; j < L; ++j) top = s[j * L + i] > top ? s[j * L + i] : top;
    float sum = 0.0f;
    for (int64_t j = 0; j < L; ++j) {
      const float d = s[j * L + i] - top;
      s[j * L + i] = exp_fma(d > -87.0f ? d : -87.0f);
      sum += s[j * L + i];
    }
    inv[i] = 1.0f / sum;
  }
  for (int64_t d = 0; d < dh; ++d)
    for (int64_t i = 0; i < L; ++i) {
      float acc = 0.0f;
      for (int64_t j = 0; j < L; ++j) acc = std::fma(v[d * ld + j], s[j * L + i], acc);
      ctx[d * ld_ctx + i] = acc * inv[i];
    }
}

static void epilogue(const GemmParams& p, int64_t n, int64_t t, int32_t acc) {
  const int64_t o = n * p.ld + t + p.out_shift;
  if (p.out_acc) {
    p.out_acc[o] = acc;
    return;
  }
  const int32_t a = acc - p.x_zp[t] * p.wsum[n];
  float y = float(a) * (p.x_scale[t] * p.w_scale[n]);
  if (p.bias) y = y + p.bias[n];
  if (p.gelu) y = gelu(y);
  if (p.residual) y = y + p.residual[o];
  if (p.out_u8) {
    float q = std::nearbyint(y * (1.0f / p.out_scale)) + p.out_zp;
    q = std::fmin(std::fmax(q, 0.0f), 255.0f);
    p.out_u8[o] = uint8_t(int32_t(q));
  } else {
    p.out_f32[o] = y;
  }
}

static void gemm(const GemmParams& p, int64_t g0, int64_t g1, int64_t t0, int64_t t1) {
  for (int64_t n = g0 * 4; n < g1 * 4 && n < p.N; ++n)
    for (int64_t t = t0; t < t1 && t < p.T; ++t) epilogue(p, n, t, accumulate(p, n, t));
}

static float clamp_code(float v) { return v < 0.0f ? 0.0f : (v > 255.0f ? 255.0f : v); }

static int32_t quantize_per_token(const float* x, int64_t K, int64_t T, int64_t t0, int64_t t1, float* scale,
                                  int32_t* zp, uint8_t* q) {
  for (int64_t t = t0; t < t1; ++t) {
    float lo = x[t], hi = x[t];
    for (int64_t k = 0; k < K; ++k) {
      const float v = x[k * T + t];
      if (!std::isfinite(v)) return 0;
      lo = v < lo ? v : lo;
      hi = v > hi ? v : hi;
    }
    lo = lo < 0.0f ? lo : 0.0f;
    hi = hi > 0.0f ? hi : 0.0f;
    const float s = lo < hi ? (hi - lo) / 255.0f : 1.0f;
    scale[t] = s;
    zp[t] = int32_t(clamp_code(std::nearbyint(-lo / s)));
    const float inv = 1.0f / s;
    for (int64_t k = 0; k < K; ++k)
      q[k * T + t] = uint8_t(int32_t(clamp_code(std::nearbyint(x[k * T + t] * inv) + float(zp[t]))));
  }
  return 1;
}

#include "layer_norm_tokens.inc"
#include "embed_token.inc"
#include "attention_pack.inc"

static int32_t quantize_static(const float* x, int64_t n, float scale, float zp, uint8_t* q) {
  const float inv = 1.0f / scale;
  for (int64_t i = 0; i < n; ++i) {
    if (!std::isfinite(x[i])) return 0;
    q[i] = uint8_t(int32_t(clamp_code(std::nearbyint(x[i] * inv) + zp)));
  }
  return 1;
}

static int64_t peak_loop(int64_t iters, int32_t* sink) {
  uint8_t a[64];
  int8_t b[64];
  for (int i = 0; i < 64; ++i) a[i] = uint8_t(i), b[i] = int8_t(i - 32);
  int32_t acc = 0;
  for (int64_t it = 0; it < iters; ++it) acc += dot_u8s8(a, b, 64) + int32_t(it);
  *sink = acc;
  return iters * 64;
}

const KernelTable kTable = {"ref", dot_u8s8, token_align, pack_x,
                            gemm, quantize_per_token, quantize_static, layer_norm_tokens, embed_token,
                            softmax_codes, pack_symmetric_loops, attention_head, peak_loop};

}  // namespace ref
}  // namespace fastdistilbert
