// Cache-blocked transpose between the token-major [tokens, features] layout of the embeddings and the hidden
// states and the kernels' feature-major [features, tokens] layout (see transpose_fm.cpp).
#pragma once
#include <ATen/ATen.h>

namespace fastdistilbert {

// dst[c * dst_ld + r] = src[r * src_ld + c] for r < rows, c < cols (one cache-sized tile).
void transpose_tile(const float* src, int64_t src_ld, int64_t rows, int64_t cols, float* dst, int64_t dst_ld);

// x [A, B] contiguous fp32 -> x^T [B, A] contiguous.
at::Tensor transpose_fm(const at::Tensor& x);

}  // namespace fastdistilbert
