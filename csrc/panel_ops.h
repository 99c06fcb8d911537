// Pieces the fused ops (feed_forward_fm.cpp, self_attention_fm.cpp, attention_int8.cpp) share: they work on
// one block of tokens (a sequence, or 64 tokens) at a time in compact [rows][width] panels that stay in cache.
#pragma once
#include <ATen/ATen.h>

#include <cstdint>
#include <cstring>
#include <new>
#include <tuple>
#include <vector>

#include "kernels.h"

namespace fastdistilbert {

// Cache-line aligned storage for panels: the kernels load and store whole vectors along their rows (and packed
// activations in 64-token chunks), and std::allocator's 16-byte alignment split each 64-byte access across two
// cache lines. Aligning them made the models 11-21% faster (2 threads, seq 128 x 8: dense 115 -> 102 ms, 80% (4,1)
// 54 -> 48 ms, 80% (1,4) 77 -> 61 ms), the gap between the kernels alone and in the model until then.
template <typename T>
struct CacheLineAllocator {
  using value_type = T;
  CacheLineAllocator() = default;
  template <typename U>
  CacheLineAllocator(const CacheLineAllocator<U>&) {}
  T* allocate(std::size_t n) { return static_cast<T*>(::operator new(n * sizeof(T), std::align_val_t(64))); }
  void deallocate(T* p, std::size_t) { ::operator delete(p, std::align_val_t(64)); }
  template <typename U>
  bool operator==(const CacheLineAllocator<U>&) const { return true; }
  template <typename U>
  bool operator!=(const CacheLineAllocator<U>&) const { return false; }
};
template <typename T>
using AlignedVector = std::vector<T, CacheLineAllocator<T>>;

// dst[r][0, width) = src[r][0, width) for r < rows, rows src_ld and dst_ld elements apart.
template <typename E>
void copy_rows(const E* src, int64_t src_ld, E* dst, int64_t dst_ld, int64_t rows, int64_t width) {
  for (int64_t r = 0; r < rows; ++r) std::memcpy(dst + r * dst_ld, src + r * src_ld, width * sizeof(E));
}

// One GEMM on a compact [K][L] panel of u8 codes with per-token scale / zero point: packs the codes, pads the
// parameters to the variant's token alignment and runs every row group of `p` (whose weight and epilogue
// targets the caller set). Keeps its buffers between calls.
struct PanelGemm {
  AlignedVector<uint8_t> packed;
  AlignedVector<float> scale;
  AlignedVector<int32_t> zp;

  void run(const KernelTable& k, GemmParams p, const uint8_t* codes, bool flip_sign, const float* x_scale,
           const int32_t* x_zp, int64_t L);
  // run's first half: packs the codes and points p's activations (xp, T, Tp, x_scale, x_zp) at this panel, for
  // callers that run the GEMM's tokens in several pieces.
  void pack(const KernelTable& k, GemmParams& p, const uint8_t* codes, bool flip_sign, const float* x_scale,
            const int32_t* x_zp, int64_t L);
};

// Tokens per feed-forward block: a multiple of every variant's 4x1 chunk (64 for 512-bit, 32 for 256-bit, 1 for
// ref). The [ffn_dim, 64] fp32 intermediate (768 KiB at ffn_dim 3072) and its codes stay in L2 (2 MiB per core on
// the Xeon we measured on). 128-token blocks were 13% faster there for (4,1) weights at 3072 tokens but 20-30%
// slower for (1,4) weights at 1024 tokens, whose activation panels then leave L2.
constexpr int64_t kFeedForwardBlock = 64;
// The last block also takes up to this many tokens after it (143 tokens: 64 + 79, not 64 + 64 + 15): 1-2 token
// vectors in a block of their own ran the (4,1) kernel's tile of 1-2 vectors, bound by its per-quad instructions;
// with the block before, the 512-bit kernels take them in the same tile (kernels_simd.inc, quad_4x1_tile), and a
// sequence on the layer path splits into fewer, more even blocks across the threads. With the tile, alternating in
// one process, 2 threads, a forward of 1 x 143 / 150 tokens took 0.93x / 0.89x the time (170, 200, 270: 0.96-0.99x).
constexpr int64_t kFeedForwardTail = 32;

// Blocks of T tokens, at least min_blocks of them where there are that many 64-token blocks: one per thread when the
// threads share them (fewer go to the slower split by rows: on 2 threads, alternating in one process, a forward of 1 x
// 80 / 96 tokens took 0.88x / 0.87x the time with blocks of 64 + 16 / 32 than with one block). Block b is tokens
// [b * kFeedForwardBlock, + feed_forward_width(T, b, min_blocks)).
inline int64_t feed_forward_blocks(int64_t T, int64_t min_blocks = 1) {
  const int64_t n = (T + kFeedForwardBlock - 1) / kFeedForwardBlock;
  return n > min_blocks && T - (n - 1) * kFeedForwardBlock <= kFeedForwardTail ? n - 1 : n;
}
inline int64_t feed_forward_width(int64_t T, int64_t b, int64_t min_blocks = 1) {
  return b + 1 < feed_forward_blocks(T, min_blocks) ? kFeedForwardBlock : T - b * kFeedForwardBlock;
}

// How the consumer of an activation panel quantizes it: `params` = {scale, zero point} of a static per-tensor
// scheme (the kernels' quantize_static; scale and zero point then fill the per-token arrays), nullptr: per token.
struct CodeScheme {
  const float* params = nullptr;
};

// Where a sublayer ending in LayerNorm writes: h [N][T] fp32, its u8 codes (per `scheme`), scale and zero point.
struct NormalizedOutput {
  float* h;
  uint8_t* codes;
  float* scale;
  int32_t* zp;
  int64_t T;
  const float *gamma, *beta;
  double eps;
  CodeScheme scheme;
};

// Codes of tokens [t0, t0 + L) of x [rows][T] as `scheme` says, with their per-token scale and zero point; false
// when those activations hold a NaN or Inf.
bool quantize_columns(const KernelTable& k, CodeScheme scheme, const float* x, int64_t rows, int64_t T, int64_t t0,
                      int64_t L, float* scale, int32_t* zp, uint8_t* codes);

// A compact panel of fp32 activations [rows][L] and their u8 codes with per-token scale and zero point (per token,
// or one static scale and zero point repeated: CodeScheme).
struct ActivationPanel {
  AlignedVector<float> h;        // [rows][L]
  AlignedVector<uint8_t> codes;  // [rows][L]
  AlignedVector<float> scale;    // [L] per-token scale
  AlignedVector<int32_t> zp;     // [L] per-token zero point

