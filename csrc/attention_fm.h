// Self-attention on packed feature-major Q, K, V (see attention_fm.cpp).
#pragma once
#include <ATen/ATen.h>

#include <functional>
#include <vector>

#include "kernels.h"

namespace fastdistilbert {

// fp32 attention on the active kernel variant (attention_fm.cpp, attention_head.inc).
at::Tensor attention_fm(const at::Tensor& qkv, at::IntArrayRef lengths, int64_t n_heads, double scaling);

// The same attention with INT8 matmuls on the active kernel variant (attention_int8.cpp).
at::Tensor attention_int8_fm(const at::Tensor& qkv, at::IntArrayRef lengths, int64_t n_heads, double scaling);

// Runs item(sequence, head) for every head of every non-empty sequence on the threads, longest sequences first, each
// thread taking the next item when it is free. A head's cost grows with its length squared: fixed shares of the items
// in order gave one thread every head of a batch's long sequence (token-split forwards of 300 + 60, 384 + 128 and
// 128 + 40 tokens took 0.87x, 0.92x and 0.95x the time with this, alternating in one process; 1 x 384 1.01x).
void for_each_head(at::IntArrayRef lengths, int64_t n_heads, const std::function<void(int64_t, int64_t)>& item);

// The two ops' work on raw buffers (checked arguments): qkv [3 dim][T] -> ctx [dim][T], one parallel item per
// (sequence, head). first: each sequence's first token column (sequence_starts).
void attention_fm_into(const KernelTable& k, const float* qkv, int64_t dim, int64_t T, at::IntArrayRef lengths,
                       const std::vector<int64_t>& first, int64_t n_heads, double scaling, float* ctx);
// Returns the first sequence (in order) whose Q, K or V hold a NaN or Inf or whose scores overflow, or -1.
int64_t attention_int8_into(const KernelTable& k, const float* qkv, int64_t dim, int64_t T, at::IntArrayRef lengths,
                            const std::vector<int64_t>& first, int64_t n_heads, double scaling, float* ctx);

// The non-empty sequences, longest first (ties in order): the order in which threads take sequences, or their heads,
// when each takes the next one as it is free.
std::vector<int64_t> longest_first(at::IntArrayRef lengths);

// Validates packed sequence lengths (each >= 0, adding up to the `tokens` columns of `tensor`); returns each
// sequence's first token column.
std::vector<int64_t> sequence_starts(const char* op, at::IntArrayRef lengths, int64_t tokens, const char* tensor);

// Validates the shared arguments; returns each sequence's first token column.
std::vector<int64_t> check_attention_args(const char* op, const at::Tensor& qkv, at::IntArrayRef lengths,
                                          int64_t n_heads);

}  // namespace fastdistilbert
