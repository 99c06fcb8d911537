// INT8 self-attention of packed sequences, feature-major, on the GEMM kernels of the active variant.
//
// Per (sequence, head), with Q, K, V the head's [head_dim, n] blocks of qkv:
//   Q  -> u8 codes per query token (quantize_per_token: the activations' dynamic scheme)
//   K^T, V -> s8 "weights", symmetric per row: scale = amax / 127, code = clamp(rne(x * (127 / amax)), +-127)
//   scores^T [n_k, n_q] = GEMM(K^T, Q), scale factors x `scaling` folded into the key scales
//   probs = softmax over keys (the rows of scores^T) straight into u8 codes, 255 at each query's maximum, with
//           their int32 sum per query: probability = code / sum, i.e. scale 1 / sum, zero point 0
//           (softmax_codes: no normalization or min / max pass over the [n_k, n_q] scores; the codes are written
//           in the packed layout of the next GEMM's activations)
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

// The GEMM parameters of a dense INT8 weight, activations and outputs unset.
GemmParams dense_weight(const Int8HeadAttention::Weight& w) {
  GemmParams p{};
  p.pattern = kDense;
  p.N = w.N, p.K = w.K, p.Np = w.Np, p.Kp = w.Kp;
  p.dense = w.tiles.data();
  p.w_scale = w.scale.data();
  p.wsum = w.wsum.data();
  return p;
}

// out[N][T] (fp32, rows ld apart) = W x codes[K][T] with per-token scale / zero point, through the variant.
void int8_gemm(const KernelTable& k, const Int8HeadAttention::Weight& w, const uint8_t* codes, const float* x_scale,
               const int32_t* x_zp, int64_t T, float* out, int64_t ld, PanelGemm& gemm) {
  GemmParams p = dense_weight(w);
  p.ld = ld;
  p.out_f32 = out;
  gemm.run(k, p, codes, false, x_scale, x_zp, T);
}

}  // namespace

bool Int8HeadAttention::Weight::quantize(const KernelTable& k, const float* src, int64_t A, int64_t B, bool transpose,
                                         float extra_scale) {
  N = transpose ? B : A;
  K = transpose ? A : B;
  Np = (N + 3) / 4 * 4;
  Kp = (K + 3) / 4 * 4;
  tiles.resize(Np * Kp), scale.resize(Np), wsum.resize(Np), codes.resize(A * B), inv.resize(N);
  return k.pack_symmetric(src, B, A, B, transpose, extra_scale, codes.data(), inv.data(), tiles.data(), scale.data(),
                          wsum.data());
}

bool Int8HeadAttention::run(const KernelTable& k, const float* q, const float* keys_fm, const float* values_fm,
                            int64_t head, int64_t n, float scaling, float* ctx, int64_t ld_ctx) {
  q_codes.resize(head * n), q_scale.resize(n), q_zp.resize(n);
  if (!k.quantize_per_token(q, head, n, 0, n, q_scale.data(), q_zp.data(), q_codes.data()) ||
      !keys.quantize(k, keys_fm, head, n, /*transpose=*/true, scaling))
    return false;
  scores.resize(n * n);
  int8_gemm(k, keys, q_codes.data(), q_scale.data(), q_zp.data(), n, scores.data(), n, gemm);
  // The probabilities' codes go straight into the context GEMM's packed activations (no [n][n] u8 matrix to pack).
  const int64_t align = k.token_align(kDense), Tp = (n + align - 1) / align * align;
  p_packed.resize((n + 3) / 4 * 4 * Tp), sums.resize(n);
  p_scale.assign(Tp, 1.0f), p_zp.assign(Tp, 0);
  k.softmax_codes(scores.data(), n, n, Tp, p_packed.data(), sums.data());
  bool scores_finite = true;
  for (int64_t i = 0; i < n; ++i) {
    scores_finite &= sums[i] > 0;  // a query's largest score gives code 255 unless it overflowed to Inf
    p_scale[i] = 1.0f / float(sums[i]);
  }
  if (!scores_finite || !values.quantize(k, values_fm, head, n, /*transpose=*/false, 1.0f)) return false;
  GemmParams p = dense_weight(values);
  p.xp = p_packed.data(), p.T = n, p.Tp = Tp, p.x_scale = p_scale.data(), p.x_zp = p_zp.data();
  p.ld = ld_ctx, p.out_f32 = ctx;
  k.gemm(p, 0, p.Np / 4, 0, n);
  return true;
}

int64_t attention_int8_into(const KernelTable& k, const float* src, int64_t dim, int64_t T, at::IntArrayRef lengths,
                            const std::vector<int64_t>& first, int64_t n_heads, double scaling, float* dst) {
  const int64_t head = dim / n_heads, n_seq = int64_t(lengths.size());
  std::atomic<int64_t> bad{n_seq};  // the first bad sequence, n_seq: none
  for_each_head(lengths, n_heads, [&](int64_t s, int64_t h) {
    thread_local AlignedVector<float> blocks;  // Q, K and V of one head as compact [head, n] blocks
    thread_local Int8HeadAttention attention;
    const int64_t n = lengths[s];
    // The head's Q, K and V rows of the sequence as [head, n] blocks: in place when the sequence is all of qkv's
    // columns (its rows are then n apart), else copied out.
    const float* q = src + h * head * T + first[s];
    if (n < T) {
      blocks.resize(3 * head * n);
      for (int64_t part = 0; part < 3; ++part)
        copy_rows(src + (part * dim + h * head) * T + first[s], T, blocks.data() + part * head * n, n, head, n);
      q = blocks.data();
    }
    const int64_t part_stride = n < T ? head * n : dim * T;
    if (!attention.run(k, q, q + part_stride, q + 2 * part_stride, head, n, float(scaling),
                       dst + h * head * T + first[s], T)) {
      int64_t seen = bad.load();  // keep the smallest failing sequence: the items finish in any order
      while (s < seen && !bad.compare_exchange_weak(seen, s)) {
      }
    }
  });
  return bad.load() < n_seq ? bad.load() : -1;
}

at::Tensor attention_int8_fm(const at::Tensor& qkv, at::IntArrayRef lengths, int64_t n_heads, double scaling) {
  const char* op = "attention_int8_fm";
  const std::vector<int64_t> first = check_attention_args(op, qkv, lengths, n_heads);
  const int64_t dim = qkv.size(0) / 3, T = qkv.size(1);
  at::Tensor out = at::empty({dim, T}, qkv.options());
  const int64_t bad = attention_int8_into(active_kernels(), qkv.data_ptr<float>(), dim, T, lengths, first, n_heads,
                                          scaling, out.data_ptr<float>());
  TORCH_CHECK(bad < 0, op,
              ": Q, K or V contain NaN or Inf, or the attention scores overflow; activations must be finite");
  return out;
}

}  // namespace fastdistilbert
