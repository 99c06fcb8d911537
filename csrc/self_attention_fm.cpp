#include "self_attention_fm.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <vector>

#include "attention_fm.h"
#include "dispatch.h"
#include "gemm_ops.h"
#include "layer_norm_fm.h"
#include "packed_weight.h"
#include "panel_ops.h"

namespace fastdistilbert {
namespace {

// Sequences with at least one token: each is one parallel item of the fused ops.
int64_t nonempty(at::IntArrayRef lengths) {
  return std::count_if(lengths.begin(), lengths.end(), [](int64_t n) { return n > 0; });
}

// A sequence's columns of the [K][T] codes, copied into a compact [K][L] panel for SequenceAttention.
const uint8_t* sequence_codes(const uint8_t* x_q, int64_t K, int64_t T, int64_t t0, int64_t L) {
  thread_local AlignedVector<uint8_t> panel;  // kept between calls
  panel.resize(K * L);
  copy_rows(x_q + t0, T, panel.data(), L, K, L);
  return panel.data();
}

Prepared prepare_qkv(const KernelTable& k, const at::Tensor& x_q, const at::Tensor& x_scale,
                     const at::Tensor& x_zero_point, const at::Tensor& packed_qkv, int64_t dim, int64_t n_heads,
                     const char* op) {
  Prepared prep = prepare_quantized(k, x_q, x_scale, x_zero_point, packed_qkv, op);
  TORCH_CHECK(n_heads > 0, op, ": n_heads must be positive, got ", n_heads);
  TORCH_CHECK(prep.p.N == 3 * dim, op, ": the packed weight has ", prep.p.N, " output rows, not 3 * dim = ", 3 * dim);
  TORCH_CHECK(dim % n_heads == 0, op, ": dim = ", dim, " is not divisible by n_heads = ", n_heads);
  return prep;
}

}  // namespace

at::Tensor self_attention_fm(const at::Tensor& x_q, const at::Tensor& x_scale, const at::Tensor& x_zero_point,
                             const at::Tensor& packed_qkv, int64_t dim, at::IntArrayRef lengths, int64_t n_heads,
                             double scaling) {
  const char* op = "self_attention_fm";
  const KernelTable& k = active_kernels();
  const Prepared prep = prepare_qkv(k, x_q, x_scale, x_zero_point, packed_qkv, dim, n_heads, op);
  const int64_t T = prep.p.T;
  const std::vector<int64_t> first = sequence_starts(op, lengths, T, "x_q");
  if (nonempty(lengths) < at::get_num_threads()) {
    // Fewer sequences than threads: the two ops split rows and heads across threads instead.
    const at::Tensor qkv = quantized_linear(x_q, x_scale, x_zero_point, packed_qkv, prep.p.N, false, std::nullopt,
                                            std::nullopt, std::nullopt);
    return attention_fm(qkv, lengths, n_heads, scaling);
  }
  at::Tensor out = new_output(dim, T, at::kFloat);
  const bool flip_sign = x_q.scalar_type() == at::kChar;
  const uint8_t* codes = static_cast<const uint8_t*>(x_q.data_ptr());
  float* ctx = out.data_ptr<float>();
  at::parallel_for(0, int64_t(lengths.size()), 1, [&](int64_t s0, int64_t s1) {
    thread_local SequenceAttention work;  // kept between calls (no allocation or zero-filling per call)
    for (int64_t s = s0; s < s1; ++s)
      if (lengths[s] > 0)
        work.run(k, prep.p, sequence_codes(codes, prep.p.K, T, first[s], lengths[s]), flip_sign,
                 prep.x_scale.data_ptr<float>() + first[s], prep.x_zp.data_ptr<int32_t>() + first[s], lengths[s],
                 n_heads, float(scaling), ctx + first[s], T);
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> attention_block_fm(
    const at::Tensor& x_q, const at::Tensor& x_scale, const at::Tensor& x_zero_point, const at::Tensor& packed_qkv,
    const at::Tensor& packed_out, const at::Tensor& residual, const at::Tensor& gamma, const at::Tensor& beta,
    double eps, int64_t dim, at::IntArrayRef lengths, int64_t n_heads, double scaling) {
  const char* op = "attention_block_fm";
  const KernelTable& k = active_kernels();
  TORCH_CHECK(x_q.scalar_type() == at::kByte, op, ": x_q must be uint8 per-token codes, got ", x_q.scalar_type());
  const Prepared prep = prepare_qkv(k, x_q, x_scale, x_zero_point, packed_qkv, dim, n_heads, op);
  const int64_t T = prep.p.T;
  const std::vector<int64_t> first = sequence_starts(op, lengths, T, "x_q");
  GemmParams out_p{};
  parse_packed_weight(packed_out, out_p, op);
  TORCH_CHECK(out_p.K == dim && out_p.N == dim, op, ": the output projection is ", out_p.N, " x ", out_p.K,
              ", not dim x dim = ", dim, " x ", dim);
  TORCH_CHECK(residual.scalar_type() == at::kFloat && residual.dim() == 2 && residual.size(0) == dim &&
                  residual.size(1) == T && residual.is_contiguous(),
              op, ": residual must be a contiguous float32 [", dim, ", ", T, "] tensor, got ", residual.scalar_type(),
              " ", residual.sizes());
  if (nonempty(lengths) < at::get_num_threads()) {
    // Fewer sequences than threads: the ops one by one, each split across the threads.
    const at::Tensor ctx = self_attention_fm(x_q, x_scale, x_zero_point, packed_qkv, dim, lengths, n_heads, scaling);
    return layer_norm_quantize_fm(dynamic_quantized_linear(ctx, packed_out, dim, false, residual), gamma, beta, eps);
  }
  check_layer_norm_args(op, residual, gamma, beta, eps);
  auto normalized = empty_normalized(residual);
  const NormalizedOutput out = normalized_output(normalized, gamma, beta, eps);
  const uint8_t* codes = x_q.data_ptr<uint8_t>();
  std::atomic<int64_t> bad_token{-1};
  std::atomic<bool> bad_context{false};
  at::parallel_for(0, int64_t(lengths.size()), 1, [&](int64_t s0, int64_t s1) {
    // Per-thread scratch kept between calls: fresh buffers cost their allocation, zero-filling and page faults
    // on every call.
    thread_local SequenceAttention attention;
    thread_local SublayerTail tail;
    thread_local ActivationPanel context;
    for (int64_t s = s0; s < s1; ++s) {
      const int64_t L = lengths[s], t0 = first[s];
      if (L == 0) continue;
      context.resize(dim, L);
      attention.run(k, prep.p, sequence_codes(codes, prep.p.K, T, t0, L), false, prep.x_scale.data_ptr<float>() + t0,
                    prep.x_zp.data_ptr<int32_t>() + t0, L, n_heads, float(scaling), context.h.data(), L);
      if (!context.quantize(k, dim, L)) {
        bad_context = true;
        continue;
      }
      // Output projection + residual, LayerNorm and its codes, into the sequence's columns.
      if (!tail.run(k, out_p, context.codes.data(), context.scale.data(), context.zp.data(), L, t0,
                    residual.data_ptr<float>(), out))
        bad_token.store(t0);
    }
  });
  TORCH_CHECK(!bad_context.load(), op, ": the attention context contains NaN or Inf; activations must be finite");
  TORCH_CHECK(bad_token.load() < 0, op, ": the normalized activations contain NaN or Inf (in the tokens from ",
              bad_token.load(), " on); the input must be finite");
  return normalized;
}

}  // namespace fastdistilbert
