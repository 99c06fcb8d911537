// INT8 self-attention of packed sequences, feature-major, on the GEMM kernels of the active variant.
//
// Per (sequence, head), with Q, K, V the head's [head_dim, n] blocks of qkv:
//   Q  -> u8 codes per query token (quantize_per_token: the activations' dynamic scheme)
//   K^T, V -> s8 "weights", symmetric per row: scale = amax / 127, code = clamp(rne(x * (127 / amax)), +-127)
//   scores^T [n_k, n_q] = GEMM(K^T, Q), scale factors x `scaling` folded into the key scales
//   probs = softmax over keys (the rows of scores^T) straight into u8 codes, 255 at each query's maximum, with
//           their int32 sum per query: probability = code / sum, i.e. scale 1 / sum, zero point 0
//           (softmax_codes: no normalization or min / max pass over the [n_k, n_q] scores)
//   context [head_dim, n_q] = GEMM(V, probs)
// Every step is integer-exact or the same fp32 operations on every variant, so all ISAs give
// bit-identical outputs; fastdistilbert/reference_ops.py::attention_int8_fm spells the same steps.
#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <vector>

#include "attention_fm.h"
#include "dispatch.h"
#include "panel_ops.h"

namespace fastdistilbert {
namespace {

inline float round_half_even(float v) { return (v + 0x1.8p23f) - 0x1.8p23f; }  // exact for |v| < 2^22

// clamp(rne(v), -127, 127) as s8.
inline int8_t symmetric_code(float v) {
  float c = round_half_even(v);
  c = c > 127.0f ? 127.0f : c;
  c = c < -127.0f ? -127.0f : c;
  return int8_t(int32_t(c));
}

// A dense INT8 weight in the kernels' tile layout, made from W[n][k] = src(n, k).
struct DenseWeight {
  int64_t N = 0, K = 0, Np = 0, Kp = 0;
  std::vector<int8_t> tiles;  // [Np/4][Kp/4][4 rows][4 k]
  std::vector<float> scale;   // [Np]
  std::vector<int32_t> wsum;  // [Np]

  // src is a compact row-major [A][B] fp32 block; W = src (N = A) or its transpose (N = B). False (W
  // unspecified) when src holds a NaN or Inf. Every pass but the tile copy runs along src's rows with no
  // branches, so the compiler vectorizes it.
  bool quantize(const float* src, int64_t A, int64_t B, bool transpose, float extra_scale) {
    N = transpose ? B : A;
    K = transpose ? A : B;
    Np = (N + 3) / 4 * 4;
    Kp = (K + 3) / 4 * 4;
    // Largest |x| of each row of W as bits: for non-negative floats the integer order is the float order,
    // and every NaN or Inf is >= the bits of +Inf.
    amax_bits.assign(N, 0);
    for (int64_t i = 0; i < A; ++i) {
      const uint32_t* row = reinterpret_cast<const uint32_t*>(src + i * B);
      if (transpose) {
        for (int64_t j = 0; j < B; ++j) amax_bits[j] = std::max(amax_bits[j], row[j] & 0x7fffffffu);
      } else {
        uint32_t m = 0;
        for (int64_t j = 0; j < B; ++j) m = std::max(m, row[j] & 0x7fffffffu);
        amax_bits[i] = m;
      }
    }
    scale.assign(Np, 1.0f);
    inv.assign(N, 1.0f);
    for (int64_t n = 0; n < N; ++n) {
      if (amax_bits[n] >= 0x7f800000u) return false;
      float amax;
      std::memcpy(&amax, &amax_bits[n], 4);
      if (amax > 0.0f) {
        inv[n] = 127.0f / amax;
        scale[n] = amax / 127.0f * extra_scale;
      } else {
        scale[n] = 1.0f * extra_scale;
      }
    }
    // Codes in src's layout, then each W row's sum (raw pointers: the loops must vectorize).
    codes.resize(A * B);
    const float* row_inv = inv.data();
    for (int64_t i = 0; i < A; ++i) {
      const float* in = src + i * B;
      int8_t* out = codes.data() + i * B;
      if (transpose) {
        for (int64_t j = 0; j < B; ++j) out[j] = symmetric_code(in[j] * row_inv[j]);
      } else {
        const float f = row_inv[i];
        for (int64_t j = 0; j < B; ++j) out[j] = symmetric_code(in[j] * f);
      }
    }
    wsum.assign(Np, 0);
    int32_t* sums = wsum.data();
    for (int64_t i = 0; i < A; ++i) {
      const int8_t* c = codes.data() + i * B;
      if (transpose) {
        for (int64_t j = 0; j < B; ++j) sums[j] += c[j];
      } else {
        int32_t sum = 0;
        for (int64_t j = 0; j < B; ++j) sum += c[j];
        sums[i] = sum;
      }
    }
    // Tiles: W[n][4 kg .. 4 kg + 3] is one dword of tile (n / 4, kg).
    tiles.assign(Np * Kp, 0);
    const int64_t KG = Kp / 4;
    for (int64_t n = 0; n < N; ++n) {
      int8_t* dst = tiles.data() + (n / 4) * KG * 16 + (n % 4) * 4;
      if (!transpose) {
        for (int64_t kg = 0; kg < KG; ++kg)
          std::memcpy(dst + kg * 16, &codes[n * B + 4 * kg], std::min<int64_t>(4, K - 4 * kg));
      } else {
        for (int64_t k = 0; k < K; ++k) dst[(k / 4) * 16 + k % 4] = codes[k * B + n];
      }
    }
    return true;
  }

