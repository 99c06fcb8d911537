// The one glue file: registers every op under TORCH_LIBRARY(fastdistilbert, ...).
// Kernel bodies live in the torch-free kernels_<isa>.cpp files; this file validates inputs,
// splits work with at::parallel_for and calls the active variant.
#include <ATen/ATen.h>
#include <torch/library.h>

#include "attention_fm.h"
#include "cpu_features.h"
#include "embeddings_fm.h"
#include "encoder_fm.h"
#include "dispatch.h"
#include "feed_forward_fm.h"
#include "gemm_ops.h"
#include "layer_norm_fm.h"
#include "self_attention_fm.h"
#include "transpose_fm.h"

namespace fastdistilbert {
namespace {

std::vector<std::string> op_available_isas() { return available_isas(); }
std::vector<std::string> op_compiled_isas() { return compiled_isas(); }
std::string op_active_isa() { return active_kernels().name; }
void op_set_isa(const std::string& name) { set_isa(name); }

std::vector<std::string> op_cpu_features() {
  const auto& f = cpu_features();
  std::vector<std::string> out;
  for (const auto& [name, member] : cpu_feature_flags())
    if (f.*member) out.emplace_back(name);
  return out;
}

std::string op_cpu_brand() { return cpu_features().brand; }

// Exactness probe of one named variant: sum(a[i] * b[i]) with a u8, b s8.
int64_t op_dot_u8s8(const at::Tensor& a, const at::Tensor& b, const std::string& isa) {
  TORCH_CHECK(a.scalar_type() == at::kByte, "dot_u8s8: a must be uint8, got ", a.scalar_type());
  TORCH_CHECK(b.scalar_type() == at::kChar, "dot_u8s8: b must be int8, got ", b.scalar_type());
  TORCH_CHECK(a.dim() == 1 && b.dim() == 1 && a.numel() == b.numel(), "dot_u8s8: a and b must be 1-D of equal length");
  auto ac = a.contiguous();
  auto bc = b.contiguous();
  const KernelTable& k = isa.empty() ? active_kernels() : kernels_for(isa);
  return k.dot_u8s8(ac.data_ptr<uint8_t>(), bc.data_ptr<int8_t>(), ac.numel());
}

}  // namespace
}  // namespace fastdistilbert

