#include "gemm_ops.h"

#include <ATen/MemoryOverlap.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <vector>

#include "dispatch.h"
#include "packed_weight.h"

namespace fastdistilbert {
namespace {

std::atomic<const char*> g_last_isa{""};
// Test hook: byte every output is pre-filled with before the kernels run (-1: off), so that an
// element a kernel forgot to write shows up as a mismatch.
std::atomic<int> g_output_sentinel{-1};

void fill_sentinel(const at::Tensor& out) {
  const int fill = g_output_sentinel.load();
  if (fill >= 0 && out.numel() > 0) std::memset(out.data_ptr(), fill, out.nbytes());
}

}  // namespace

at::Tensor new_output(int64_t N, int64_t T, at::ScalarType dtype) {
  at::Tensor out = at::empty({N, T}, at::TensorOptions().dtype(dtype));
  fill_sentinel(out);
  return out;
}

namespace {

// Largest K whose accumulators cannot overflow int32: K * 255 * 127 < 2^31.
constexpr int64_t kMaxK = 66000;

const KernelTable& table_for(const std::string& isa) { return isa.empty() ? active_kernels() : kernels_for(isa); }

void check_activations(const at::Tensor& x, const GemmParams& p, const char* op) {
  TORCH_CHECK(x.dim() == 2, op, ": activations must be 2-D feature-major [in_features, tokens], got shape ", x.sizes());
  TORCH_CHECK(x.size(0) == p.K, op, ": activations have ", x.size(0), " features (dim 0) but the packed weight has K = ",
              p.K, " (feature-major layout [in_features, tokens])");
  TORCH_CHECK(x.is_contiguous(), op, ": activations must be contiguous (feature-major [in_features, tokens])");
  TORCH_CHECK(p.K <= kMaxK, op, ": in_features ", p.K, " exceeds ", kMaxK, " (int32 accumulators could overflow)");
}

// Per-token vector of length Tp (padding: fill) from a [T] or [1] tensor, in plain loops: these run for every
// GEMM call, where a few ATen ops would cost tens of microseconds.
template <typename T>
at::Tensor per_token(const at::Tensor& v, int64_t tokens, int64_t Tp, T fill, at::ScalarType dtype, const char* what,
                     const char* op) {
  TORCH_CHECK(v.scalar_type() == dtype, op, ": ", what, " must be ", dtype, ", got ", v.scalar_type());
  TORCH_CHECK(v.numel() == 1 || (v.dim() == 1 && v.numel() == tokens), op, ": ", what,
              " must have shape [tokens] = [", tokens, "] or [1], got ", v.sizes());
  const at::Tensor src = v.contiguous();
  const T* in = src.data_ptr<T>();
  at::Tensor out = at::empty({Tp}, at::TensorOptions().dtype(dtype));
  T* o = out.data_ptr<T>();
  const bool broadcast = src.numel() == 1;
  for (int64_t t = 0; t < tokens; ++t) o[t] = in[broadcast ? 0 : t];
  for (int64_t t = tokens; t < Tp; ++t) o[t] = fill;
  return out;
}

}  // namespace

void note_last_isa(const KernelTable& k) { g_last_isa.store(k.name); }

namespace {

// Bytes of one packed copy of the activations (4x1 chunks hold K rows, the others Kp).
int64_t packed_bytes(const GemmParams& p) { return (p.pattern == k4x1 ? p.K : p.Kp) * p.Tp; }

// Bytes of the packed weight one pass over all its rows reads: int8 rows; a 4x1 quad's 4 indices and 4 dwords; a 1x4
// block's index and dword.
int64_t weight_bytes(const GemmParams& p) {
  if (p.pattern == k4x1) return int64_t(p.ptr[p.Np / 4]) * 32;
  if (p.pattern == k1x4) return int64_t(p.ptr[p.Np]) * 8;
  return p.Np * p.Kp;
}

}  // namespace

at::Tensor pack_activations(const KernelTable& k, GemmParams& p, const at::Tensor& x, bool flip_sign) {
  note_last_isa(k);
  at::Tensor xp = at::empty({packed_bytes(p)}, at::TensorOptions().dtype(at::kByte));
  const uint8_t* xsrc = static_cast<const uint8_t*>(x.data_ptr());
  uint8_t* xdst = xp.data_ptr<uint8_t>();
  // Whole chunks per thread (a chunk is token_align(4x1) tokens, the SIMD variants' panel width).
  const int64_t chunk = k.token_align(k4x1);
  at::parallel_for(0, (p.Tp + chunk - 1) / chunk, 1, [&](int64_t b, int64_t e) {
    k.pack_x(xsrc, p.K, p.T, flip_sign, p.pattern, xdst, p.Tp, b * chunk, std::min(p.Tp, e * chunk));
  });
  p.xp = xdst;
  return xp;
}

namespace {

struct Work {
  int64_t groups_per_block, n_row_blocks, tokens_per_tile, n_token_tiles;
  // Items in token-tile order (each thread sweeps every row block over its own tiles) instead of row-block order (each
  // thread sweeps every token tile for its row blocks): run_gemm's choice, by which operand is re-read less.
  bool tiles_outer = false;
};

// Row blocks of equal size (a short last block left a thread idle: 768 x 768 at 1,024 tokens split
// 85 + 85 + 22 groups ran at 75% on 2 threads), each small enough for its weights (~256 KiB) to stay
// in L2 while the token tiles stream; enough items for every thread. Results never depend on this split.
Work plan_work(const GemmParams& p, int64_t align) {
  Work w;
  const int64_t G = p.Np / 4;
  w.tokens_per_tile = (256 + align - 1) / align * align;
  w.n_token_tiles = (p.Tp + w.tokens_per_tile - 1) / w.tokens_per_tile;
  const int64_t most_groups = std::max<int64_t>(1, 262144 / (4 * p.Kp));
  w.n_row_blocks = (G + most_groups - 1) / most_groups;
  const int64_t want = 4 * at::get_num_threads();
  if (w.n_row_blocks * w.n_token_tiles < want)
    w.n_row_blocks = std::min(G, (want + w.n_token_tiles - 1) / w.n_token_tiles);
  w.groups_per_block = (G + w.n_row_blocks - 1) / w.n_row_blocks;
  w.n_row_blocks = (G + w.groups_per_block - 1) / w.groups_per_block;
  return w;
}

// Work items [b, e) of w (row block x token tile), on the activations packed at p.xp.
void run_items(const KernelTable& k, const GemmParams& p, const Work& w, int64_t b, int64_t e) {
  const int64_t G = p.Np / 4;
  for (int64_t item = b; item < e; ++item) {
    const int64_t rb = w.tiles_outer ? item % w.n_row_blocks : item / w.n_token_tiles;
    const int64_t tt = w.tiles_outer ? item / w.n_row_blocks : item % w.n_token_tiles;
    const int64_t g0 = rb * w.groups_per_block, g1 = std::min(G, g0 + w.groups_per_block);
    const int64_t t0 = tt * w.tokens_per_tile, t1 = std::min(p.T, t0 + w.tokens_per_tile);
    if (g0 < g1 && t0 < t1) k.gemm(p, g0, g1, t0, t1);
  }
}

// Up to this size every thread packs its own copy of the activations it reads. Split by rows, each thread reads
// all the tokens; shared, half of them were packed by the other core and each line crossed between the caches
// (AMD EPYC, 2 threads, alternating in one process: 80% (4,1) 768 x 768 at 128 / 384 tokens 0.91x / 0.92x the time
// with own copies, 768 x 3072 at 128 tokens 0.90x, dense 0.96-0.98x). Above it the extra packing and memory cost
// more than they save (2304 x 768 at 1,024 tokens: 1.05-1.10x; 768 x 3072 at 3,072: 1.6x).
constexpr int64_t kOwnCopyBytes = 512 * 1024;

// Packs the activations with the variant's layout and runs the GEMM over all (row block x token tile)
// items. `x_u8` holds u8 codes (or s8 codes when flip_sign).
void run_gemm(const KernelTable& k, GemmParams& p, const at::Tensor& x, bool flip_sign) {
  Work w = plan_work(p, k.token_align(p.pattern));
  const int64_t items = w.n_row_blocks * w.n_token_tiles, threads = at::get_num_threads();
  if (threads == 1 || packed_bytes(p) > kOwnCopyBytes) {
    // Row-block order reads all the activations once per row block, token-tile order the weights once per tile: the
    // latter where it moves at most half the bytes (K = 3,072 at 1,024-3,072 tokens: 80% (4,1) 768 x 3072 at 1,024
    // tokens 0.87x the time on 2 threads, at 3,072 tokens 0.46x the median on one; dense 0.95x, K = 768 about even).
    w.tiles_outer = 2 * w.n_token_tiles * weight_bytes(p) <= w.n_row_blocks * packed_bytes(p);
    at::Tensor xp = pack_activations(k, p, x, flip_sign);
    at::parallel_for(0, items, 1, [&](int64_t b, int64_t e) { run_items(k, p, w, b, e); });
    return;
  }
  note_last_isa(k);
  at::Tensor copies = at::empty({threads * packed_bytes(p)}, at::TensorOptions().dtype(at::kByte));
  const uint8_t* src = static_cast<const uint8_t*>(x.data_ptr());
  at::parallel_for(0, items, 1, [&](int64_t b, int64_t e) {
    // Run inline (nested in another parallel region), the lambda may see an outer thread's number: one copy is
    // enough there, as only one lambda runs.
    const int64_t slot = std::min<int64_t>(at::get_thread_num(), threads - 1);
    uint8_t* mine = copies.data_ptr<uint8_t>() + slot * packed_bytes(p);
    GemmParams own = p;
    own.xp = mine;
    int64_t t0 = p.Tp, t1 = 0;  // the token tiles of these items (whole chunks: tiles are multiples of one)
    for (int64_t item = b; item < e; ++item) {
      const int64_t tt = item % w.n_token_tiles;
      t0 = std::min(t0, tt * w.tokens_per_tile);
      t1 = std::max(t1, std::min(p.Tp, (tt + 1) * w.tokens_per_tile));
    }
    if (t0 < t1) k.pack_x(src, p.K, p.T, flip_sign, p.pattern, mine, p.Tp, t0, t1);
    run_items(k, own, w, b, e);
  });
}

}  // namespace

Prepared prepare(const KernelTable& k, const at::Tensor& x, const at::Tensor& packed, const char* op) {
  Prepared prep;
  parse_packed_weight(packed, prep.p, op);
  check_activations(x, prep.p, op);
  prep.p.T = x.size(1);
  prep.p.ld = prep.p.T;
  const int64_t align = k.token_align(prep.p.pattern);
  prep.p.Tp = (prep.p.T + align - 1) / align * align;
  return prep;
}

namespace {

// fp32 outputs from this size on are written with non-temporal stores: far larger than the L2s, written once and read
// back (if at all) after the whole GEMM, their lines would only evict the weights and activations, and each store
// would first read its line from memory. AMD EPYC (Zen 4), 2 threads, 80% (4,1), into a reused output, alternating in
// one process: 3072 x 768 at 3,072 tokens (38 MB) 0.66x the time, 2304 x 768 (28 MB) 0.62x, 768 x 768 (9.4 MB) 0.92x,
// 3072 x 768 at 1,024 tokens (12.6 MB) 0.92x, dense 0.90-0.93x; at 1-3 MB (768 x 768 at 384 / 1,024 tokens) 0.98x and
// 1.04x, so smaller outputs keep ordinary stores (and stay in the caches for the next op).
constexpr int64_t kStreamOutputBytes = 8 << 20;

// Checks a caller's `out` for an [N, T] result of `dtype`: it must be exactly that, contiguous, and share no memory
// with what the GEMM still reads while it writes (the activations x, the packed weight); the residual may be `out`
// itself (each element is read before it is written, by the same thread), not a part of it.
void check_out(const at::Tensor& out, int64_t N, int64_t T, at::ScalarType dtype, const at::Tensor& x,
               const at::Tensor& packed, const std::optional<at::Tensor>& residual, const char* op) {
  TORCH_CHECK(out.scalar_type() == dtype, op, ": out must be ", dtype,
              dtype == at::kByte ? " (out_scale requantizes the output)" : " (no out_scale: fp32 output)", ", got ",
              out.scalar_type());
  TORCH_CHECK(out.dim() == 2 && out.size(0) == N && out.size(1) == T, op, ": out must have shape [", N, ", ", T,
              "] (out_features x tokens), got ", out.sizes());
  TORCH_CHECK(out.is_contiguous(), op, ": out must be contiguous");
  TORCH_CHECK(at::get_overlap_status(out, x) == at::MemOverlapStatus::No, op,
              ": out must not share memory with the activations");
  TORCH_CHECK(at::get_overlap_status(out, packed) == at::MemOverlapStatus::No, op,
              ": out must not share memory with the packed weight");
  if (residual.has_value()) {
    const auto status = at::get_overlap_status(out, *residual);
    TORCH_CHECK(status == at::MemOverlapStatus::No || status == at::MemOverlapStatus::Full, op,
                ": out must be the residual itself or not overlap it, got a partial overlap");
  }
}

// The GEMM of activations x (u8 codes, or s8 when flip_sign) by `packed`, into `out_arg` when given, else into a new
// tensor.
at::Tensor linear_core(const KernelTable& k, Prepared& prep, const at::Tensor& x, bool flip_sign,
                       const at::Tensor& packed, int64_t out_features, bool gelu,
                       const std::optional<at::Tensor>& residual, std::optional<double> out_scale,
                       std::optional<int64_t> out_zero_point, const std::optional<at::Tensor>& out_arg,
                       const char* op) {
  GemmParams& p = prep.p;
  TORCH_CHECK(out_features == p.N, op, ": out_features=", out_features, " but the packed weight has N = ", p.N);
  p.x_scale = prep.x_scale.data_ptr<float>();
  p.x_zp = prep.x_zp.data_ptr<int32_t>();
  p.gelu = gelu;
  p.residual = nullptr;
  if (residual.has_value()) {
    const at::Tensor& r = *residual;
    TORCH_CHECK(r.scalar_type() == at::kFloat, op, ": residual must be float32, got ", r.scalar_type());
    TORCH_CHECK(r.dim() == 2 && r.size(0) == p.N && r.size(1) == p.T, op, ": residual must have shape [", p.N, ", ",
                p.T, "], got ", r.sizes());
    TORCH_CHECK(r.is_contiguous(), op, ": residual must be contiguous");
    p.residual = r.data_ptr<float>();
  }
  TORCH_CHECK(out_scale.has_value() || !out_zero_point.has_value(), op, ": out_zero_point given without out_scale");
  p.out_f32 = nullptr;
  p.out_u8 = nullptr;
  p.out_acc = nullptr;
  if (out_scale.has_value()) {
    const double s = *out_scale;
    const int64_t zp = out_zero_point.value_or(0);
    TORCH_CHECK(std::isfinite(s) && s > 0, op, ": out_scale must be a positive finite number, got ", s);
    TORCH_CHECK(zp >= 0 && zp <= 255, op, ": out_zero_point must be in [0, 255], got ", zp);
    p.out_scale = float(s);
    p.out_zp = float(zp);
  }
  const at::ScalarType dtype = out_scale.has_value() ? at::kByte : at::kFloat;
  at::Tensor out;
  if (out_arg.has_value()) {
    out = *out_arg;
    check_out(out, p.N, p.T, dtype, x, packed, residual, op);
    fill_sentinel(out);
  } else {
    out = new_output(p.N, p.T, dtype);
  }
  if (dtype == at::kByte) {
    p.out_u8 = out.data_ptr<uint8_t>();
  } else {
    p.out_f32 = out.data_ptr<float>();
    // Streamed stores need whole aligned vectors: every row 64-byte aligned (T a multiple of 16).
    p.stream_out = out.nbytes() >= kStreamOutputBytes && p.T % 16 == 0 &&
                   reinterpret_cast<uintptr_t>(p.out_f32) % 64 == 0;
  }
  if (p.T > 0) run_gemm(k, p, x, flip_sign);
  return out;
}

}  // namespace

Prepared prepare_quantized(const KernelTable& k, const at::Tensor& x_q, const at::Tensor& x_scale,
                           const at::Tensor& x_zero_point, const at::Tensor& packed, const char* op) {
  TORCH_CHECK(x_q.scalar_type() == at::kByte || x_q.scalar_type() == at::kChar, op,
              ": x_q must be uint8 or int8, got ", x_q.scalar_type());
  Prepared prep = prepare(k, x_q, packed, op);
  const bool s8 = x_q.scalar_type() == at::kChar;
  const int64_t T = prep.p.T;
  prep.x_scale = per_token<float>(x_scale, T, prep.p.Tp, 1.0f, at::kFloat, "x_scale", op);
  // A NaN, zero or negative scale would silently give NaN, zero or sign-flipped outputs.
  const float* scale = prep.x_scale.data_ptr<float>();
  bool scales_ok = true;
  for (int64_t t = 0; t < T; ++t) scales_ok &= std::isfinite(scale[t]) && scale[t] > 0.0f;
  TORCH_CHECK(scales_ok, op, ": x_scale must be finite and positive");
  prep.x_zp = per_token<int32_t>(x_zero_point, T, prep.p.Tp, 0, at::kInt, "x_zero_point", op);
  int32_t* zp = prep.x_zp.data_ptr<int32_t>();
  bool zps_ok = true;
  if (s8) {
    // s8 codes are shifted to u8 by +128 (exact), which moves the zero point from 0 to 128.
    for (int64_t t = 0; t < T; ++t) {
      zps_ok &= zp[t] == 0;
      zp[t] = 128;
    }
    TORCH_CHECK(zps_ok, op, ": int8 activations need zero point 0");
  } else {
    for (int64_t t = 0; t < T; ++t) zps_ok &= zp[t] >= 0 && zp[t] <= 255;
    TORCH_CHECK(zps_ok, op, ": x_zero_point must be in [0, 255]");
  }
  return prep;
}

namespace {

at::Tensor quantized_linear_into(const at::Tensor& x_q, const at::Tensor& x_scale, const at::Tensor& x_zero_point,
                                 const at::Tensor& packed, int64_t out_features, bool gelu,
                                 const std::optional<at::Tensor>& residual, std::optional<double> out_scale,
                                 std::optional<int64_t> out_zero_point, const std::optional<at::Tensor>& out) {
  const char* op = "quantized_linear";
  const KernelTable& k = active_kernels();
  Prepared prep = prepare_quantized(k, x_q, x_scale, x_zero_point, packed, op);
  return linear_core(k, prep, x_q, x_q.scalar_type() == at::kChar, packed, out_features, gelu, residual, out_scale,
                     out_zero_point, out, op);
}

}  // namespace

at::Tensor quantized_linear(const at::Tensor& x_q, const at::Tensor& x_scale, const at::Tensor& x_zero_point,
                            const at::Tensor& packed, int64_t out_features, bool gelu,
                            const std::optional<at::Tensor>& residual, std::optional<double> out_scale,
                            std::optional<int64_t> out_zero_point) {
  return quantized_linear_into(x_q, x_scale, x_zero_point, packed, out_features, gelu, residual, out_scale,
                               out_zero_point, std::nullopt);
}

void quantized_linear_out(const at::Tensor& x_q, const at::Tensor& x_scale, const at::Tensor& x_zero_point,
                          const at::Tensor& packed, int64_t out_features, bool gelu,
                          const std::optional<at::Tensor>& residual, std::optional<double> out_scale,
                          std::optional<int64_t> out_zero_point, const at::Tensor& out) {
  quantized_linear_into(x_q, x_scale, x_zero_point, packed, out_features, gelu, residual, out_scale, out_zero_point,
                        out);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> quantize_per_token(const at::Tensor& x) {
  TORCH_CHECK(x.scalar_type() == at::kFloat, "quantize_per_token: x must be float32, got ", x.scalar_type());
  TORCH_CHECK(x.dim() == 2, "quantize_per_token: x must be 2-D feature-major [features, tokens], got shape ", x.sizes());
  TORCH_CHECK(x.is_contiguous(), "quantize_per_token: x must be contiguous");
  const int64_t K = x.size(0), T = x.size(1);
  TORCH_CHECK(K > 0, "quantize_per_token: x has no features");
  at::Tensor q = at::empty({K, T}, x.options().dtype(at::kByte));
  at::Tensor scale = at::empty({T}, x.options());
  at::Tensor zp = at::empty({T}, x.options().dtype(at::kInt));
  const float* xs = x.data_ptr<float>();
  uint8_t* qd = q.data_ptr<uint8_t>();
  float* sd = scale.data_ptr<float>();
  int32_t* zd = zp.data_ptr<int32_t>();
  const KernelTable& k = active_kernels();
  // Token ranges in whole 64-token steps, so every thread runs full vectors; the result does not depend on the split.
  std::atomic<int64_t> bad_token{-1};
  at::parallel_for(0, (T + 63) / 64, 1, [&](int64_t b, int64_t e) {
    const int64_t t0 = b * 64, t1 = std::min(T, e * 64);
    if (!k.quantize_per_token(xs, K, T, t0, t1, sd, zd, qd)) bad_token.store(t0);
  });
  TORCH_CHECK(bad_token.load() < 0, "quantize_per_token: x contains NaN or Inf (in the tokens from ", bad_token.load(),
              " on); activations must be finite");
  return {q, scale, zp};
}

at::Tensor quantize_per_tensor_fm(const at::Tensor& x, double scale, int64_t zero_point) {
  const char* op = "quantize_per_tensor_fm";
  TORCH_CHECK(x.scalar_type() == at::kFloat, op, ": x must be float32, got ", x.scalar_type());
  TORCH_CHECK(x.is_contiguous(), op, ": x must be contiguous");
  TORCH_CHECK(std::isfinite(scale) && scale > 0, op, ": scale must be a positive finite number, got ", scale);
  TORCH_CHECK(zero_point >= 0 && zero_point <= 255, op, ": zero_point must be in [0, 255], got ", zero_point);
  at::Tensor q = at::empty_like(x, x.options().dtype(at::kByte));
  const float* xs = x.data_ptr<float>();
  uint8_t* qd = q.data_ptr<uint8_t>();
  const KernelTable& k = active_kernels();
  std::atomic<bool> finite{true};
  at::parallel_for(0, (x.numel() + 4095) / 4096, 1, [&](int64_t b, int64_t e) {
    const int64_t i0 = b * 4096, i1 = std::min(x.numel(), e * 4096);
    if (!k.quantize_static(xs + i0, i1 - i0, float(scale), float(zero_point), qd + i0)) finite = false;
  });
  TORCH_CHECK(finite.load(), op, ": x contains NaN or Inf; activations must be finite");
  return q;
}

namespace {

at::Tensor dynamic_quantized_linear_into(const at::Tensor& x, const at::Tensor& packed, int64_t out_features,
                                         bool gelu, const std::optional<at::Tensor>& residual,
                                         const std::optional<at::Tensor>& out) {
  const char* op = "dynamic_quantized_linear";
  TORCH_CHECK(x.scalar_type() == at::kFloat, op, ": x must be float32, got ", x.scalar_type());
  const KernelTable& k = active_kernels();
  Prepared prep = prepare(k, x, packed, op);
  auto [q, scale, zp] = quantize_per_token(x);
  const int64_t T = prep.p.T;
  prep.x_scale = per_token<float>(scale, T, prep.p.Tp, 1.0f, at::kFloat, "x_scale", op);
  prep.x_zp = per_token<int32_t>(zp, T, prep.p.Tp, 0, at::kInt, "x_zero_point", op);
  return linear_core(k, prep, q, false, packed, out_features, gelu, residual, std::nullopt, std::nullopt, out, op);
}

}  // namespace

at::Tensor dynamic_quantized_linear(const at::Tensor& x, const at::Tensor& packed, int64_t out_features, bool gelu,
                                    const std::optional<at::Tensor>& residual) {
  return dynamic_quantized_linear_into(x, packed, out_features, gelu, residual, std::nullopt);
}

void dynamic_quantized_linear_out(const at::Tensor& x, const at::Tensor& packed, int64_t out_features, bool gelu,
                                  const std::optional<at::Tensor>& residual, const at::Tensor& out) {
  dynamic_quantized_linear_into(x, packed, out_features, gelu, residual, out);
}

at::Tensor quantized_linear_accumulators(const at::Tensor& x_q, const at::Tensor& packed, int64_t out_features,
                                         const std::string& isa) {
  const char* op = "quantized_linear_accumulators";
  TORCH_CHECK(x_q.scalar_type() == at::kByte, op, ": x_q must be uint8, got ", x_q.scalar_type());
  const KernelTable& k = table_for(isa);
  Prepared prep = prepare(k, x_q, packed, op);
  GemmParams& p = prep.p;
  TORCH_CHECK(out_features == p.N, op, ": out_features=", out_features, " but the packed weight has N = ", p.N);
  at::Tensor out = new_output(p.N, p.T, at::kInt);
  p.out_acc = out.data_ptr<int32_t>();
  if (p.T > 0) run_gemm(k, p, x_q, false);
  return out;
}

std::string last_isa() { return g_last_isa.load(); }

int64_t streamed_output_bytes() { return kStreamOutputBytes; }

void set_output_sentinel(int64_t byte) {
  TORCH_CHECK(byte >= -1 && byte <= 255, "set_output_sentinel: byte must be in [-1, 255], got ", byte);
  g_output_sentinel.store(int(byte));
}

int64_t peak_probe(int64_t iterations, const std::string& isa) {
  TORCH_CHECK(iterations > 0, "peak_probe: iterations must be positive");
  const KernelTable& k = table_for(isa);
  const int64_t threads = at::get_num_threads();
  std::vector<int64_t> macs(threads, 0);
  std::vector<int32_t> sinks(threads, 0);
  at::parallel_for(0, threads, 1, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) macs[i] = k.peak_loop(iterations, &sinks[i]);
  });
  int64_t total = 0;
  for (int64_t m : macs) total += m;
  return total;
}

}  // namespace fastdistilbert
