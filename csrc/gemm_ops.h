// Torch-side implementations of the GEMM ops (validation, activation packing, threading).
#pragma once
#include <ATen/ATen.h>

#include <optional>
#include <string>
#include <tuple>

#include "kernels.h"

namespace fastdistilbert {

at::Tensor quantized_linear(const at::Tensor& x_q, const at::Tensor& x_scale, const at::Tensor& x_zero_point,
                            const at::Tensor& packed, int64_t out_features, bool gelu,
                            const std::optional<at::Tensor>& residual, std::optional<double> out_scale,
                            std::optional<int64_t> out_zero_point);
at::Tensor dynamic_quantized_linear(const at::Tensor& x, const at::Tensor& packed, int64_t out_features, bool gelu,
                                    const std::optional<at::Tensor>& residual);
// The same two into a caller's `out` ([N, T], the result's dtype, contiguous; overloads "out" of the ops).
void quantized_linear_out(const at::Tensor& x_q, const at::Tensor& x_scale, const at::Tensor& x_zero_point,
                          const at::Tensor& packed, int64_t out_features, bool gelu,
                          const std::optional<at::Tensor>& residual, std::optional<double> out_scale,
                          std::optional<int64_t> out_zero_point, const at::Tensor& out);
void dynamic_quantized_linear_out(const at::Tensor& x, const at::Tensor& packed, int64_t out_features, bool gelu,
                                  const std::optional<at::Tensor>& residual, const at::Tensor& out);
std::tuple<at::Tensor, at::Tensor, at::Tensor> quantize_per_token(const at::Tensor& x);
at::Tensor quantized_linear_accumulators(const at::Tensor& x_q, const at::Tensor& packed, int64_t out_features,
                                         const std::string& isa);
// Static per-tensor u8 codes of fp32 x (any shape): clamp(rne(x * (1 / scale)) + zero_point, 0, 255).
at::Tensor quantize_per_tensor_fm(const at::Tensor& x, double scale, int64_t zero_point);

// Building blocks shared with the fused ops (feed_forward_fm.cpp, self_attention_fm.cpp).
// A GEMM's parsed packed weight and its activations' per-token scale / zero point, padded to Tp.
struct Prepared {
  GemmParams p{};
  at::Tensor x_scale, x_zp;
};
// Parses `packed` and checks feature-major activations x [K, T] against it (T, Tp and ld set).
Prepared prepare(const KernelTable& k, const at::Tensor& x, const at::Tensor& packed, const char* op);
// prepare() plus the checks of quantized_linear's x_q (u8 or s8), x_scale and x_zero_point.
Prepared prepare_quantized(const KernelTable& k, const at::Tensor& x_q, const at::Tensor& x_scale,
                           const at::Tensor& x_zero_point, const at::Tensor& packed, const char* op);
// Packs x [K, T] for p (all Tp tokens, in parallel) and points p.xp at the returned buffer.
at::Tensor pack_activations(const KernelTable& k, GemmParams& p, const at::Tensor& x, bool flip_sign);
// An uninitialized [N, T] output (sentinel-filled when the test hook is on).
at::Tensor new_output(int64_t N, int64_t T, at::ScalarType dtype);

// Name of the variant that executed the most recent GEMM call in this process ("" before any).
std::string last_isa();
// Records `k` as that variant (ops that run their GEMMs without pack_activations call it).
void note_last_isa(const KernelTable& k);
// Size from which the linear ops write fp32 outputs with non-temporal stores (tests cover both sides).
int64_t streamed_output_bytes();
// Test hook: pre-fill every GEMM output with this byte (-1: off).
void set_output_sentinel(int64_t byte);
// Runs every thread's peak loop of a variant; returns the multiply-accumulates executed.
int64_t peak_probe(int64_t iterations, const std::string& isa);

}  // namespace fastdistilbert
