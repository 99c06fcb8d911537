// Self-attention on packed feature-major Q, K, V (see attention_fm.cpp).
#pragma once
#include <ATen/ATen.h>

namespace fastdistilbert {

at::Tensor attention_fm(const at::Tensor& qkv, at::IntArrayRef lengths, int64_t n_heads, double scaling);

}  // namespace fastdistilbert
