// The runtime turns the embeddings [tokens, dim] into the feature-major [dim, tokens] layout once per forward,
// and the last hidden states back. ATen's strided copy of a transposed view streams one side with a stride of
// a whole row (about 1 ms for 1,024 x 768 on 2 threads); tiles of kTile x kTile keep both sides in L1.
#include "transpose_fm.h"

#include <ATen/Parallel.h>
#include <xmmintrin.h>

#include <algorithm>

namespace fastdistilbert {

void transpose_tile(const float* src, int64_t src_ld, int64_t rows, int64_t cols, float* dst, int64_t dst_ld) {
  // 4 x 4 blocks in SSE registers (x86-64's baseline), then the ragged edges one float at a time.
  const int64_t r4 = rows / 4 * 4, c4 = cols / 4 * 4;
  for (int64_t c = 0; c < c4; c += 4)
    for (int64_t r = 0; r < r4; r += 4) {
      __m128 r0 = _mm_loadu_ps(src + r * src_ld + c), r1 = _mm_loadu_ps(src + (r + 1) * src_ld + c);
      __m128 r2 = _mm_loadu_ps(src + (r + 2) * src_ld + c), r3 = _mm_loadu_ps(src + (r + 3) * src_ld + c);
      _MM_TRANSPOSE4_PS(r0, r1, r2, r3);
      _mm_storeu_ps(dst + c * dst_ld + r, r0), _mm_storeu_ps(dst + (c + 1) * dst_ld + r, r1);
      _mm_storeu_ps(dst + (c + 2) * dst_ld + r, r2), _mm_storeu_ps(dst + (c + 3) * dst_ld + r, r3);
    }
  for (int64_t c = 0; c < cols; ++c)
    for (int64_t r = (c < c4 ? r4 : 0); r < rows; ++r) dst[c * dst_ld + r] = src[r * src_ld + c];
}

at::Tensor transpose_fm(const at::Tensor& x) {
  const char* op = "transpose_fm";
  TORCH_CHECK(x.scalar_type() == at::kFloat, op, ": x must be float32, got ", x.scalar_type());
  TORCH_CHECK(x.dim() == 2 && x.is_contiguous(), op, ": x must be a contiguous 2-D tensor, got shape ", x.sizes());
  const int64_t A = x.size(0), B = x.size(1);
  at::Tensor out = at::empty({B, A}, x.options());
  constexpr int64_t kTile = 32;
  const float* in = x.data_ptr<float>();
  float* o = out.data_ptr<float>();
  at::parallel_for(0, (A + kTile - 1) / kTile, 1, [&](int64_t begin, int64_t end) {
    for (int64_t a0 = begin * kTile; a0 < std::min(A, end * kTile); a0 += kTile)
      for (int64_t b0 = 0; b0 < B; b0 += kTile)
        transpose_tile(in + a0 * B + b0, B, std::min(kTile, A - a0), std::min(kTile, B - b0), o + b0 * A + a0, A);
  });
  return out;
}

}  // namespace fastdistilbert