 private:
  std::vector<uint32_t> amax_bits;
  std::vector<float> inv;
  std::vector<int8_t> codes;
};

// out[N][T] (fp32, row stride T) = W x codes[K][T] with per-token scale / zero point, through the variant.
void int8_gemm(const KernelTable& k, const DenseWeight& w, const uint8_t* codes, const float* x_scale,
               const int32_t* x_zp, int64_t T, float* out, PanelGemm& gemm) {
  GemmParams p{};
  p.pattern = kDense;
  p.N = w.N, p.K = w.K, p.Np = w.Np, p.Kp = w.Kp;
  p.dense = w.tiles.data();
  p.w_scale = w.scale.data();
  p.wsum = w.wsum.data();
  p.ld = T;
  p.out_f32 = out;
  gemm.run(k, p, codes, false, x_scale, x_zp, T);
}

struct Codes {
  std::vector<uint8_t> q;
  std::vector<float> scale;
  std::vector<int32_t> zp;
};

bool quantize_tokens(const KernelTable& k, const float* x, int64_t K, int64_t T, Codes& c) {
  c.q.resize(K * T);
  c.scale.resize(T);
  c.zp.resize(T);
  return k.quantize_per_token(x, K, T, 0, T, c.scale.data(), c.zp.data(), c.q.data());
}

}  // namespace

at::Tensor attention_int8_fm(const at::Tensor& qkv, at::IntArrayRef lengths, int64_t n_heads, double scaling) {
  const char* op = "attention_int8_fm";
  const std::vector<int64_t> first = check_attention_args(op, qkv, lengths, n_heads);
  const int64_t dim = qkv.size(0) / 3, head = dim / n_heads, T = qkv.size(1);
  at::Tensor out = at::empty({dim, T}, qkv.options());
  const float* src = qkv.data_ptr<float>();
  float* dst = out.data_ptr<float>();
  const KernelTable& k = active_kernels();
  std::atomic<bool> finite{true};
  at::parallel_for(0, int64_t(lengths.size()) * n_heads, 1, [&](int64_t b, int64_t e) {
    std::vector<float> q, keys_fm, values_fm, scores, ctx;
    std::vector<int32_t> sums;
    Codes qc, pc;
    DenseWeight keys, values;
    PanelGemm gemm;
    for (int64_t item = b; item < e; ++item) {
      const int64_t s = item / n_heads, h = item % n_heads, n = lengths[s];
      if (n == 0) continue;
      // Q, K and V as compact [head, n] blocks.
      auto compact = [&](int64_t part, std::vector<float>& dst_block) {
        dst_block.resize(head * n);
        copy_rows(src + (part * dim + h * head) * T + first[s], T, dst_block.data(), n, head, n);
      };
      compact(0, q);
      compact(1, keys_fm);
      compact(2, values_fm);
      if (!quantize_tokens(k, q.data(), head, n, qc) ||
          !keys.quantize(keys_fm.data(), head, n, /*transpose=*/true, float(scaling))) {
        finite = false;
        continue;
      }
      scores.resize(n * n);
      int8_gemm(k, keys, qc.q.data(), qc.scale.data(), qc.zp.data(), n, scores.data(), gemm);
      pc.q.resize(n * n);
      pc.zp.assign(n, 0);
      sums.resize(n);
      k.softmax_codes(scores.data(), n, n, 0, n, pc.q.data(), sums.data());
      pc.scale.resize(n);
      bool scores_finite = true;
      for (int64_t i = 0; i < n; ++i) {
        scores_finite &= sums[i] > 0;  // a query's largest score gives code 255 unless it overflowed to Inf
        pc.scale[i] = 1.0f / float(sums[i]);
      }
      if (!scores_finite) {
        finite = false;
        continue;
      }
      if (!values.quantize(values_fm.data(), head, n, /*transpose=*/false, 1.0f)) {
        finite = false;
        continue;
      }
      ctx.resize(head * n);
      int8_gemm(k, values, pc.q.data(), pc.scale.data(), pc.zp.data(), n, ctx.data(), gemm);
      copy_rows(ctx.data(), n, dst + h * head * T + first[s], T, head, n);
    }
  });
  TORCH_CHECK(finite.load(), op, ": Q, K or V contain NaN or Inf, or the attention scores overflow; activations must be finite");
  return out;
}

}  // namespace fastdistilbert
