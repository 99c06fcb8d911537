#include "panel_ops.h"

#include <algorithm>

namespace fastdistilbert {

bool quantize_columns(const KernelTable& k, CodeScheme scheme, const float* x, int64_t rows, int64_t T, int64_t t0,
                      int64_t L, float* scale, int32_t* zp, uint8_t* codes) {
  if (scheme.params == nullptr) return k.quantize_per_token(x, rows, T, t0, t0 + L, scale, zp, codes);
  const float s = scheme.params[0], z = scheme.params[1];
  bool finite = true;
  if (L == T) {  // whole rows: one contiguous run
    finite = k.quantize_static(x, rows * T, s, z, codes);
  } else {
    for (int64_t r = 0; r < rows; ++r) finite &= bool(k.quantize_static(x + r * T + t0, L, s, z, codes + r * T + t0));
  }
  std::fill(scale + t0, scale + t0 + L, s);
  std::fill(zp + t0, zp + t0 + L, int32_t(z));
  return finite;
}

void PanelGemm::pack(const KernelTable& k, GemmParams& p, const uint8_t* codes, bool flip_sign, const float* x_scale,
                     const int32_t* x_zp, int64_t L) {
  const int64_t align = k.token_align(p.pattern), Tp = (L + align - 1) / align * align;
  packed.resize((p.pattern == k4x1 ? p.K : p.Kp) * Tp);
  scale.assign(Tp, 1.0f);
  zp.assign(Tp, 0);
  std::copy(x_scale, x_scale + L, scale.begin());
  std::copy(x_zp, x_zp + L, zp.begin());
  k.pack_x(codes, p.K, L, flip_sign, p.pattern, packed.data(), Tp, 0, Tp);
  p.xp = packed.data();
  p.T = L, p.Tp = Tp;
  p.x_scale = scale.data();
  p.x_zp = zp.data();
}

void PanelGemm::run(const KernelTable& k, GemmParams p, const uint8_t* codes, bool flip_sign, const float* x_scale,
                    const int32_t* x_zp, int64_t L) {
  pack(k, p, codes, flip_sign, x_scale, x_zp, L);
  k.gemm(p, 0, p.Np / 4, 0, L);
}

bool SequenceAttention::run(const KernelTable& k, const GemmParams& qkv_weight, const uint8_t* codes, bool flip_sign,
                            const float* x_scale, const int32_t* x_zp, int64_t L, int64_t n_heads, float scaling,
                            float* ctx, int64_t ld_ctx, bool int8_attention) {
  const int64_t dim = qkv_weight.N / 3, head = dim / n_heads;
  const int64_t Lp = (L + kAttentionPad - 1) / kAttentionPad * kAttentionPad;
  qkv.resize(qkv_weight.N * L);
  scratch.resize((3 * head + L) * Lp);
  GemmParams a = qkv_weight;
  a.ld = L, a.out_shift = 0, a.gelu = 0;
  a.residual = nullptr, a.out_f32 = qkv.data(), a.out_u8 = nullptr, a.out_acc = nullptr;
  gemm.run(k, a, codes, flip_sign, x_scale, x_zp, L);
  for (int64_t h = 0; h < n_heads; ++h) {
    const float* q = qkv.data() + h * head * L;
    if (!int8_attention)
      k.attention_head(q, q + dim * L, q + 2 * dim * L, L, head, L, scaling, scratch.data(), ctx + h * head * ld_ctx,
                       ld_ctx);
    else if (!int8.run(k, q, q + dim * L, q + 2 * dim * L, head, L, scaling, ctx + h * head * ld_ctx, ld_ctx))
      return false;
  }
  return true;
}

bool HiddenPanel::compute(const KernelTable& k, const GemmParams& lin1, int64_t t0, int64_t width, CodeScheme scheme) {
  resize(lin1.N, width);
  GemmParams a = lin1;
  a.gelu = 1;
  a.residual = nullptr, a.out_u8 = nullptr, a.out_acc = nullptr;
  a.out_f32 = h.data();
  a.ld = width;
  a.out_shift = -t0;
  k.gemm(a, 0, lin1.Np / 4, t0, t0 + width);
  return quantize(k, lin1.N, width, scheme);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> empty_normalized(const at::Tensor& like) {
  const int64_t T = like.size(1);
  return {at::empty_like(like), at::empty_like(like, like.options().dtype(at::kByte)), at::empty({T}, like.options()),
          at::empty({T}, like.options().dtype(at::kInt))};
}

NormalizedOutput normalized_output(std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor>& h,
                                   const at::Tensor& gamma, const at::Tensor& beta, double eps) {
  auto& [y, q, scale, zp] = h;
  return {y.data_ptr<float>(), q.data_ptr<uint8_t>(), scale.data_ptr<float>(), zp.data_ptr<int32_t>(), y.size(1),
          gamma.data_ptr<float>(), beta.data_ptr<float>(), eps};
}

bool SublayerTail::run(const KernelTable& k, GemmParams w, const uint8_t* x_codes, const float* x_scale,
                       const int32_t* x_zp, int64_t L, int64_t t0, const float* residual, const NormalizedOutput& out) {
  const int64_t N = w.N;
  w.ld = out.T, w.out_shift = t0, w.gelu = 0;
  w.residual = residual, w.out_f32 = out.h, w.out_u8 = nullptr, w.out_acc = nullptr;
  gemm.run(k, w, x_codes, false, x_scale, x_zp, L);
  k.layer_norm(out.h, N, out.T, t0, t0 + L, out.gamma, out.beta, out.eps, out.h);
  return quantize_columns(k, out.scheme, out.h, N, out.T, t0, L, out.scale, out.zp, out.codes);
}

}  // namespace fastdistilbert
