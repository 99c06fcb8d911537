// avxvnni kernels: 256-bit VEX-encoded vpdpbusd (AVX-VNNI). Compiled with this ISA's flags only
// (see setup.py); torch-free. The same source is compiled as kernels_avx512vl256.cpp with the
// EVEX encoding of the instruction, so the 256-bit code path is also tested on CPUs with
// AVX-512 VNNI but without AVX-VNNI.
#include <immintrin.h>

#include <cstdint>

#include "erf_constants.h"
#include "kernels.h"

namespace fastdistilbert {
namespace avxvnni {

#define FDB_DPBUSD "%{vex%} vpdpbusd"  // braces escaped for inline asm
#include "simd_ymm.inc"
#include "kernels_simd.inc"
#include "attention_head.inc"
#include "layer_norm_tokens.inc"
#include "embed_token.inc"
#include "attention_pack.inc"
#include "attention_pack_simd.inc"
#undef FDB_DPBUSD

const KernelTable kTable = {"avxvnni", dot_u8s8, token_align, pack_x,
                            gemm, quantize_per_token, quantize_static, layer_norm_tokens, embed_token,
                            softmax_codes, pack_symmetric, attention_head, peak_loop};

}  // namespace avxvnni
}  // namespace fastdistilbert
