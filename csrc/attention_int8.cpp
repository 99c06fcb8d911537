// INT8 self-attention of packed sequences, feature-major, on the GEMM kernels of the active variant.
//
// Per (sequence, head), with Q, K, V the head's [head_dim, n] blocks of qkv:
//   Q  -> u8 codes per query token (quantize_per_token: the activations' dynamic scheme)
//   K^T, V -> s8 "weights", symmetric per row: scale = amax / 127, code = clamp(rne(x * (127 / amax)), +-127)
//   scores^T [n_k, n_q] = GEMM(K^T, Q), scale factors x `scaling` folded into the key scales
//   probs = softmax over keys, i.e. over the rows of scores^T (softmax_columns)
//   probs -> u8 codes per query token (quantize_per_token; all >= 0, so zero point 0)
//   context [head_dim, n_q] = GEMM(V, probs)
// Every step is integer-exact or the same fp32 operations on every variant, so all ISAs give
// bit-identical outputs; fastdistilbert/reference_ops.py::attention_int8_fm spells the same steps.
#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <vector>

#include "attention_fm.h"
#include "dispatch.h"
#include "panel_ops.h"

namespace fastdistilbert {
namespace {

inline float round_half_even(float v) { return (v + 0x1.8p23f) - 0x1.8p23f; }  // exact for |v| < 2^22

// A dense INT8 weight in the kernels' tile layout, made from W[n][k] = src(n, k).
struct DenseWeight {
  int64_t N = 0, K = 0, Np = 0, Kp = 0;
  std::vector<int8_t> tiles;  // [Np/4][Kp/4][4 rows][4 k]
  std::vector<float> scale;   // [Np]
  std::vector<int32_t> wsum;  // [Np]

  // src is a compact row-major [A][B] fp32 block; W = src (N = A) or its transpose (N = B). Loops run
  // along src's rows so they stream and vectorize; only the tile writes scatter.
  void quantize(const float* src, int64_t A, int64_t B, bool transpose, float extra_scale) {
    N = transpose ? B : A;
    K = transpose ? A : B;
    Np = (N + 3) / 4 * 4;
    Kp = (K + 3) / 4 * 4;
    tiles.assign(Np * Kp, 0);
    scale.assign(Np, 1.0f);
    wsum.assign(Np, 0);
    amax.assign(N, 0.0f);
    inv.assign(N, 1.0f);
    for (int64_t i = 0; i < A; ++i)
      for (int64_t j = 0; j < B; ++j) {
        float& m = amax[transpose ? j : i];
        const float v = std::fabs(src[i * B + j]);
        m = v > m ? v : m;
      }
    for (int64_t n = 0; n < N; ++n)
      if (amax[n] > 0.0f) {
        inv[n] = 127.0f / amax[n];
        scale[n] = amax[n] / 127.0f * extra_scale;
      } else {
        scale[n] = 1.0f * extra_scale;
      }
    const int64_t KG = Kp / 4;
    for (int64_t i = 0; i < A; ++i)
      for (int64_t j = 0; j < B; ++j) {
        const int64_t n = transpose ? j : i, k = transpose ? i : j;
        const float c = std::min(127.0f, std::max(-127.0f, round_half_even(src[i * B + j] * inv[n])));
        const int8_t code = int8_t(int32_t(c));
        tiles[((n / 4) * KG + k / 4) * 16 + (n % 4) * 4 + k % 4] = code;
        wsum[n] += code;
      }
  }

 private:
  std::vector<float> amax, inv;
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
      if (!quantize_tokens(k, q.data(), head, n, qc)) {
        finite = false;
        continue;
      }
      keys.quantize(keys_fm.data(), head, n, /*transpose=*/true, float(scaling));
      scores.resize(n * n);
      int8_gemm(k, keys, qc.q.data(), qc.scale.data(), qc.zp.data(), n, scores.data(), gemm);
      k.softmax_columns(scores.data(), n, n, 0, n);
      if (!quantize_tokens(k, scores.data(), n, n, pc)) {
        finite = false;
        continue;
      }
      values.quantize(values_fm.data(), head, n, /*transpose=*/false, 1.0f);
      ctx.resize(head * n);
      int8_gemm(k, values, pc.q.data(), pc.scale.data(), pc.zp.data(), n, ctx.data(), gemm);
      copy_rows(ctx.data(), n, dst + h * head * T + first[s], T, head, n);
    }
  });
  TORCH_CHECK(finite.load(), op, ": Q or the attention scores contain NaN or Inf; activations must be finite");
  return out;
}

}  // namespace fastdistilbert
