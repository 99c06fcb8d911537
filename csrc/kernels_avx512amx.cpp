// amx kernels: the dense GEMMs on AMX-INT8 tiles (tdpbsud: a 16 x 16 int32 tile += 16 x 64 s8 weights times
// 64 x 16 u8 activations, 16,384 multiply-accumulates per instruction), everything else as avx512vnni (the same
// sources, compiled with the same AVX-512 flags plus AMX's). Torch-free.
//
// Operands: C = W x X^T with the weight as AMX's A (s8, rows = output channels, 64 k per tile row) and the packed
// activations as B: pack_x's dense panels [Kp/4][width][4] are AMX's B layout already (one B row = 4 k of 16
// tokens), so a B tile loads straight from the panel (16 k-groups, `width * 4` bytes apart). The weight tiles come from
// the packed weight's AMX tile copy (kernels.h, kAmxBlockRows: two contiguous 16 x 64 tiles per block and step);
// a weight packed without it (and the attention's per-call K and V weights) is rearranged into that layout on the
// stack, 32 rows at a time, once for all the call's tokens (a dense model at seq 128 x 8, 2 threads, took 0.69x the
// avx512vnni time with an earlier form of this rearranging, 0.64x with the copy). Features past the last multiple of
// 64 are added with vpdpbusd from the packed layout. Integer sums wrap like vpdpbusd's: the accumulators equal ref's
// bit for bit.
//
// Linux hands out the tile-data state only to a process that asked for it (arch_prctl ARCH_REQ_XCOMP_PERM,
// cpu_features.cpp); each call configures the tiles on its own thread and releases them before returning.
// GCC 12 warns falsely about the AVX-512 intrinsics' internal _mm512_undefined_* values.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <cstdint>

#include "erf_constants.h"
#include "kernels.h"

