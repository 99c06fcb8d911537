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

// The two validated GEMMs of the feed-forward; p1's activations are the pre-packed xp1 and the first op's
// per-token scale / zero point.
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
  f.p1.x_scale = f.first.x_scale.data_ptr<float>();
  f.p1.x_zp = f.first.x_zp.data_ptr<int32_t>();
  f.p2 = GemmParams{};
  parse_packed_weight(packed2, f.p2, op);
  TORCH_CHECK(f.p2.K == f.p1.N, op, ": the second packed weight has in_features K = ", f.p2.K,
              " but the first has out_features N = ", f.p1.N, " (lin2 must consume lin1's output)");
  f.T = f.p1.T;
  TORCH_CHECK(residual.scalar_type() == at::kFloat, op, ": residual must be float32, got ", residual.scalar_type());
  TORCH_CHECK(residual.dim() == 2 && residual.size(0) == f.p2.N && residual.size(1) == f.T, op,
              ": residual must have shape [", f.p2.N, ", ", f.T, "], got ", residual.sizes());
  TORCH_CHECK(residual.is_contiguous(), op, ": residual must be contiguous");
  TORCH_INTERNAL_ASSERT(kFeedForwardBlock % k.token_align(k4x1) == 0 &&
                        kFeedForwardBlock % k.token_align(f.p2.pattern) == 0);
  return f;
}

// Whether T tokens make a feed-forward block for every thread; with fewer, the ops split rows across the threads.
bool block_per_thread(int64_t T) {
  const int64_t threads = at::get_num_threads();
  return feed_forward_blocks(T, threads) >= threads;
}

// Per-thread scratch of one token block: lin1 + GELU and its codes, the GEMM of lin2 on them, and the LayerNorm
// tail of feed_forward_block_fm.
struct BlockScratch {
  HiddenPanel hidden;
  PanelGemm lin2;
  SublayerTail tail;
};

// Every block of tokens on the threads: lin1 + GELU and its codes (HiddenPanel::compute), then
// finish(scratch, t0, width). Refuses, naming the tokens, when a block's hidden activations are not finite.
template <typename Finish>
void for_each_block(const KernelTable& k, const FeedForward& f, const char* op, Finish finish) {
  std::atomic<int64_t> bad_block{-1};
  const int64_t threads = at::get_num_threads();
  at::parallel_for(0, feed_forward_blocks(f.T, threads), 1, [&](int64_t b0, int64_t b1) {
    thread_local BlockScratch s;  // kept between calls: no allocation, zero-filling or page faults per call
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t t0 = b * kFeedForwardBlock, width = feed_forward_width(f.T, b, threads);
      if (s.hidden.compute(k, f.p1, t0, width))
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
  const int64_t T = f.T;
  if (!block_per_thread(T)) {
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
    s.lin2.run(k, lin2, s.hidden.codes.data(), false, s.hidden.scale.data(), s.hidden.zp.data(), width);
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
  if (!block_per_thread(f.T))
    return layer_norm_quantize_fm(feed_forward_fm(x_q, x_scale, x_zero_point, packed1, packed2, residual), gamma,
                                  beta, eps);
  auto normalized = empty_normalized(residual);
  const NormalizedOutput out = normalized_output(normalized, gamma, beta, eps);
  f.xp1 = pack_activations(k, f.p1, x_q, false);
  std::atomic<int64_t> bad_token{-1};
  for_each_block(k, f, op, [&](BlockScratch& s, int64_t t0, int64_t width) {
    if (!s.tail.run(k, f.p2, s.hidden.codes.data(), s.hidden.scale.data(), s.hidden.zp.data(), width, t0,
                    residual.data_ptr<float>(), out))
      bad_token.store(t0);
  });
  TORCH_CHECK(bad_token.load() < 0, op, ": the normalized activations contain NaN or Inf (in the tokens from ",
              bad_token.load(), " on); the input must be finite");
  return normalized;
}

}  // namespace fastdistilbert
