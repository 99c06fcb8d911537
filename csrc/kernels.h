// The interface every ISA variant implements. Torch-free: kernel translation units include only
// this header, <cstdint>/<cstddef> and <immintrin.h>, so that nothing inline (STL, torch) is ever
// compiled with ISA flags (a shared inline instantiated with AVX-512 flags could be picked by the
// linker for all callers and SIGILL on CPUs without it).
//
// Layout (DESIGN section 3): activations are FEATURE-MAJOR, x[K][T] (features x tokens), outputs
// y[N][T]; we compute Y^T = W x X^T so sparsity lives in weight rows and SIMD lanes run over tokens.
//
// Packed weight (built by fastdistilbert/reference_ops.py, parsed by packed_weight.cpp); rows are
// padded to Np = ceil4(N), input features to Kp = ceil4(K); a "group" is 4 consecutive output rows:
//   dense: int8 [Np/4][Kp/4][4 rows][4 k]          (one dword = 4 k of one row)
//   4x1:   grp_ptr[g]..grp_ptr[g+1] = quads of group g; a quad is 4 nonzero (4 rows x 1 k) blocks:
//          kidx[4q+i] = k of block i, wq[4q+r] = dword (W[4g+r][kidx[4q+0..3]]); short quads are
//          padded with k = 0 and zero weights.
//   1x4:   row_ptr[n]..row_ptr[n+1] = blocks of row n; kgrp[b] = k/4, wq[b] = dword W[n][4kg..4kg+3].
//
// Packed activations (built per call by each variant's pack_x; padded tokens and features are 0):
//   dense and 1x4: u8 [Kp/4][tokens][4] (4 consecutive features of one token form a dword)
//   4x1:           u8 [K][tokens], tokens permuted inside each chunk so that the variant's in-register
//                  interleave of 4 feature rows yields tokens in natural order.
//   The scalar reference stores them for all Tp tokens at once; the SIMD variants store each chunk of
//   tokens as its own contiguous panel (see pack_x in kernels_simd.inc). A variant's pack_x output is
//   read only by the same variant's gemm.
//
// Epilogue, exactly this order in fp32 (fastdistilbert/quantization.py; no FMA contraction):
//   acc' = acc - x_zp[t] * wsum[n]                  (int32)
//   y = float(acc') * (x_scale[t] * w_scale[n])     (product of scales first)
//   y = y + bias[n]                                  (only when the packed weight has a bias)
//   y = gelu(y)                                      (optional; rational approximation: erf_constants.h)
//   y = y + residual[n][t]                           (optional)
//   q = clamp(nearbyint(y * (1 / out_scale)) + out_zp, 0, 255)  (optional requantization to u8)
#pragma once
#include <cstddef>
#include <cstdint>