  void resize(int64_t rows, int64_t L) { h.resize(rows * L), codes.resize(rows * L), scale.resize(L), zp.resize(L); }
  // The codes of h; false when h holds a NaN or Inf.
  bool quantize(const KernelTable& k, int64_t rows, int64_t L, CodeScheme scheme = {}) {
    return quantize_columns(k, scheme, h.data(), rows, L, 0, L, scale.data(), zp.data(), codes.data());
  }
  // This panel as the output of a sublayer ending in LayerNorm (rows L apart), coded for its consumer.
  NormalizedOutput target(int64_t L, const float* gamma, const float* beta, double eps, CodeScheme scheme = {}) {
    return {h.data(), codes.data(), scale.data(), zp.data(), L, gamma, beta, eps, scheme};
  }
};

// The feed-forward's hidden layer for one block of tokens: GELU(lin1) into a compact [N1][width] panel, and its
// u8 codes for lin2.
struct HiddenPanel : ActivationPanel {
  // Tokens [t0, t0 + width) of `lin1`, whose activations (xp, T, Tp, x_scale, x_zp) are set; t0 a multiple of
  // kFeedForwardBlock; codes for lin2 per `scheme`. False when the hidden activations are not finite.
  bool compute(const KernelTable& k, const GemmParams& lin1, int64_t t0, int64_t width, CodeScheme scheme = {});
};

// INT8 attention of one head of one sequence (attention_int8.cpp): q, keys, values are compact [head][n] fp32
// blocks (rows n floats apart); the context goes to ctx (rows ld_ctx floats apart). False when Q, K or V hold a
// NaN or Inf or the scores overflow. Keeps its buffers between calls.
struct Int8HeadAttention {
  // A dense INT8 weight in the kernels' tile layout, made from a compact [A][B] fp32 block or its transpose.
  struct Weight {
    int64_t N = 0, K = 0, Np = 0, Kp = 0;
    AlignedVector<int8_t> tiles;  // [Np/4][Kp/4][4 rows][4 k]
    AlignedVector<float> scale;   // [Np]
    AlignedVector<int32_t> wsum;  // [Np]
    AlignedVector<int8_t> codes;  // scratch of pack_symmetric
    AlignedVector<float> inv;

    bool quantize(const KernelTable& k, const float* src, int64_t A, int64_t B, bool transpose, float extra_scale);
  };
  Weight keys, values;
  AlignedVector<uint8_t> q_codes, p_packed;
  AlignedVector<float> q_scale, p_scale, scores;
  AlignedVector<int32_t> q_zp, p_zp, sums;
  PanelGemm gemm;

  bool run(const KernelTable& k, const float* q, const float* keys_fm, const float* values_fm, int64_t head,
           int64_t n, float scaling, float* ctx, int64_t ld_ctx);
};

// One sequence's self-attention from a compact [K][L] panel of its codes: the QKV projection into an L2-resident
// [3 dim][L] panel, then every head's attention (fp32, or INT8 when int8_attention) into ctx (rows ld_ctx floats
// apart). `qkv_weight` is the parsed packed QKV weight. False when the INT8 attention met a NaN or Inf.
struct SequenceAttention {
  AlignedVector<float> qkv;      // [3 dim][L]
  AlignedVector<float> scratch;  // attention_head's panels
  PanelGemm gemm;
  Int8HeadAttention int8;

  bool run(const KernelTable& k, const GemmParams& qkv_weight, const uint8_t* codes, bool flip_sign,
           const float* x_scale, const int32_t* x_zp, int64_t L, int64_t n_heads, float scaling, float* ctx,
           int64_t ld_ctx, bool int8_attention = false);
};


// Fresh (h, codes, scale, zero point) tensors for a sublayer ending in LayerNorm whose residual is `like`
// [N, T], and the NormalizedOutput writing into them.
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> empty_normalized(const at::Tensor& like);
NormalizedOutput normalized_output(std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor>& h,
                                   const at::Tensor& gamma, const at::Tensor& beta, double eps);

// The tail of a sublayer for tokens [t0, t0 + L): h = LayerNorm(W x + residual) and its codes, where x is a
// compact panel of codes and W the packed weight in `w`, straight into `out`'s columns (and from `residual`, rows
// out.T apart): the GEMM adds the residual into out.h, the LayerNorm runs in place, the codes follow. (Making them
// in the block's own panels and copying them out was 2-8% slower over whole encoders, at 128 to 1,020 tokens.)
// False when the normalized values are not finite.
struct SublayerTail {
  PanelGemm gemm;

  bool run(const KernelTable& k, GemmParams w, const uint8_t* x_codes, const float* x_scale, const int32_t* x_zp,
           int64_t L, int64_t t0, const float* residual, const NormalizedOutput& out);
};

}  // namespace fastdistilbert