namespace fastdistilbert {
namespace avx512amx {

#include "simd_zmm.inc"
#include "kernels_simd.inc"
#include "attention_head.inc"
#include "layer_norm_tokens.inc"
#include "embed_token.inc"
#include "attention_pack.inc"
#include "attention_pack_simd.inc"

// ldtilecfg's 64-byte operand (palette 1).
struct alignas(64) TileConfig {
  uint8_t palette_id;
  uint8_t start_row;
  uint8_t reserved[14];
  uint16_t colsb[16];
  uint8_t rows[16];
};

// Tiles 0-3: accumulators (2 row tiles x 2 token tiles); 4-5: weight rows 0-15 and 16-31; 6-7: tokens 0-15 and
// 16-31. Every tile is 16 rows x 64 bytes.
static void configure_tiles() {
  TileConfig cfg = {};
  cfg.palette_id = 1;
  for (int i = 0; i < 8; ++i) cfg.colsb[i] = 64, cfg.rows[i] = 16;
  _tile_loadconfig(&cfg);
}

constexpr int64_t kBlockGroups = kAmxBlockRows / 4;  // row groups per block: 32 rows, 2 row tiles
constexpr int64_t kStepBytes = kAmxBlockRows * 64;   // one block's weights for one 64-feature step
constexpr int64_t kMaxTileK = 4096;                  // a block's weights copied on the stack: 128 KiB at most

// Block b's weights in the tile-copy layout (kernels.h: [K64 / 64][32 rows][64]), made from the packed dense layout
// for the rows of groups [g0, g1) (the block's other rows are zeros). A packed 64-byte line holds 4 k-groups x 4 rows;
// one dword permute makes each 128-bit lane one row's 16 bytes.
static void copy_block(const GemmParams& p, int64_t b, int64_t g0, int64_t g1, int64_t K64, int8_t* a) {
  const VI by_row = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
  for (int64_t g = b * kBlockGroups; g < (b + 1) * kBlockGroups; ++g) {
    int8_t* rows = a + 4 * (g - b * kBlockGroups) * 64;  // the group's first row, first step
    if (g < g0 || g >= g1) {
      for (int64_t step = 0; step < K64 / 64; ++step)
        for (int r = 0; r < 4; ++r) vi_store(rows + step * kStepBytes + r * 64, vi_zero());
      continue;
    }
    const int8_t* group = p.dense + 4 * g * p.Kp;  // group g's Kp/4 k-groups of 16 bytes
    for (int64_t kg = 0; kg < K64 / 4; kg += 4)
      vi_store_lanes128(reinterpret_cast<uint8_t*>(rows + (kg / 16) * kStepBytes + 4 * (kg % 16)), 64,
                        _mm512_permutexvar_epi32(by_row, vi_load(group + 16 * kg)));
  }
}

// Group g (of block b) x C vectors of tokens from t: the tiles' sums from c, the features past K64 from the packed
// layout with vpdpbusd, then the epilogue.
template <int C>
static void finish_group(const GemmParams& p, int64_t b, int64_t g, int64_t K64, int64_t t, const int32_t* c) {
  VI acc[4][C];
  for (int r = 0; r < 4; ++r)
    for (int v = 0; v < C; ++v) acc[r][v] = vi_load(c + (4 * (g - b * kBlockGroups) + r) * 32 + v * kLanes);
  if (K64 < p.Kp) {
    int64_t stride;
    const uint8_t* x = dense_panel_at(p, t, &stride);
    const PackedWeights w{weight_dwords(p)};
    for (int64_t kg = K64 / 4; kg < p.Kp / 4; ++kg) dense_step<C>(x + kg * stride, w, g * p.Kp + 4 * kg, acc);
  }
  finish_tile<4, C>(p, 4 * g, t, acc);
}

// One piece of gemm_tiles' work: block b's groups [g, ge) x `tiles` tiles of 16 tokens from t, whose sums the tiles
// stored in gemm_tiles' one sums buffer c. Its epilogue runs group by group inside the next piece's tile loop (finish_next), so the vector
// units finish one piece while the tiles compute the next instead of the two taking turns (alternating forwards of
// the dense model, 2 threads: 0.92x the time at seq 128 x 8, 0.94x at 384 x 8; the 3072 x 768 GEMM with GELU at 64
// tokens, weights streaming from L3: 0.92x).
struct Piece {
  int64_t b = 0, g = 0, ge = 0, t = 0;
  int tiles = 0;

  bool pending() const { return g < ge; }
  void finish_next(const GemmParams& p, int64_t K64, const int32_t* c) {
    if (tiles == 2)
      finish_group<2>(p, b, g, K64, t, c);
    else
      finish_group<1>(p, b, g, K64, t, c);
    ++g;
  }
};

// A share of the next block's tile-copy weights, fetched into L2 while this block's pieces run. A model streams every
// weight from memory once per sequence (the model-shape GEMMs at 128 tokens, cycling through six layers' weights, took
// 1.1-1.8x their time on warm ones), and each block's first piece waited on them; its later pieces find them in L1 /
// L2. Alternating forwards of the dense model in one process, 2 threads: seq 128 x 8 0.90-0.96x the time (five runs),
// 384 x 8 0.87x and 0.94x, 128 x 1 0.94x. Lines [0, lines) from `base`, per_step of them per 64-feature step.
struct NextBlockShare {
  const char* base = nullptr;
  int64_t lines = 0, per_step = 0;

