// Self-attention of packed sequences in the runtime's feature-major layout.
//
// qkv is [3 * dim, tokens]: rows [0, dim) are Q, [dim, 2 dim) K, [2 dim, 3 dim) V, and the tokens
// of sequence i are the `lengths[i]` columns after those of sequences 0..i-1 (no padding). For each
// (sequence, head) the active variant's attention_head (kernels.h) computes, in fp32 with FMAs,
//   scores = (scaling * Q_h)^T K_h          [n, n]
//   probs  = softmax over the keys
//   out_h  = V_h probs^T                     [head_dim, n]
// and writes the context straight into its rows of the output; every variant gives the same bits.
// One parallel item per (sequence, head), each thread with its own scratch panels.
#include "attention_fm.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <vector>

#include "dispatch.h"
#include "panel_ops.h"

namespace fastdistilbert {

std::vector<int64_t> sequence_starts(const char* op, at::IntArrayRef lengths, int64_t tokens, const char* tensor) {
  std::vector<int64_t> first(lengths.size());
  int64_t total = 0;
  for (size_t i = 0; i < lengths.size(); ++i) {
    TORCH_CHECK(lengths[i] >= 0, op, ": sequence lengths must be >= 0, got ", lengths[i]);
    first[i] = total;
    total += lengths[i];
  }
  TORCH_CHECK(total == tokens, op, ": sequence lengths add up to ", total, " but ", tensor, " has ", tokens, " tokens");
  return first;
}

std::vector<int64_t> check_attention_args(const char* op, const at::Tensor& qkv, at::IntArrayRef lengths,
                                          int64_t n_heads) {
  TORCH_CHECK(qkv.scalar_type() == at::kFloat, op, ": qkv must be float32, got ", qkv.scalar_type());
  TORCH_CHECK(qkv.dim() == 2 && qkv.is_contiguous(), op, ": qkv must be a contiguous 2-D [3 * dim, tokens] tensor, got ",
              qkv.sizes());
  TORCH_CHECK(n_heads > 0, op, ": n_heads must be positive, got ", n_heads);
  TORCH_CHECK(qkv.size(0) % (3 * n_heads) == 0, op, ": qkv has ", qkv.size(0), " rows, not 3 * dim with dim divisible by n_heads = ",
              n_heads);
  return sequence_starts(op, lengths, qkv.size(1), "qkv");
}

void attention_fm_into(const KernelTable& k, const float* x, int64_t dim, int64_t T, at::IntArrayRef lengths,
                       const std::vector<int64_t>& first, int64_t n_heads, double scaling, float* ctx) {
  const int64_t head = dim / n_heads, n_seq = int64_t(lengths.size());
  int64_t longest = 0;
  for (int64_t n : lengths) longest = std::max(longest, n);
  const int64_t Lp = (longest + kAttentionPad - 1) / kAttentionPad * kAttentionPad;
  at::parallel_for(0, n_seq * n_heads, 1, [&](int64_t b, int64_t e) {
    thread_local AlignedVector<float> scratch;  // kept between calls (no allocation or zero-filling per call)
    scratch.resize(std::max<size_t>(scratch.size(), (3 * head + longest) * Lp));
    for (int64_t item = b; item < e; ++item) {
      const int64_t s = item / n_heads, h = item % n_heads, n = lengths[s];
      if (n == 0) continue;
      const float* q = x + h * head * T + first[s];
      k.attention_head(q, q + dim * T, q + 2 * dim * T, T, head, n, float(scaling), scratch.data(),
                       ctx + h * head * T + first[s], T);
    }
  });
}

at::Tensor attention_fm(const at::Tensor& qkv, at::IntArrayRef lengths, int64_t n_heads, double scaling) {
  const std::vector<int64_t> first = check_attention_args("attention_fm", qkv, lengths, n_heads);
  const int64_t dim = qkv.size(0) / 3, T = qkv.size(1);
  at::Tensor out = at::empty({dim, T}, qkv.options());
  attention_fm_into(active_kernels(), qkv.data_ptr<float>(), dim, T, lengths, first, n_heads, scaling,
                    out.data_ptr<float>());
  return out;
}

}  // namespace fastdistilbert
