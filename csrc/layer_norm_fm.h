// Feature-major LayerNorm (see layer_norm_fm.cpp).
#pragma once
#include <ATen/ATen.h>

namespace fastdistilbert {

at::Tensor layer_norm_fm(const at::Tensor& x, const at::Tensor& gamma, const at::Tensor& beta, double eps);

}  // namespace fastdistilbert