  void fetch(int64_t step) const {
    const int64_t first = step * per_step, end = first + per_step < lines ? first + per_step : lines;
    for (int64_t i = first; i < end; ++i) _mm_prefetch(base + 64 * i, _MM_HINT_T1);
  }
};

// A block's 32 rows x TokenTiles tiles of 16 tokens from t (inside one chunk), features [0, K64), into
// c[32 rows][32 tokens] (int32); one group of `previous`'s epilogue after each 64-feature step, the rest at the end.
template <int TokenTiles>
static void block_tiles(const GemmParams& p, const int8_t* a, int64_t K64, int64_t t, int32_t* c, Piece& previous,
                        const NextBlockShare& next) {
  int64_t stride;
  const uint8_t* x = dense_panel_at(p, t, &stride);
  _tile_zero(0);
  _tile_zero(1);
  _tile_zero(2);
  _tile_zero(3);
  for (int64_t k = 0; k < K64; k += 64, a += kStepBytes) {
    const uint8_t* xk = x + (k / 4) * stride;
    // The next step's weight and activation lines into L1 (a dense model at seq 128 x 8 ran 6% faster; ahead
    // further, into L2, and two steps ahead: no gain), and this step's share of the next block's weights.
    next.fetch(k / 64);
    if (k + 64 < K64) {
      for (int i = 0; i < kStepBytes / 64; ++i)
        _mm_prefetch(reinterpret_cast<const char*>(a + kStepBytes + 64 * i), _MM_HINT_T0);
      for (int i = 0; i < 16; ++i)
        for (int j = 0; j < TokenTiles; ++j)
          _mm_prefetch(reinterpret_cast<const char*>(xk + (16 + i) * stride + 64 * j), _MM_HINT_T0);
    }
    _tile_loadd(4, a, 64);
    _tile_loadd(5, a + 16 * 64, 64);
    _tile_loadd(6, xk, stride);
    _tile_dpbsud(0, 4, 6);
    _tile_dpbsud(2, 5, 6);
    if constexpr (TokenTiles == 2) {
      _tile_loadd(7, xk + 64, stride);
      _tile_dpbsud(1, 4, 7);
      _tile_dpbsud(3, 5, 7);
    }
    if (previous.pending()) previous.finish_next(p, K64, c);
  }
  while (previous.pending()) previous.finish_next(p, K64, c);
  constexpr int64_t ldc = 32 * 4;  // bytes
  _tile_stored(0, c, ldc);
  _tile_stored(2, c + 16 * 32, ldc);
  if constexpr (TokenTiles == 2) {
    _tile_stored(1, c + 16, ldc);
    _tile_stored(3, c + 16 * 32 + 16, ldc);
  }
}

// piece(t, tiles) for each piece of tokens [t0, t1) in order: a block_tiles call of 1-2 tiles of 16 tokens from t,
// inside one chunk. Tokens past T are the panel's zero padding (a whole vector at most): computed, never stored.
template <class F>
static inline void for_each_piece(const GemmParams& p, int64_t t0, int64_t t1, F piece) {
  for (int64_t c0 = t0 - t0 % kChunk; c0 < t1; c0 += kChunk) {
    const int64_t chunk_end = c0 + chunk_width(p.Tp, c0) < t1 ? c0 + chunk_width(p.Tp, c0) : t1;
    for (int64_t t = c0 > t0 ? c0 : t0; t < chunk_end; t += 2 * kLanes) piece(t, chunk_end - t > kLanes ? 2 : 1);
  }
}

// Groups [g0, g1) x tokens [t0, t1) block by block: the blocks of 32 rows that hold those groups (a block's other
// rows are computed and dropped), each piece's epilogue inside the next one's tile loop (which stores its own sums in
// the same buffer once that epilogue is done), each piece fetching its share of the next block's weights when they
// come from the tile copy. `copy` (kMaxTileK x 32 bytes on the stack) is used when the weight has no tile copy.
static void gemm_tiles(const GemmParams& p, int64_t g0, int64_t g1, int64_t t0, int64_t t1, int64_t K64, int8_t* copy) {
  alignas(64) int32_t c[kAmxBlockRows * 32];
  Piece previous;
  int64_t pieces = 0;
  for_each_piece(p, t0, t1, [&](int64_t, int) { ++pieces; });
  const int64_t steps = K64 / 64, block_lines = kAmxBlockRows * K64 / 64;
  const int64_t share = (block_lines + pieces - 1) / pieces, share_per_step = (share + steps - 1) / steps;
  for (int64_t b = g0 / kBlockGroups; b * kBlockGroups < g1; ++b) {
    const int64_t gb = b * kBlockGroups > g0 ? b * kBlockGroups : g0;
    const int64_t ge = (b + 1) * kBlockGroups < g1 ? (b + 1) * kBlockGroups : g1;
    const int8_t* a = copy;
    if (p.amx_tiles)
      a = p.amx_tiles + b * kAmxBlockRows * K64;
    else
      copy_block(p, b, gb, ge, K64, copy);
    const bool fetch_next = p.amx_tiles && (b + 1) * kBlockGroups < g1;
    int64_t piece = 0;
    for_each_piece(p, t0, t1, [&](int64_t t, int tiles) {
      NextBlockShare next;
      if (fetch_next && share * piece < block_lines) {
        next.base = reinterpret_cast<const char*>(a + kAmxBlockRows * K64) + 64 * share * piece;
        next.lines = block_lines - share * piece < share ? block_lines - share * piece : share;
        next.per_step = share_per_step;
      }
      if (tiles == 2)
        block_tiles<2>(p, a, K64, t, c, previous, next);
      else
        block_tiles<1>(p, a, K64, t, c, previous, next);
      previous = Piece{b, gb, ge, t, tiles};
      ++piece;
    });
  }
  while (previous.pending()) previous.finish_next(p, K64, c);
}

// Dense weights with at least 64 features on the tiles (at most kMaxTileK without a tile copy); everything else as
// avx512vnni.
static void gemm_amx(const GemmParams& p, int64_t g0, int64_t g1, int64_t t0, int64_t t1) {
  const int64_t K64 = p.Kp / 64 * 64;
  if (p.pattern != kDense || K64 == 0 || (!p.amx_tiles && K64 > kMaxTileK)) return gemm(p, g0, g1, t0, t1);
  if (t1 > p.T) t1 = p.T;
  if (g0 >= g1 || t0 >= t1) return;
  configure_tiles();
  if (p.amx_tiles) {
    gemm_tiles(p, g0, g1, t0, t1, K64, nullptr);
  } else {
    alignas(64) int8_t copy[kAmxBlockRows * kMaxTileK];
    gemm_tiles(p, g0, g1, t0, t1, K64, copy);
  }
  _tile_release();
  if (p.stream_out) _mm_sfence();  // as gemm's
}

// Peak probe of the tiles: four independent accumulator tiles, operands loaded once.
static int64_t peak_loop_amx(int64_t iters, int32_t* sink) {
  alignas(64) int8_t a[16 * 64];
  alignas(64) int32_t c[4][16 * 16];
  for (int i = 0; i < 16 * 64; ++i) a[i] = int8_t(i % 7 - 3);
  configure_tiles();
  _tile_loadd(4, a, 64);
  _tile_loadd(5, a, 64);
  _tile_loadd(6, a, 64);
  _tile_loadd(7, a, 64);
  _tile_zero(0);
  _tile_zero(1);
  _tile_zero(2);
  _tile_zero(3);
  for (int64_t it = 0; it < iters; ++it) {
    _tile_dpbsud(0, 4, 6);
    _tile_dpbsud(1, 4, 7);
    _tile_dpbsud(2, 5, 6);
    _tile_dpbsud(3, 5, 7);
  }
  _tile_stored(0, c[0], 64);
  _tile_stored(1, c[1], 64);
  _tile_stored(2, c[2], 64);
  _tile_stored(3, c[3], 64);
  _tile_release();
  int32_t s = 0;
  for (int i = 0; i < 4 * 16 * 16; ++i) s += c[i / 256][i % 256];
  *sink = s;
  return iters * 4 * 16 * 16 * 64;
}

const KernelTable kTable = {"amx", dot_u8s8, token_align, pack_x,
                            gemm_amx, quantize_per_token, quantize_static, layer_norm_tokens, embed_token,
                            softmax_codes, pack_symmetric, attention_head, peak_loop_amx};

}  // namespace avx512amx
}  // namespace fastdistilbert
