// Cache-blocked transpose between the token-major [tokens, features] layout of the embeddings and the hidden
// states and the kernels' feature-major [features, tokens] layout (see transpose_fm.cpp).
#pragma once
#include <ATen/ATen.h>

namespace fastdistilbert {

// x [A, B] contiguous fp32 -> x^T [B, A] contiguous.
at::Tensor transpose_fm(const at::Tensor& x);

}  // namespace fastdistilbert
