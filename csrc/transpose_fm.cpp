// The runtime turns the embeddings [tokens, dim] into the feature-major [dim, tokens] layout once per forward,
// and the last hidden states back. ATen's strided copy of a transposed view streams one side with a stride of
// a whole row (about 1 ms for 1,024 x 768 on 2 threads); tiles of kTile x kTile keep both sides in L1.
#include "transpose_fm.h"

#include <ATen/Parallel.h>
#include <xmmintrin.h>

#include <algorithm>

namespace fastdistilbert {

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
    for (int64_t a0 = begin * kTile; a0 < std::min(A, end * kTile); a0 += kTile) {
      const int64_t a1 = std::min(A, a0 + kTile);
      for (int64_t b0 = 0; b0 < B; b0 += kTile) {
        const int64_t b1 = std::min(B, b0 + kTile);
        // 4 x 4 blocks in SSE registers (x86-64's baseline), then the tile's ragged edges one float at a time.
        const int64_t a4 = a0 + (a1 - a0) / 4 * 4, b4 = b0 + (b1 - b0) / 4 * 4;
        for (int64_t b = b0; b < b4; b += 4)
          for (int64_t a = a0; a < a4; a += 4) {
            __m128 r0 = _mm_loadu_ps(in + a * B + b), r1 = _mm_loadu_ps(in + (a + 1) * B + b);
            __m128 r2 = _mm_loadu_ps(in + (a + 2) * B + b), r3 = _mm_loadu_ps(in + (a + 3) * B + b);
            _MM_TRANSPOSE4_PS(r0, r1, r2, r3);
            _mm_storeu_ps(o + b * A + a, r0), _mm_storeu_ps(o + (b + 1) * A + a, r1);
            _mm_storeu_ps(o + (b + 2) * A + a, r2), _mm_storeu_ps(o + (b + 3) * A + a, r3);
          }
        for (int64_t b = b0; b < b1; ++b)
          for (int64_t a = (b < b4 ? a4 : a0); a < a1; ++a) o[b * A + a] = in[a * B + b];
      }
    }
  });
  return out;
}

}  // namespace fastdistilbert
