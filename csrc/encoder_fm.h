// The whole encoder stack as one op, for per-token (dynamic) activation codes, on feature-major activations:
//   encoder_fm(h, packed, norms, eps, lengths, n_heads, scaling) == the layer-by-layer ops
//     codes = quantize_per_token(h)
//     for each layer i:  h1, codes1 = attention_block_fm(codes, packed[4i], packed[4i + 1], residual=h,
//                                                        norms[4i], norms[4i + 1], eps[2i], ...)
//                        h, codes  = feed_forward_block_fm(codes1, packed[4i + 2], packed[4i + 3], residual=h1,
//                                                          norms[4i + 2], norms[4i + 3], eps[2i + 1])
//     -> h  [dim, tokens]
// computed depth first: each thread takes a whole sequence through every layer in compact [dim, length] panels
// that stay in its L2, so the activations cross memory twice per forward (in and out) instead of in every
// sublayer, where the [dim, tokens] tensors' power-of-two row strides also made every panel copy slow.
// Bit-identical to the layer-by-layer ops: everything is per token except attention, which is per sequence in
// both. When whole sequences cannot keep every thread busy (fewer sequences than threads, or the busiest thread
// with more than 1.25x the average tokens), a batch of at least 48 tokens per thread splits its tokens across the
// threads instead (each thread a range of them through every layer; the attention split by sequence and head), and
// a smaller one runs those ops themselves (they split rows across threads).
// int8_attention: the attention matmuls in INT8 (attention_int8.cpp); layer by layer, each attention_block_fm is
// then layer_norm_quantize_fm(dynamic_quantized_linear(attention_int8_fm(quantized_linear(codes, qkv)), out,
// residual=h)).
// activation_params ([4 * layers, 2] float32, optional): static codes instead, the scale and zero point of the
// inputs of each layer's qkv, out, lin1 and lin2 (a calibrated model); layer by layer, every Linear then quantizes
// its fp32 input itself (quantize_per_tensor_fm, then quantized_linear) and the LayerNorms run alone
// (layer_norm_fm), as the Python runtime does for such models.
#pragma once
#include <ATen/ATen.h>

#include <optional>

namespace fastdistilbert {

at::Tensor encoder_fm(const at::Tensor& h, at::TensorList packed, at::TensorList norms, at::ArrayRef<double> eps,
                      at::IntArrayRef lengths, int64_t n_heads, double scaling, bool int8_attention,
                      const std::optional<at::Tensor>& activation_params);

}  // namespace fastdistilbert
