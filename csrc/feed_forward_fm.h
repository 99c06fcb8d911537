// The encoder's feed-forward block as one op, on feature-major activations:
//   out = dynamic_quantized_linear(quantized_linear(x_q, x_scale, x_zero_point, packed1, gelu=True), packed2,
//                                  residual=residual)
// computed block of tokens by block of tokens, so the [ffn_dim, block] fp32 intermediate stays in L2 instead
// of streaming a [ffn_dim, tokens] tensor through memory three times (written by lin1, read twice by the
// per-token quantizer, whose power-of-two row strides also alias in the caches). Bit-identical to the two ops:
// quantization is per token and the accumulators are exact, so the token split changes nothing.
#pragma once
#include <ATen/ATen.h>

#include <tuple>

namespace fastdistilbert {

at::Tensor feed_forward_fm(const at::Tensor& x_q, const at::Tensor& x_scale, const at::Tensor& x_zero_point,
                           const at::Tensor& packed1, const at::Tensor& packed2, const at::Tensor& residual);

// The whole feed-forward sublayer for a next consumer that quantizes per token: layer_norm_quantize_fm(
// feed_forward_fm(...), gamma, beta, eps) -> (h, its codes, scale, zero point), the LayerNorm done on each
// block's panel too. Bit-identical to the two ops.
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> feed_forward_block_fm(
    const at::Tensor& x_q, const at::Tensor& x_scale, const at::Tensor& x_zero_point, const at::Tensor& packed1,
    const at::Tensor& packed2, const at::Tensor& residual, const at::Tensor& gamma, const at::Tensor& beta,
    double eps);

}  // namespace fastdistilbert
