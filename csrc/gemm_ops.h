// Torch-side implementations of the GEMM ops (validation, activation packing, threading).
#pragma once
#include <ATen/ATen.h>

#include <optional>
#include <string>
#include <tuple>

namespace fastdistilbert {

at::Tensor quantized_linear(const at::Tensor& x_q, const at::Tensor& x_scale, const at::Tensor& x_zero_point,
                            const at::Tensor& packed, int64_t out_features, bool gelu,
                            const std::optional<at::Tensor>& residual, std::optional<double> out_scale,
                            std::optional<int64_t> out_zero_point);
at::Tensor dynamic_quantized_linear(const at::Tensor& x, const at::Tensor& packed, int64_t out_features, bool gelu,
                                    const std::optional<at::Tensor>& residual);
std::tuple<at::Tensor, at::Tensor, at::Tensor> quantize_per_token(const at::Tensor& x);
at::Tensor quantized_linear_accumulators(const at::Tensor& x_q, const at::Tensor& packed, int64_t out_features,
                                         const std::string& isa);
// Static per-tensor u8 codes of fp32 x (any shape): clamp(rne(x / scale) + zero_point, 0, 255).
at::Tensor quantize_per_tensor_fm(const at::Tensor& x, double scale, int64_t zero_point);
// Name of the variant that executed the most recent GEMM call in this process ("" before any).
std::string last_isa();
// Test hook: pre-fill every GEMM output with this byte (-1: off).
void set_output_sentinel(int64_t byte);
// Runs every thread's peak loop of a variant; returns the multiply-accumulates executed.
int64_t peak_probe(int64_t iterations, const std::string& isa);

}  // namespace fastdistilbert
