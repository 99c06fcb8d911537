// The encoder's self-attention (QKV projection + attention) as one op, on feature-major activations:
//   self_attention_fm(x_q, x_scale, x_zero_point, packed_qkv, dim, lengths, n_heads, scaling)
//     == attention_fm(quantized_linear(x_q, x_scale, x_zero_point, packed_qkv), lengths, n_heads, scaling)
// computed sequence by sequence: each sequence's [3 dim, length] Q, K, V panel is made and consumed while it is
// in L2 (rows `length` floats apart) instead of a [3 dim, tokens] tensor going through memory with power-of-two
// row strides. Bit-identical to the two ops (per-token epilogue, exact accumulators, the same attention kernel).
#pragma once
#include <ATen/ATen.h>

#include <tuple>

namespace fastdistilbert {

at::Tensor self_attention_fm(const at::Tensor& x_q, const at::Tensor& x_scale, const at::Tensor& x_zero_point,
                             const at::Tensor& packed_qkv, int64_t dim, at::IntArrayRef lengths, int64_t n_heads,
                             double scaling);

// The whole attention sublayer, sequence by sequence, for per-token (dynamic) activation codes:
//   layer_norm_quantize_fm(dynamic_quantized_linear(self_attention_fm(...), packed_out, residual=residual),
//                          gamma, beta, eps) -> (h1, its codes, scale, zero point)
// The context, the pre-LayerNorm sum and the normalized panel of a sequence never leave L2. Bit-identical to
// the three ops.
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> attention_block_fm(
    const at::Tensor& x_q, const at::Tensor& x_scale, const at::Tensor& x_zero_point, const at::Tensor& packed_qkv,
    const at::Tensor& packed_out, const at::Tensor& residual, const at::Tensor& gamma, const at::Tensor& beta,
    double eps, int64_t dim, at::IntArrayRef lengths, int64_t n_heads, double scaling);

}  // namespace fastdistilbert
