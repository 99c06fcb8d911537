// The embedding layer of the INT8 forward, written straight into the kernels' feature-major layout
// (see embeddings_fm.cpp).
#pragma once
#include <ATen/ATen.h>

namespace fastdistilbert {

// LayerNorm(words[ids[t]] + places[positions[t]]) for every packed token t, as [dim, tokens] fp32.
// ids, positions: int64 [tokens]; words [vocab, dim], places [max_positions, dim], gamma / beta [dim]: fp32.
at::Tensor embeddings_fm(const at::Tensor& ids, const at::Tensor& positions, const at::Tensor& words,
                         const at::Tensor& places, const at::Tensor& gamma, const at::Tensor& beta, double eps);

}  // namespace fastdistilbert
