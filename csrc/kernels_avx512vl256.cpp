// avx512vnni_256 kernels: the 256-bit kernels of kernels_avxvnni.cpp compiled with the AVX-512 VNNI
// flags, where vpdpbusd on ymm registers is EVEX-encoded (AVX512_VNNI + AVX512VL). A test-and-
// fallback twin: it runs the avxvnni source on CPUs that lack AVX-VNNI. Torch-free.
// GCC 12 warns falsely about the AVX-512 intrinsics' internal _mm512_undefined_* values.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <cstdint>

#include "erf_constants.h"
#include "kernels.h"

namespace fastdistilbert {
namespace avx512vnni_256 {

#define FDB_DPBUSD "%{evex%} vpdpbusd"  // braces escaped for inline asm
#include "simd_ymm.inc"
#include "kernels_simd.inc"
#include "attention_head.inc"
#include "layer_norm_tokens.inc"
#include "embed_token.inc"
#include "attention_pack.inc"
#include "attention_pack_simd.inc"
#undef FDB_DPBUSD

const KernelTable kTable = {"avx512vnni_256", dot_u8s8, token_align, pack_x,
                            gemm, quantize_per_token, quantize_static, layer_norm_tokens, embed_token,
                            softmax_codes, pack_symmetric, attention_head, peak_loop};

}  // namespace avx512vnni_256
}  // namespace fastdistilbert
