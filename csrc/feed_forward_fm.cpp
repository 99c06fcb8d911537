#include "feed_forward_fm.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <vector>

#include "dispatch.h"
#include "gemm_ops.h"
#include "layer_norm_fm.h"
#include "packed_weight.h"
#include "panel_ops.h"

namespace fastdistilbert {
namespace {

// Tokens per block: a multiple of every variant's 4x1 chunk (64 for 512-bit, 32 for 256-bit, 1 for ref).
// The [ffn_dim, 64] fp32 intermediate (768 KiB at ffn_dim 3072) and its codes stay in L2 (2 MiB per core on
// the Xeon we measured on). 128-token blocks were 13% faster there for (4,1) weights at 3072 tokens but 20-30%
// slower for (1,4) weights at 1024 tokens, whose activation panels then leave L2.
constexpr int64_t kBlock = 64;

// The two validated GEMMs of the feed-forward and the pre-packed lin1 activations.
struct FeedForward {
  Prepared first;
  GemmParams p1, p2;
  at::Tensor xp1;
  int64_t T;
};

FeedForward prepare_feed_forward(const KernelTable& k, const at::Tensor& x_q, const at::Tensor& x_scale,
                                 const at::Tensor& x_zero_point, const at::Tensor& packed1, const at::Tensor& packed2,
                                 const at::Tensor& residual, const char* op) {
  TORCH_CHECK(x_q.scalar_type() == at::kByte, op, ": x_q must be uint8 per-token codes, got ", x_q.scalar_type());
  FeedForward f;
  f.first = prepare_quantized(k, x_q, x_scale, x_zero_point, packed1, op);
  f.p1 = f.first.p;
  f.p2 = GemmParams{};
  parse_packed_weight(packed2, f.p2, op);
  TORCH_CHECK(f.p2.K == f.p1.N, op, ": the second packed weight has in_features K = ", f.p2.K,
              " but the first has out_features N = ", f.p1.N, " (lin2 must consume lin1's output)");
  f.T = f.p1.T;
  TORCH_CHECK(residual.scalar_type() == at::kFloat, op, ": residual must be float32, got ", residual.scalar_type());
  TORCH_CHECK(residual.dim() == 2 && residual.size(0) == f.p2.N && residual.size(1) == f.T, op,
              ": residual must have shape [", f.p2.N, ", ", f.T, "], got ", residual.sizes());
  TORCH_CHECK(residual.is_contiguous(), op, ": residual must be contiguous");
  TORCH_INTERNAL_ASSERT(kBlock % k.token_align(k4x1) == 0 && kBlock % k.token_align(f.p2.pattern) == 0);
  return f;
}

// Per-thread scratch of one token block: lin1 + GELU into an L2 panel and its per-token codes, the GEMM of lin2
// on them, and the LayerNorm tail of feed_forward_block_fm.
struct BlockScratch {
  std::vector<float> hidden;   // [N1][width] fp32 output of lin1 + GELU
  std::vector<uint8_t> codes;  // [N1][width] per-token u8 codes of it
  std::vector<float> scale;    // [width] their per-token scale
  std::vector<int32_t> zp;     // [width] their per-token zero point
  PanelGemm lin2;
  SublayerTail tail;

  // lin1 + GELU and its quantization for tokens [t0, t0 + width); false when the hidden activations are not
  // finite.
  bool hidden_layer(const KernelTable& k, const FeedForward& f, int64_t t0, int64_t width) {
    const int64_t N1 = f.p1.N;
    hidden.resize(N1 * width), codes.resize(N1 * width), scale.resize(width), zp.resize(width);
    GemmParams a = f.p1;
    a.xp = f.xp1.data_ptr<uint8_t>();
    a.x_scale = f.first.x_scale.data_ptr<float>();
    a.x_zp = f.first.x_zp.data_ptr<int32_t>();
    a.gelu = 1;
    a.residual = nullptr, a.out_u8 = nullptr, a.out_acc = nullptr;
    a.out_f32 = hidden.data();
    a.ld = width;
    a.out_shift = -t0;
    k.gemm(a, 0, f.p1.Np / 4, t0, t0 + width);
    return k.quantize_per_token(hidden.data(), N1, width, 0, width, scale.data(), zp.data(), codes.data());
  }
};

// Every block of tokens on the threads: lin1 + GELU and its codes (BlockScratch::hidden_layer), then
// finish(scratch, t0, width). Refuses, naming the tokens, when a block's hidden activations are not finite.
template <typename Finish>
void for_each_block(const KernelTable& k, const FeedForward& f, const char* op, Finish finish) {
  std::atomic<int64_t> bad_block{-1};
  at::parallel_for(0, (f.T + kBlock - 1) / kBlock, 1, [&](int64_t b0, int64_t b1) {
    thread_local BlockScratch s;  // kept between calls: no allocation, zero-filling or page faults per call
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t t0 = b * kBlock, width = std::min(kBlock, f.T - t0);
      if (s.hidden_layer(k, f, t0, width))
        finish(s, t0, width);
      else
        bad_block.store(t0);
    }
  });
  TORCH_CHECK(bad_block.load() < 0, op, ": the first linear's output contains NaN or Inf (in the tokens from ",
              bad_block.load(), " on); activations must be finite");
}

}  // namespace

