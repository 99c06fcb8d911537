// Self-attention on packed feature-major Q, K, V (see attention_fm.cpp).
#pragma once
#include <ATen/ATen.h>

#include <vector>

namespace fastdistilbert {

// fp32 attention on the active kernel variant (attention_fm.cpp, attention_head.inc).
at::Tensor attention_fm(const at::Tensor& qkv, at::IntArrayRef lengths, int64_t n_heads, double scaling);

// The same attention with INT8 matmuls on the active kernel variant (attention_int8.cpp).
at::Tensor attention_int8_fm(const at::Tensor& qkv, at::IntArrayRef lengths, int64_t n_heads, double scaling);

// Validates packed sequence lengths (each >= 0, adding up to the `tokens` columns of `tensor`); returns each
// sequence's first token column.
std::vector<int64_t> sequence_starts(const char* op, at::IntArrayRef lengths, int64_t tokens, const char* tensor);

// Validates the shared arguments; returns each sequence's first token column.
std::vector<int64_t> check_attention_args(const char* op, const at::Tensor& qkv, at::IntArrayRef lengths,
                                          int64_t n_heads);

}  // namespace fastdistilbert
