// LayerNorm over the feature dimension of feature-major activations x[K][T] (the GEMMs' layout):
// every token (column) is normalized over its K features. Loops run features outer and tokens
// inner, so the compiler vectorizes over contiguous tokens; threads split the tokens.
#include "layer_norm_fm.h"

#include <ATen/Parallel.h>

#include <cmath>
#include <vector>

namespace fastdistilbert {

at::Tensor layer_norm_fm(const at::Tensor& x, const at::Tensor& gamma, const at::Tensor& beta, double eps) {
  const char* op = "layer_norm_fm";
  TORCH_CHECK(x.scalar_type() == at::kFloat && x.dim() == 2, op, ": x must be float32 [features, tokens], got ",
              x.scalar_type(), " ", x.sizes());
  TORCH_CHECK(x.is_contiguous(), op, ": x must be contiguous (feature-major [features, tokens])");
  const int64_t K = x.size(0), T = x.size(1);
  TORCH_CHECK(K > 0, op, ": x has no features");
  for (const at::Tensor* p : {&gamma, &beta})
    TORCH_CHECK(p->scalar_type() == at::kFloat && p->dim() == 1 && p->size(0) == K && p->is_contiguous(), op,
                ": gamma and beta must be contiguous float32 [", K, "], got ", p->scalar_type(), " ", p->sizes());
  TORCH_CHECK(eps >= 0, op, ": eps must be non-negative");
  at::Tensor y = at::empty_like(x);
  const float* xs = x.data_ptr<float>();
  const float* g = gamma.data_ptr<float>();
  const float* b = beta.data_ptr<float>();
  float* ys = y.data_ptr<float>();
  at::parallel_for(0, T, 64, [&](int64_t t0, int64_t t1) {
    const int64_t n = t1 - t0;
    // Statistics in double: two-pass mean / variance stays accurate for large K and offsets.
    std::vector<double> mean(n, 0.0), var(n, 0.0);
    for (int64_t k = 0; k < K; ++k)
      for (int64_t i = 0; i < n; ++i) mean[i] += xs[k * T + t0 + i];
    for (int64_t i = 0; i < n; ++i) mean[i] /= double(K);
    for (int64_t k = 0; k < K; ++k)
      for (int64_t i = 0; i < n; ++i) {
        const double d = xs[k * T + t0 + i] - mean[i];
        var[i] += d * d;
      }
    std::vector<float> mean_f(n), rstd(n);
    for (int64_t i = 0; i < n; ++i) {
      mean_f[i] = float(mean[i]);
      rstd[i] = float(1.0 / std::sqrt(var[i] / double(K) + eps));
    }
    for (int64_t k = 0; k < K; ++k)
      for (int64_t i = 0; i < n; ++i)
        ys[k * T + t0 + i] = (xs[k * T + t0 + i] - mean_f[i]) * rstd[i] * g[k] + b[k];
  });
  return y;
}

}  // namespace fastdistilbert
