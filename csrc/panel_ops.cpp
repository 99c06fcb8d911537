#include "panel_ops.h"

#include <algorithm>

namespace fastdistilbert {

void PanelGemm::run(const KernelTable& k, GemmParams p, const uint8_t* codes, bool flip_sign, const float* x_scale,
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
  k.gemm(p, 0, p.Np / 4, 0, L);
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
  sum.resize(N * L), normed.resize(N * L), codes.resize(N * L);
  // W x + residual in place over the residual's columns copied into the panel.
  copy_rows(residual + t0, out.T, sum.data(), L, N, L);
  w.ld = L, w.out_shift = 0, w.gelu = 0;
  w.residual = sum.data(), w.out_f32 = sum.data(), w.out_u8 = nullptr, w.out_acc = nullptr;
  gemm.run(k, w, x_codes, false, x_scale, x_zp, L);
  k.layer_norm(sum.data(), N, L, 0, L, out.gamma, out.beta, out.eps, normed.data());
  const bool finite = k.quantize_per_token(normed.data(), N, L, 0, L, out.scale + t0, out.zp + t0, codes.data());
  copy_rows(normed.data(), L, out.h + t0, out.T, N, L);
  copy_rows(codes.data(), L, out.codes + t0, out.T, N, L);
  return finite;
}

}  // namespace fastdistilbert