namespace fastdistilbert {

enum Pattern : int32_t { kDense = 0, k4x1 = 1, k1x4 = 2 };

// A packed dense weight's AMX tile copy (packed_weight.h) holds blocks of this many rows: for each block of rows
// [32 b, 32 b + 32), each 64-feature step s < Kp / 64, the block's 32 rows x 64 s8 weights (2 KiB, row-major) at
// (b * (Kp / 64) + s) * 2048 bytes; rows past N are zeros. The amx variant loads two tiles from each.
constexpr int64_t kAmxBlockRows = 32;

struct GemmParams {
  // Packed weight (pointers into the packed buffer).
  int32_t pattern;
  int64_t N, K, Np, Kp;
  const int8_t* dense;      // kDense
  const int32_t* ptr;       // k4x1: grp_ptr [Np/4 + 1] (quads); k1x4: row_ptr [Np + 1] (blocks)
  const int32_t* idx;       // k4x1: kidx; k1x4: kgrp
  const int32_t* wq;        // k4x1, k1x4: weight dwords
  const float* w_scale;     // [Np]
  const float* bias;        // [Np] or nullptr
  const int32_t* wsum;      // [Np]
  // kDense, optional: the weight's first Kp / 64 * 64 features in AMX tile blocks (kAmxBlockRows), for the amx
  // variant; nullptr: that variant rearranges `dense` on every call.
  const int8_t* amx_tiles = nullptr;
  // Activations, packed by the same variant's pack_x.
  const uint8_t* xp;
  int64_t T, Tp;            // tokens, padded token stride of xp
  const float* x_scale;     // [Tp], per token (a per-tensor scale is broadcast by the caller)
  const int32_t* x_zp;      // [Tp]
  // Epilogue. Output and residual element (n, t) live at [n * ld + t + out_shift]: ld = T and out_shift = 0
  // for a whole [N][T] tensor; the fused ops write a block of tokens into a scratch panel (ld = its width,
  // out_shift = minus the block's first token when t counts from the start of the whole input) or a block's
  // rows into the full tensor (ld = all tokens, out_shift = plus the block's first token).
  int64_t ld, out_shift;
  int32_t gelu;
  const float* residual;    // [N][T] or nullptr
  float* out_f32;           // [N][T] (fp32 output) or nullptr
  uint8_t* out_u8;          // [N][T] (requantized output) or nullptr
  float out_scale, out_zp;
  int32_t* out_acc;         // [N][T]: raw accumulators, epilogue skipped (exactness tests)
  // Nonzero: whole fp32 output vectors go out with non-temporal stores (out_f32 is 64-byte aligned, ld and out_shift
  // multiples of 16; set for outputs too large to be read back from the caches, gemm_ops.cpp). Results are the same.
  int32_t stream_out = 0;
};

// Token padding of attention_head's scratch panels: a multiple of every variant's 4-vector tile.
constexpr int64_t kAttentionPad = 64;

struct KernelTable {
  const char* name;
  // Exactness probe: int32 sum of u8 x s8 products over n elements.
  int32_t (*dot_u8s8)(const uint8_t* a, const int8_t* b, int64_t n);
  // Token padding of packed activations for `pattern` (Tp is a multiple of it).
  int64_t (*token_align)(int32_t pattern);
  // Packs tokens [t0, t1) of x[K][T] (t0, t1 multiples of token_align, t1 may exceed T: padding)
  // into xp; flip_sign XORs 0x80 into every code (s8 -> u8 shift by +128, exact).
  void (*pack_x)(const uint8_t* x, int64_t K, int64_t T, int32_t flip_sign, int32_t pattern, uint8_t* xp,
                 int64_t Tp, int64_t t0, int64_t t1);
  // Output rows of groups [g0, g1) x tokens [t0, t1) (t0 a multiple of token_align), epilogue included.
  void (*gemm)(const GemmParams& p, int64_t g0, int64_t g1, int64_t t0, int64_t t1);
  // Per-token asymmetric u8 quantization of fp32 x[K][T] for tokens [t0, t1) (any bounds): writes
  // scale[t], zp[t] and q[k][t] (steps of fastdistilbert/quantization.py: range [min(lo, 0),
  // max(hi, 0)], scale = range / 255 or 1, zp = clamp(rne(-lo / scale)), q = clamp(rne(x * (1 / scale)) + zp)).
  // Returns 0 (outputs unspecified) when any value of those tokens is NaN or Inf, 1 otherwise.
  int32_t (*quantize_per_token)(const float* x, int64_t K, int64_t T, int64_t t0, int64_t t1, float* scale,
                                int32_t* zp, uint8_t* q);
  // Static per-tensor u8 quantization of n fp32 values: q = clamp(rne(x * (1 / scale)) + zp, 0, 255), the steps of
  // fastdistilbert/quantization.py::quantize_activation. Returns 0 when a value is NaN or Inf, 1 otherwise.
  int32_t (*quantize_static)(const float* x, int64_t n, float scale, float zp, uint8_t* q);
  // LayerNorm over the K features of tokens [t0, t1) of x[K][T] into y[K][T], which may be x
  // (layer_norm_tokens.inc).
  void (*layer_norm)(const float* x, int64_t K, int64_t T, int64_t t0, int64_t t1, const float* gamma,
                     const float* beta, double eps, float* y);
  // y[0, D) = LayerNorm(word + place) of one token (the embeddings op's rows, token-major; embed_token.inc).
  void (*embed_token)(const float* word, const float* place, int64_t D, const float* gamma, const float* beta,
                      double eps, float* y);
  // Softmax over the rows of s[rows][cols] (row-major) as u8 codes: per column m = max over rows, d = max(s - m,
  // -16), code[r][c] = rne(255 exp(d)) with erfc::kExp2Codes (fused multiply-adds; 0..255, the column's
  // maximum gives 255), and sums[c] = their int32 sum (c < cols). Probabilities are codes / sums (1 / sums is the
  // codes' per-token scale, zero point 0): exact integer sums, no normalization pass. The codes are written straight
  // into xp as this variant's pack_x would pack a [rows][cols] u8 matrix for a dense weight (K = rows, T = cols,
  // Tp = cols rounded up to token_align(kDense); padded rows and columns hold 0), ready for the INT8 attention's
  // context GEMM (keys are rows, queries columns).
  void (*softmax_codes)(const float* s, int64_t rows, int64_t cols, int64_t Tp, uint8_t* xp, int32_t* sums);
  // Symmetric s8 codes of a [rows][cols] fp32 block (rows ld floats apart) packed as dense GEMM weight tiles of
  // W = the block or its transpose, with W's per-row scale and code sums (attention_pack.inc; the INT8
  // attention's K^T and V). Returns 0 on NaN or Inf.
  int32_t (*pack_symmetric)(const float* x, int64_t ld, int64_t rows, int64_t cols, int32_t transpose,
                            float extra_scale, int8_t* codes, float* inv, int8_t* tiles, float* scale, int32_t* wsum);
  // fp32 self-attention of one head of one sequence (attention_fm.cpp). q, k, v point at the head's first
  // feature row and the sequence's first token of feature-major Q, K, V rows ld floats apart; L tokens, dh
  // features; the context goes to ctx (rows ld_ctx floats apart). scratch holds (3 dh + L) * Lp floats,
  // Lp = L rounded up to kAttentionPad. Every variant computes exactly, with fused multiply-adds (one rounding each):
  //   qs[d][i] = q[d][i] * scaling
  //   s[j][i]  = sum over d = 0, 1, ... of k[d][j] * qs[d][i]   (fma chain from 0; keys j are rows)
  //   e[j][i]  = exp(max(s[j][i] - max_j s[j][i], -87))       (erf_constants.h's exp, degree 7, with fmas)
  //   ctx[d][i] = (sum over j = 0, 1, ... of v[d][j] * e[j][i]) * (1 / sum over j = 0, 1, ... of e[j][i])
  void (*attention_head)(const float* q, const float* k, const float* v, int64_t ld, int64_t dh, int64_t L,
                         float scaling, float* scratch, float* ctx, int64_t ld_ctx);
  // Peak probe: runs `iters` iterations of a tight loop of independent dot products; returns the
  // number of u8 x s8 multiply-accumulates executed (a checksum is written to *sink).
  int64_t (*peak_loop)(int64_t iters, int32_t* sink);
};

// One table per ISA, each defined in its own translation unit (kernels_<isa>.cpp).
namespace ref { extern const KernelTable kTable; }
namespace avx2 { extern const KernelTable kTable; }
namespace avxvnni { extern const KernelTable kTable; }
namespace avx512vnni { extern const KernelTable kTable; }
namespace avx512vnni_256 { extern const KernelTable kTable; }
namespace avx512amx { extern const KernelTable kTable; }

}  // namespace fastdistilbert
