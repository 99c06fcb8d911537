// Pieces the fused ops (feed_forward_fm.cpp, self_attention_fm.cpp, attention_int8.cpp) share: they work on
// one block of tokens (a sequence, or 64 tokens) at a time in compact [rows][width] panels that stay in cache.
#pragma once
#include <ATen/ATen.h>

#include <cstdint>
#include <cstring>
#include <tuple>
#include <vector>

#include "kernels.h"

namespace fastdistilbert {

// dst[r][0, width) = src[r][0, width) for r < rows, rows src_ld and dst_ld elements apart.
template <typename E>
void copy_rows(const E* src, int64_t src_ld, E* dst, int64_t dst_ld, int64_t rows, int64_t width) {
  for (int64_t r = 0; r < rows; ++r) std::memcpy(dst + r * dst_ld, src + r * src_ld, width * sizeof(E));
}

// One GEMM on a compact [K][L] panel of u8 codes with per-token scale / zero point: packs the codes, pads the
// parameters to the variant's token alignment and runs every row group of `p` (whose weight and epilogue
// targets the caller set). Keeps its buffers between calls.
struct PanelGemm {
  std::vector<uint8_t> packed;
  std::vector<float> scale;
  std::vector<int32_t> zp;

  void run(const KernelTable& k, GemmParams p, const uint8_t* codes, bool flip_sign, const float* x_scale,
           const int32_t* x_zp, int64_t L);
};

// Where a sublayer ending in LayerNorm writes: h [N][T] fp32, its per-token u8 codes, scale and zero point.
struct NormalizedOutput {
  float* h;
  uint8_t* codes;
  float* scale;
  int32_t* zp;
  int64_t T;
  const float *gamma, *beta;
  double eps;
};

// Fresh (h, codes, scale, zero point) tensors for a sublayer ending in LayerNorm whose residual is `like`
// [N, T], and the NormalizedOutput writing into them.
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> empty_normalized(const at::Tensor& like);
NormalizedOutput normalized_output(std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor>& h,
                                   const at::Tensor& gamma, const at::Tensor& beta, double eps);

// The tail of a sublayer for tokens [t0, t0 + L): h = LayerNorm(W x + residual) and its codes, where x is a
// compact panel of codes and W the packed weight in `w`; the sum, the normalized panel and its codes are made
// in this block's panels and copied into `out`'s columns. False when the normalized values are not finite.
struct SublayerTail {
  PanelGemm gemm;
  std::vector<float> sum, normed;
  std::vector<uint8_t> codes;

  bool run(const KernelTable& k, GemmParams w, const uint8_t* x_codes, const float* x_scale, const int32_t* x_zp,
           int64_t L, int64_t t0, const float* residual, const NormalizedOutput& out);
};

}  // namespace fastdistilbert