at::Tensor feed_forward_fm(const at::Tensor& x_q, const at::Tensor& x_scale, const at::Tensor& x_zero_point,
                           const at::Tensor& packed1, const at::Tensor& packed2, const at::Tensor& residual) {
  const char* op = "feed_forward_fm";
  const KernelTable& k = active_kernels();
  FeedForward f = prepare_feed_forward(k, x_q, x_scale, x_zero_point, packed1, packed2, residual, op);
  const int64_t T = f.T, n_blocks = (T + kBlock - 1) / kBlock;
  if (n_blocks < at::get_num_threads()) {
    // Too few tokens to give every thread a block: the two ops split rows across threads instead.
    at::Tensor hidden = quantized_linear(x_q, x_scale, x_zero_point, packed1, f.p1.N, true, std::nullopt,
                                         std::nullopt, std::nullopt);
    return dynamic_quantized_linear(hidden, packed2, f.p2.N, false, residual);
  }
  at::Tensor out = new_output(f.p2.N, T, at::kFloat);
  f.xp1 = pack_activations(k, f.p1, x_q, false);
  for_each_block(k, f, op, [&](BlockScratch& s, int64_t t0, int64_t width) {
    // lin2 + residual for the block's tokens, written into columns [t0, t0 + width) of out.
    GemmParams lin2 = f.p2;
    lin2.gelu = 0;
    lin2.residual = residual.data_ptr<float>();
    lin2.out_f32 = out.data_ptr<float>(), lin2.out_u8 = nullptr, lin2.out_acc = nullptr;
    lin2.ld = T;
    lin2.out_shift = t0;
    s.lin2.run(k, lin2, s.codes.data(), false, s.scale.data(), s.zp.data(), width);
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> feed_forward_block_fm(
    const at::Tensor& x_q, const at::Tensor& x_scale, const at::Tensor& x_zero_point, const at::Tensor& packed1,
    const at::Tensor& packed2, const at::Tensor& residual, const at::Tensor& gamma, const at::Tensor& beta,
    double eps) {
  const char* op = "feed_forward_block_fm";
  const KernelTable& k = active_kernels();
  FeedForward f = prepare_feed_forward(k, x_q, x_scale, x_zero_point, packed1, packed2, residual, op);
  check_layer_norm_args(op, residual, gamma, beta, eps);
  const int64_t n_blocks = (f.T + kBlock - 1) / kBlock;
  if (n_blocks < at::get_num_threads())
    return layer_norm_quantize_fm(feed_forward_fm(x_q, x_scale, x_zero_point, packed1, packed2, residual), gamma,
                                  beta, eps);
  auto normalized = empty_normalized(residual);
  const NormalizedOutput out = normalized_output(normalized, gamma, beta, eps);
  f.xp1 = pack_activations(k, f.p1, x_q, false);
  std::atomic<int64_t> bad_token{-1};
  for_each_block(k, f, op, [&](BlockScratch& s, int64_t t0, int64_t width) {
    if (!s.tail.run(k, f.p2, s.codes.data(), s.scale.data(), s.zp.data(), width, t0, residual.data_ptr<float>(), out))
      bad_token.store(t0);
  });
  TORCH_CHECK(bad_token.load() < 0, op, ": the normalized activations contain NaN or Inf (in the tokens from ",
              bad_token.load(), " on); the input must be finite");
  return normalized;
}

}  // namespace fastdistilbert
