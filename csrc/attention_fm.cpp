// Self-attention of packed sequences in the runtime's feature-major layout.
//
// qkv is [3 * dim, tokens]: rows [0, dim) are Q, [dim, 2 dim) K, [2 dim, 3 dim) V, and the tokens
// of sequence i are the `lengths[i]` columns after those of sequences 0..i-1 (no padding). For each
// (sequence, head) the active variant's attention_head (kernels.h) computes, in fp32 with FMAs,
//   scores = (scaling * Q_h)^T K_h          [n, n]
//   probs  = softmax over the keys
//   out_h  = V_h probs^T                     [head_dim, n]
// and writes the context straight into its rows of the output; every variant gives the same bits.
// One parallel item per (sequence, head), handed out longest sequences first (for_each_head), each thread with its
// own scratch panels.
#include "attention_fm.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
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

std::vector<int64_t> longest_first(at::IntArrayRef lengths) {
  std::vector<int64_t> order;
  for (int64_t s = 0; s < int64_t(lengths.size()); ++s)
    if (lengths[s] > 0) order.push_back(s);
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return lengths[a] > lengths[b]; });
  return order;
}

void for_each_head(at::IntArrayRef lengths, int64_t n_heads, const std::function<void(int64_t, int64_t)>& item) {
  const std::vector<int64_t> order = longest_first(lengths);
  const int64_t items = int64_t(order.size()) * n_heads;
  std::atomic<int64_t> next{0};
  at::parallel_for(0, std::min<int64_t>(at::get_num_threads(), items), 1, [&](int64_t, int64_t) {
    for (int64_t i = next++; i < items; i = next++) item(order[i / n_heads], i % n_heads);
  });
}

void attention_fm_into(const KernelTable& k, const float* x, int64_t dim, int64_t T, at::IntArrayRef lengths,
                       const std::vector<int64_t>& first, int64_t n_heads, double scaling, float* ctx) {
  const int64_t head = dim / n_heads;
  int64_t longest = 0;
  for (int64_t n : lengths) longest = std::max(longest, n);
  const int64_t Lp = (longest + kAttentionPad - 1) / kAttentionPad * kAttentionPad;
  for_each_head(lengths, n_heads, [&](int64_t s, int64_t h) {
    thread_local AlignedVector<float> scratch;  // kept between calls (no allocation or zero-filling per call)
    scratch.resize(std::max<size_t>(scratch.size(), (3 * head + longest) * Lp));
    const float* q = x + h * head * T + first[s];
    k.attention_head(q, q + dim * T, q + 2 * dim * T, T, head, lengths[s], float(scaling), scratch.data(),
                     ctx + h * head * T + first[s], T);
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
