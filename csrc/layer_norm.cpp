// LayerNorm over the feature dimension of a feature-major activation `[features, tokens]`.
// Baseline-ISA code (compiled without ISA flags): the loops run over contiguous tokens, which the compiler
// vectorizes; a tile of 64 tokens x all features stays in L2 across the three passes (mean, variance, output).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <cmath>

#include "layer_norm.h"

namespace fastdistilbert {

at::Tensor layer_norm_feature_major(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias, double eps) {
  TORCH_CHECK(x.dim() == 2, "layer_norm_fm: x must be [features, tokens], got ", x.sizes());
  TORCH_CHECK(x.scalar_type() == at::kFloat, "layer_norm_fm: x must be float32, got ", x.scalar_type());
  TORCH_CHECK(x.is_contiguous(), "layer_norm_fm: x must be contiguous");
  const int64_t D = x.size(0), T = x.size(1);
  TORCH_CHECK(D > 0, "layer_norm_fm: x has no features");
  for (const at::Tensor* p : {&weight, &bias}) {
    TORCH_CHECK(p->dim() == 1 && p->size(0) == D && p->scalar_type() == at::kFloat && p->is_contiguous(),
                "layer_norm_fm: weight and bias must be contiguous float32 [", D, "]");
  }
  at::Tensor y = at::empty_like(x);
  const float* xp = x.data_ptr<float>();
  const float* wp = weight.data_ptr<float>();
  const float* bp = bias.data_ptr<float>();
  float* yp = y.data_ptr<float>();
  constexpr int64_t kTile = 64;
  const float inv_d = 1.0f / static_cast<float>(D);
  const float feps = static_cast<float>(eps);
  at::parallel_for(0, (T + kTile - 1) / kTile, 1, [&](int64_t begin, int64_t end) {
    float mean[kTile];
    float rstd[kTile];
    for (int64_t tile = begin; tile < end; ++tile) {
      const int64_t t0 = tile * kTile;
      const int64_t n = std::min(kTile, T - t0);
      for (int64_t i = 0; i < n; ++i) mean[i] = 0.0f;
      for (int64_t d = 0; d < D; ++d) {
        const float* row = xp + d * T + t0;
        for (int64_t i = 0; i < n; ++i) mean[i] += row[i];
      }
      for (int64_t i = 0; i < n; ++i) {
        mean[i] *= inv_d;
        rstd[i] = 0.0f;
      }
      for (int64_t d = 0; d < D; ++d) {
        const float* row = xp + d * T + t0;
        for (int64_t i = 0; i < n; ++i) {
          const float c = row[i] - mean[i];
          rstd[i] += c * c;
        }
      }
      for (int64_t i = 0; i < n; ++i) rstd[i] = 1.0f / std::sqrt(rstd[i] * inv_d + feps);
      for (int64_t d = 0; d < D; ++d) {
        const float* row = xp + d * T + t0;
        float* out = yp + d * T + t0;
        const float g = wp[d], b = bp[d];
        for (int64_t i = 0; i < n; ++i) out[i] = (row[i] - mean[i]) * rstd[i] * g + b;
      }
    }
  });
  return y;
}

}  // namespace fastdistilbert
