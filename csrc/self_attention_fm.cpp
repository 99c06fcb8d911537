#include "self_attention_fm.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "attention_fm.h"
#include "dispatch.h"
#include "gemm_ops.h"

namespace fastdistilbert {
namespace {

// Per-thread scratch for one sequence.
struct SequenceScratch {
  std::vector<uint8_t> codes;   // [K][L] the sequence's activation codes
  std::vector<uint8_t> packed;  // the codes in the QKV weight's packed-activation layout
  std::vector<float> scale;     // [Tp] per-token scale (padding: 1)
  std::vector<int32_t> zp;      // [Tp] per-token zero point (padding: 0)
  std::vector<float> qkv;       // [3 dim][L]
  std::vector<float> attention; // attention_head's scratch panels
};

}  // namespace

at::Tensor self_attention_fm(const at::Tensor& x_q, const at::Tensor& x_scale, const at::Tensor& x_zero_point,
                             const at::Tensor& packed_qkv, int64_t dim, at::IntArrayRef lengths, int64_t n_heads,
                             double scaling) {
  const char* op = "self_attention_fm";
  const KernelTable& k = active_kernels();
  Prepared prep = prepare_quantized(k, x_q, x_scale, x_zero_point, packed_qkv, op);
  const GemmParams& p = prep.p;
  TORCH_CHECK(n_heads > 0, op, ": n_heads must be positive, got ", n_heads);
  TORCH_CHECK(p.N == 3 * dim, op, ": the packed weight has ", p.N, " output rows, not 3 * dim = ", 3 * dim);
  TORCH_CHECK(dim % n_heads == 0, op, ": dim = ", dim, " is not divisible by n_heads = ", n_heads);
  const int64_t T = p.T, head = dim / n_heads, n_seq = int64_t(lengths.size());
  std::vector<int64_t> first(n_seq);
  int64_t total = 0, longest = 0, nonempty = 0;
  for (int64_t s = 0; s < n_seq; ++s) {
    TORCH_CHECK(lengths[s] >= 0, op, ": sequence lengths must be >= 0, got ", lengths[s]);
    first[s] = total;
    total += lengths[s];
    longest = std::max(longest, lengths[s]);
    nonempty += lengths[s] > 0;
  }
  TORCH_CHECK(total == T, op, ": sequence lengths add up to ", total, " but x_q has ", T, " tokens");
  if (nonempty < at::get_num_threads()) {
    // Fewer sequences than threads: the two ops split rows and heads across threads instead.
    const at::Tensor qkv = quantized_linear(x_q, x_scale, x_zero_point, packed_qkv, p.N, false, std::nullopt,
                                            std::nullopt, std::nullopt);
    return attention_fm(qkv, lengths, n_heads, scaling);
  }
  at::Tensor out = new_output(dim, T, at::kFloat);
  const bool flip_sign = x_q.scalar_type() == at::kChar;
  const uint8_t* codes = static_cast<const uint8_t*>(x_q.data_ptr());
  const float* scale = prep.x_scale.data_ptr<float>();
  const int32_t* zp = prep.x_zp.data_ptr<int32_t>();
  float* ctx = out.data_ptr<float>();
  const int64_t align = k.token_align(p.pattern), Lpad = (longest + align - 1) / align * align;
  const int64_t Lp = (longest + kAttentionPad - 1) / kAttentionPad * kAttentionPad;
  const int64_t rows = p.pattern == k4x1 ? p.K : p.Kp;
  at::parallel_for(0, n_seq, 1, [&](int64_t s0, int64_t s1) {
    SequenceScratch w;
    w.codes.resize(p.K * longest);
    w.packed.resize(rows * Lpad);
    w.scale.resize(Lpad);
    w.zp.resize(Lpad);
    w.qkv.resize(p.N * longest);
    w.attention.resize((3 * head + longest) * Lp);
    for (int64_t s = s0; s < s1; ++s) {
      const int64_t L = lengths[s], t0 = first[s];
      if (L == 0) continue;
      const int64_t Tp = (L + align - 1) / align * align;
      for (int64_t f = 0; f < p.K; ++f) std::memcpy(w.codes.data() + f * L, codes + f * T + t0, L);
      k.pack_x(w.codes.data(), p.K, L, flip_sign, p.pattern, w.packed.data(), Tp, 0, Tp);
      std::copy(scale + t0, scale + t0 + L, w.scale.begin());
      std::copy(zp + t0, zp + t0 + L, w.zp.begin());
      std::fill(w.scale.begin() + L, w.scale.begin() + Tp, 1.0f);
      std::fill(w.zp.begin() + L, w.zp.begin() + Tp, 0);
      GemmParams a = p;
      a.xp = w.packed.data();
      a.T = L, a.Tp = Tp, a.ld = L, a.out_shift = 0;
      a.x_scale = w.scale.data();
      a.x_zp = w.zp.data();
      a.gelu = 0;
      a.residual = nullptr;
      a.out_f32 = w.qkv.data();
      a.out_u8 = nullptr;
      a.out_acc = nullptr;
      k.gemm(a, 0, p.Np / 4, 0, L);
      for (int64_t h = 0; h < n_heads; ++h) {
        const float* q = w.qkv.data() + h * head * L;
        k.attention_head(q, q + dim * L, q + 2 * dim * L, L, head, L, float(scaling), w.attention.data(),
                         ctx + h * head * T + t0, T);
      }
    }
  });
  return out;
}

}  // namespace fastdistilbert
