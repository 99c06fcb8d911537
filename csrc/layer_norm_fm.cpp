// LayerNorm over the feature dimension of feature-major activations x[K][T] (the GEMMs' layout):
// every token (column) is normalized over its K features by the active variant's vectorized loops
// (layer_norm_tokens.inc); threads split the tokens.
#include "layer_norm_fm.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>

#include "dispatch.h"

namespace fastdistilbert {

void check_layer_norm_args(const char* op, const at::Tensor& x, const at::Tensor& gamma, const at::Tensor& beta,
                           double eps) {
  TORCH_CHECK(x.scalar_type() == at::kFloat && x.dim() == 2, op, ": x must be float32 [features, tokens], got ",
              x.scalar_type(), " ", x.sizes());
  TORCH_CHECK(x.is_contiguous(), op, ": x must be contiguous (feature-major [features, tokens])");
  TORCH_CHECK(x.size(0) > 0, op, ": x has no features");
  for (const at::Tensor* p : {&gamma, &beta})
    TORCH_CHECK(p->scalar_type() == at::kFloat && p->dim() == 1 && p->size(0) == x.size(0) && p->is_contiguous(), op,
                ": gamma and beta must be contiguous float32 [", x.size(0), "], got ", p->scalar_type(), " ", p->sizes());
  TORCH_CHECK(eps >= 0, op, ": eps must be non-negative");
}

at::Tensor layer_norm_fm(const at::Tensor& x, const at::Tensor& gamma, const at::Tensor& beta, double eps) {
  check_layer_norm_args("layer_norm_fm", x, gamma, beta, eps);
  const int64_t K = x.size(0), T = x.size(1);
  at::Tensor y = at::empty_like(x);
  const float *xs = x.data_ptr<float>(), *g = gamma.data_ptr<float>(), *b = beta.data_ptr<float>();
  float* ys = y.data_ptr<float>();
  const KernelTable& k = active_kernels();
  at::parallel_for(0, T, 64, [&](int64_t t0, int64_t t1) { k.layer_norm(xs, K, T, t0, t1, g, b, eps, ys); });
  return y;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> layer_norm_quantize_fm(const at::Tensor& x,
                                                                                  const at::Tensor& gamma,
                                                                                  const at::Tensor& beta, double eps) {
  const char* op = "layer_norm_quantize_fm";
  check_layer_norm_args(op, x, gamma, beta, eps);
  const int64_t K = x.size(0), T = x.size(1);
  at::Tensor y = at::empty_like(x);
  at::Tensor q = at::empty({K, T}, x.options().dtype(at::kByte));
  at::Tensor scale = at::empty({T}, x.options());
  at::Tensor zp = at::empty({T}, x.options().dtype(at::kInt));
  const float *xs = x.data_ptr<float>(), *g = gamma.data_ptr<float>(), *b = beta.data_ptr<float>();
  float* ys = y.data_ptr<float>();
  const KernelTable& k = active_kernels();
  std::atomic<int64_t> bad_token{-1};
  // Each thread quantizes the tokens it has just normalized, while they are still in its caches.
  at::parallel_for(0, (T + 63) / 64, 1, [&](int64_t b0, int64_t e0) {
    const int64_t t0 = b0 * 64, t1 = std::min(T, e0 * 64);
    k.layer_norm(xs, K, T, t0, t1, g, b, eps, ys);
    if (!k.quantize_per_token(ys, K, T, t0, t1, scale.data_ptr<float>(), zp.data_ptr<int32_t>(), q.data_ptr<uint8_t>()))
      bad_token.store(t0);
  });
  TORCH_CHECK(bad_token.load() < 0, op, ": the normalized activations contain NaN or Inf (in the tokens from ",
              bad_token.load(), " on); the input must be finite");
  return {y, q, scale, zp};
}

}  // namespace fastdistilbert
