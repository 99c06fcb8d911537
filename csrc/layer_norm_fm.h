// Feature-major LayerNorm (see layer_norm_fm.cpp).
#pragma once
#include <ATen/ATen.h>

#include <tuple>

namespace fastdistilbert {

// The argument checks shared by the LayerNorm ops (x [features, tokens], gamma and beta [features], eps).
void check_layer_norm_args(const char* op, const at::Tensor& x, const at::Tensor& gamma, const at::Tensor& beta,
                           double eps);

at::Tensor layer_norm_fm(const at::Tensor& x, const at::Tensor& gamma, const at::Tensor& beta, double eps);

// layer_norm_fm and quantize_per_token of its output in one pass per token range: (y, q, scale, zp).
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> layer_norm_quantize_fm(const at::Tensor& x,
                                                                                  const at::Tensor& gamma,
                                                                                  const at::Tensor& beta, double eps);

}  // namespace fastdistilbert