TORCH_LIBRARY(fastdistilbert, m) {
  m.def("available_isas() -> str[]", &fastdistilbert::op_available_isas);
  m.def("compiled_isas() -> str[]", &fastdistilbert::op_compiled_isas);
  m.def("active_isa() -> str", &fastdistilbert::op_active_isa);
  m.def("set_isa(str name) -> ()", &fastdistilbert::op_set_isa);
  m.def("cpu_features() -> str[]", &fastdistilbert::op_cpu_features);
  m.def("cpu_brand() -> str", &fastdistilbert::op_cpu_brand);
  m.def("dot_u8s8(Tensor a, Tensor b, str isa=\"\") -> int", &fastdistilbert::op_dot_u8s8);
  // INT8 GEMMs on feature-major activations [K, T] (see kernels.h); fake kernels in fastdistilbert/ops.py.
  m.def(
      "quantized_linear(Tensor x_q, Tensor x_scale, Tensor x_zero_point, Tensor packed, SymInt out_features, "
      "bool gelu=False, Tensor? residual=None, float? out_scale=None, int? out_zero_point=None) -> Tensor");
  m.def(
      "dynamic_quantized_linear(Tensor x, Tensor packed, SymInt out_features, bool gelu=False, "
      "Tensor? residual=None) -> Tensor");
  // Into a caller's tensor (reused output memory: no page faults of a fresh allocation in a serving loop). They return
  // nothing, as torch.library's mutating custom ops do, so that torch.compile can functionalize them.
  m.def(
      "quantized_linear.out(Tensor x_q, Tensor x_scale, Tensor x_zero_point, Tensor packed, SymInt out_features, "
      "bool gelu=False, Tensor? residual=None, float? out_scale=None, int? out_zero_point=None, *, Tensor(a!) out) "
      "-> ()");
  m.def(
      "dynamic_quantized_linear.out(Tensor x, Tensor packed, SymInt out_features, bool gelu=False, "
      "Tensor? residual=None, *, Tensor(a!) out) -> ()");
  m.def("quantize_per_token(Tensor x) -> (Tensor, Tensor, Tensor)");
  m.def("quantize_per_tensor_fm(Tensor x, float scale, int zero_point) -> Tensor");
  m.def(
      "feed_forward_fm(Tensor x_q, Tensor x_scale, Tensor x_zero_point, Tensor packed1, Tensor packed2, "
      "Tensor residual) -> Tensor");
  m.def(
      "feed_forward_block_fm(Tensor x_q, Tensor x_scale, Tensor x_zero_point, Tensor packed1, Tensor packed2, "
      "Tensor residual, Tensor gamma, Tensor beta, float eps) -> (Tensor, Tensor, Tensor, Tensor)");
  m.def("quantized_linear_accumulators(Tensor x_q, Tensor packed, SymInt out_features, str isa=\"\") -> Tensor");
  m.def("last_isa() -> str", &fastdistilbert::last_isa);
  m.def("set_output_sentinel(int byte) -> ()", &fastdistilbert::set_output_sentinel);
  m.def("streamed_output_bytes() -> int", &fastdistilbert::streamed_output_bytes);
  m.def("peak_probe(int iterations, str isa=\"\") -> int", &fastdistilbert::peak_probe);
  m.def("layer_norm_fm(Tensor x, Tensor gamma, Tensor beta, float eps) -> Tensor");
  m.def("layer_norm_quantize_fm(Tensor x, Tensor gamma, Tensor beta, float eps) -> (Tensor, Tensor, Tensor, Tensor)");
  m.def("attention_fm(Tensor qkv, int[] lengths, int n_heads, float scaling) -> Tensor");
  m.def(
      "self_attention_fm(Tensor x_q, Tensor x_scale, Tensor x_zero_point, Tensor packed_qkv, SymInt dim, "
      "int[] lengths, int n_heads, float scaling) -> Tensor");
  m.def(
      "attention_block_fm(Tensor x_q, Tensor x_scale, Tensor x_zero_point, Tensor packed_qkv, Tensor packed_out, "
      "Tensor residual, Tensor gamma, Tensor beta, float eps, SymInt dim, int[] lengths, int n_heads, float scaling) "
      "-> (Tensor, Tensor, Tensor, Tensor)");
  m.def("attention_int8_fm(Tensor qkv, int[] lengths, int n_heads, float scaling) -> Tensor");
  m.def(
      "encoder_fm(Tensor h, Tensor[] packed, Tensor[] norms, float[] eps, int[] lengths, int n_heads, "
      "float scaling, bool int8_attention=False, Tensor? activation_params=None) -> Tensor");
  m.def("transpose_fm(Tensor x) -> Tensor");
  m.def(
      "embeddings_fm(Tensor ids, Tensor positions, Tensor words, Tensor places, Tensor gamma, Tensor beta, "
      "float eps) -> Tensor");
}

TORCH_LIBRARY_IMPL(fastdistilbert, CPU, m) {
  m.impl("quantized_linear", &fastdistilbert::quantized_linear);
  m.impl("dynamic_quantized_linear", &fastdistilbert::dynamic_quantized_linear);
  m.impl("quantized_linear.out", &fastdistilbert::quantized_linear_out);
  m.impl("dynamic_quantized_linear.out", &fastdistilbert::dynamic_quantized_linear_out);
  m.impl("quantize_per_token", &fastdistilbert::quantize_per_token);
  m.impl("quantize_per_tensor_fm", &fastdistilbert::quantize_per_tensor_fm);
  m.impl("feed_forward_fm", &fastdistilbert::feed_forward_fm);
  m.impl("feed_forward_block_fm", &fastdistilbert::feed_forward_block_fm);
  m.impl("quantized_linear_accumulators", &fastdistilbert::quantized_linear_accumulators);
  m.impl("layer_norm_fm", &fastdistilbert::layer_norm_fm);
  m.impl("layer_norm_quantize_fm", &fastdistilbert::layer_norm_quantize_fm);
  m.impl("attention_fm", &fastdistilbert::attention_fm);
  m.impl("self_attention_fm", &fastdistilbert::self_attention_fm);
  m.impl("attention_block_fm", &fastdistilbert::attention_block_fm);
  m.impl("attention_int8_fm", &fastdistilbert::attention_int8_fm);
  m.impl("encoder_fm", &fastdistilbert::encoder_fm);
  m.impl("transpose_fm", &fastdistilbert::transpose_fm);
  m.impl("embeddings_fm", &fastdistilbert::embeddings_fm);
}
