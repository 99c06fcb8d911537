// avx512vnni kernels: 512-bit vpdpbusd. Compiled with this ISA's flags only (see setup.py); torch-free.
// GCC 12 warns falsely about the AVX-512 intrinsics' internal _mm512_undefined_* values.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <cstdint>

#include "erf_constants.h"
#include "kernels.h"

namespace fastdistilbert {
namespace avx512vnni {

#include "simd_zmm.inc"
#include "kernels_simd.inc"
#include "attention_head.inc"
#include "layer_norm_tokens.inc"
#include "embed_token.inc"
#include "attention_pack.inc"
#include "attention_pack_simd.inc"

const KernelTable kTable = {"avx512vnni", dot_u8s8, token_align, pack_x,
                            gemm, quantize_per_token, quantize_static, layer_norm_tokens, embed_token,
                            softmax_codes, pack_symmetric, attention_head, peak_loop};

}  // namespace avx512vnni
}  // namespace fastdistilbert
