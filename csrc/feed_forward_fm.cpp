#include "feed_forward_fm.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <vector>

#include "dispatch.h"
#include "gemm_ops.h"
#include "packed_weight.h"

namespace fastdistilbert {
namespace {

// Tokens per block: a multiple of every variant's 4x1 chunk (64 for 512-bit, 32 for 256-bit, 1 for ref).
// The [ffn_dim, 64] fp32 intermediate (768 KiB at ffn_dim 3072) and its codes stay in L2 (2 MiB per core on
// the Xeon we measured on). 128-token blocks were 13% faster there for (4,1) weights at 3072 tokens but 20-30%
// slower for (1,4) weights at 1024 tokens, whose activation panels then leave L2.
constexpr int64_t kBlock = 64;

// Per-thread scratch for one token block of the intermediate.
struct BlockScratch {
  std::vector<float> hidden;   // [N1][width] fp32 output of lin1 + GELU
  std::vector<uint8_t> codes;  // [N1][width] per-token u8 codes of it
  std::vector<uint8_t> packed; // the codes in lin2's packed-activation layout
  std::vector<float> scale;    // [Tp2] per-token scale (padding: 1)
  std::vector<int32_t> zp;     // [Tp2] per-token zero point (padding: 0)
};

}  // namespace

at::Tensor feed_forward_fm(const at::Tensor& x_q, const at::Tensor& x_scale, const at::Tensor& x_zero_point,
                           const at::Tensor& packed1, const at::Tensor& packed2, const at::Tensor& residual) {
  const char* op = "feed_forward_fm";
  TORCH_CHECK(x_q.scalar_type() == at::kByte, op, ": x_q must be uint8 per-token codes, got ", x_q.scalar_type());
  const KernelTable& k = active_kernels();
  Prepared first = prepare_quantized(k, x_q, x_scale, x_zero_point, packed1, op);
  GemmParams p1 = first.p;
  GemmParams p2{};
  parse_packed_weight(packed2, p2, op);
  TORCH_CHECK(p2.K == p1.N, op, ": the second packed weight has in_features K = ", p2.K,
              " but the first has out_features N = ", p1.N, " (lin2 must consume lin1's output)");
  const int64_t T = p1.T;
  TORCH_CHECK(residual.scalar_type() == at::kFloat, op, ": residual must be float32, got ", residual.scalar_type());
  TORCH_CHECK(residual.dim() == 2 && residual.size(0) == p2.N && residual.size(1) == T, op,
              ": residual must have shape [", p2.N, ", ", T, "], got ", residual.sizes());
  TORCH_CHECK(residual.is_contiguous(), op, ": residual must be contiguous");
  at::Tensor out = new_output(p2.N, T, at::kFloat);
  if (T == 0) return out;
  TORCH_INTERNAL_ASSERT(kBlock % k.token_align(k4x1) == 0 && kBlock % k.token_align(p2.pattern) == 0);
  const int64_t n_blocks = (T + kBlock - 1) / kBlock;
  if (n_blocks < at::get_num_threads()) {
    // Too few tokens to give every thread a block: the two ops split rows across threads instead.
    at::Tensor hidden = quantized_linear(x_q, x_scale, x_zero_point, packed1, p1.N, true, std::nullopt, std::nullopt,
                                         std::nullopt);
    return dynamic_quantized_linear(hidden, packed2, p2.N, false, residual);
  }

  at::Tensor xp1 = pack_activations(k, p1, x_q, false);
  p1.x_scale = first.x_scale.data_ptr<float>();
  p1.x_zp = first.x_zp.data_ptr<int32_t>();
  p1.gelu = 1;
  p2.gelu = 0;
  p2.residual = residual.data_ptr<float>();
  p2.out_f32 = out.data_ptr<float>();
  p2.ld = T;

  const int64_t N1 = p1.N, rows2 = p2.pattern == k4x1 ? p2.K : p2.Kp;
  std::atomic<int64_t> bad_block{-1};
  at::parallel_for(0, n_blocks, 1, [&](int64_t b0, int64_t b1) {
    BlockScratch s;
    s.hidden.resize(N1 * kBlock);
    s.codes.resize(N1 * kBlock);
    s.packed.resize(rows2 * kBlock);
    s.scale.resize(kBlock);
    s.zp.resize(kBlock);
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t t0 = b * kBlock, width = std::min(kBlock, T - t0);
      // lin1 + GELU for tokens [t0, t0 + width) into the [N1][width] panel.
      GemmParams a = p1;
      a.out_f32 = s.hidden.data();
      a.ld = width;
      a.out_shift = -t0;
      k.gemm(a, 0, p1.Np / 4, t0, t0 + width);
      if (!k.quantize_per_token(s.hidden.data(), N1, width, 0, width, s.scale.data(), s.zp.data(), s.codes.data())) {
        bad_block.store(t0);
        continue;
      }
      const int64_t align = k.token_align(p2.pattern), Tp2 = (width + align - 1) / align * align;
      std::fill(s.scale.begin() + width, s.scale.end(), 1.0f);
      std::fill(s.zp.begin() + width, s.zp.end(), 0);
      k.pack_x(s.codes.data(), N1, width, 0, p2.pattern, s.packed.data(), Tp2, 0, Tp2);
      // lin2 + residual for the block's tokens, written into columns [t0, t0 + width) of out.
      GemmParams c = p2;
      c.xp = s.packed.data();
      c.T = width;
      c.Tp = Tp2;
      c.x_scale = s.scale.data();
      c.x_zp = s.zp.data();
      c.out_shift = t0;
      k.gemm(c, 0, p2.Np / 4, 0, width);
    }
  });
  TORCH_CHECK(bad_block.load() < 0, op, ": the first linear's output contains NaN or Inf (in the tokens from ",
              bad_block.load(), " on); activations must be finite");
  return out;
}

}  // namespace fastdistilbert
