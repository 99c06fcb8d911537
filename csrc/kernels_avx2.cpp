// avx2 kernels: 256-bit, u8 x s8 products widened to int16 and summed with vpmaddwd (exact; no
// vpmaddubsw saturation). Compiled with this ISA's flags only (see setup.py); torch-free.
#include <immintrin.h>

#include <cstdint>

#include "erf_constants.h"
#include "kernels.h"

namespace fastdistilbert {
namespace avx2 {

#include "simd_ymm.inc"
#include "kernels_simd.inc"
#include "attention_head.inc"
#include "layer_norm_tokens.inc"
#include "embed_token.inc"
#include "attention_pack.inc"
#include "attention_pack_simd.inc"

const KernelTable kTable = {"avx2", dot_u8s8, token_align, pack_x,
                            gemm, quantize_per_token, quantize_static, layer_norm_tokens, embed_token,
                            softmax_codes, pack_symmetric, attention_head, peak_loop};

}  // namespace avx2
}  // namespace fastdistilbert
