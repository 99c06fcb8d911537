#pragma once
#include <ATen/ATen.h>

namespace fastdistilbert {

// LayerNorm over dim 0 of a contiguous float32 `[features, tokens]` tensor (the runtime's activation layout).
at::Tensor layer_norm_feature_major(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias, double eps);

}  // namespace fastdistilbert
