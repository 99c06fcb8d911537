"""Python API of the INT8 GEMM kernels: wrappers over `torch.ops.fastdistilbert.*` with fake kernels.

Layout: activations are FEATURE-MAJOR `[K, T]` (features x tokens, contiguous) and outputs `[N, T]`:
the kernels compute Y^T = W x X^T so sparsity lives in weight rows and SIMD lanes run over tokens
(DESIGN section 3). Weights are packed once (`pack_weight`) into a self-describing buffer.

When the C++ extension is missing, every wrapper falls back (with a one-time warning) to
`fastdistilbert.reference_ops`, which has the same integer and fp32 math.

Under `torch.compile`, pass `out_features=` (or a residual) to the linear ops: the packed buffer's
header cannot be read while tracing, and the output shape depends on it.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from . import quantization as Q
from . import reference_ops as R
from ._extension import EXTENSION_AVAILABLE, active_isa, available_isas, warn_if_unavailable

# Largest block density at which each sparse kernel beats our dense kernel, from
# `benchmarks/bench_kernels.py --threads 1 --clock cpu` (tokens >= 128, DistilBERT shapes): a sparse kernel at
# block density d takes about d * c times dense's time (c = its cost per stored block relative to
# dense, measured at d = 0.2 and 0.1), so it wins below d = 1 / c.
# Measured (1 thread, CPU clock, median over 4 shapes x tokens 128-3072 x densities 0.2 and 0.1):
# 4x1 0.42, 1x4 0.30 on avx512vnni (0.37 / 0.34 on the 256-bit variant, 0.68 / 0.49 on avx2).
SPARSE_CROSSOVER = {"4x1": 0.42, "1x4": 0.30}
# The same on the amx variant, whose dense GEMMs run on AMX tiles (2.2-3.3x its vector dense kernel) while the
# sparse ones stay on vpdpbusd. Measured on the model (base shape, 2 threads, alternating forwards of the same
# pruned weights packed sparse and dense, median time sparse / dense): (4,1) 0.68 at density 0.2, 0.92-0.97 at 0.3,
# 1.11-1.14 at 0.4; (1,4) 0.93 at 0.2, 1.15 at 0.3 (seq 128 x 8 and 384 x 8).
SPARSE_CROSSOVER_AMX = {"4x1": 0.32, "1x4": 0.22}


KERNEL_VARIANTS = ("amx", "avx512vnni", "avx512vnni_256", "avxvnni", "avx2", "ref")  # csrc/dispatch.cpp's names


def sparse_crossover(isa: str) -> dict:
    """SPARSE_CROSSOVER for the kernel variant `isa` (SPARSE_CROSSOVER_AMX for "amx")."""
    if isa not in KERNEL_VARIANTS:
        raise ValueError(f"unknown kernel variant {isa!r}; expected one of {', '.join(KERNEL_VARIANTS)}")
    return SPARSE_CROSSOVER_AMX if isa == "amx" else SPARSE_CROSSOVER


@dataclass(frozen=True)
class PatternInfo:
    """Which kernel a weight should use: `pattern` ("4x1", "1x4" or "dense"), the block density of that
    pattern (nonzero blocks / all blocks; element density for "dense") and every pattern's density."""

    pattern: str
    block_density: float
    densities: dict = field(default_factory=dict)


def detect_pattern(weight: torch.Tensor, isa: str | None = None) -> PatternInfo:
    """Picks the fastest correct kernel for a weight `[N, K]` (int8 or float) from where its zeros are, on the
    kernel variant `isa` (default: the active one, the variant that will run it).

    A sparse pattern is chosen only when its block density is below that pattern's measured
    crossover (sparse_crossover(isa)), and the one with the lowest estimated time wins: zeros that do
    not follow a pattern leave few all-zero blocks, so unstructured sparsity falls through to dense.
    """
    if weight.dim() != 2 or 0 in weight.shape:
        raise ValueError(f"detect_pattern: weight must be a non-empty 2-D [out, in] tensor, got {tuple(weight.shape)}")
    densities = R.block_densities(weight.detach())
    # A sparse kernel's time relative to dense is about density / crossover (its per-block cost is
    # 1 / crossover times dense's): take the cheapest pattern, if it beats dense.
    if isa is None:
        isa = active_isa() if EXTENSION_AVAILABLE else "ref"
    relative = {p: densities[p] / crossover for p, crossover in sparse_crossover(isa).items()}
    best = min(relative, key=relative.get)
    if relative[best] < 1.0:
        return PatternInfo(best, densities[best], densities)
    return PatternInfo("dense", densities["dense"], densities)


@torch.library.custom_op("fastdistilbert::pack_weight", mutates_args=())
def _pack_weight_op(weight_q: torch.Tensor, weight_scale: torch.Tensor, bias: torch.Tensor | None,
                    pattern: str, amx_tiles: bool = False) -> torch.Tensor:
    return R.pack_weight(weight_q, weight_scale, bias, pattern, amx_tiles)


@_pack_weight_op.register_fake
def _(weight_q, weight_scale, bias, pattern, amx_tiles=False):
    return weight_q.new_empty((torch.library.get_ctx().new_dynamic_size(),), dtype=torch.uint8)


def pack_weight(weight_q: torch.Tensor, weight_scale: torch.Tensor, bias: torch.Tensor | None = None,
                pattern: str = "dense", amx_tiles: bool | None = None) -> torch.Tensor:
    """Packs int8 `weight_q [N, K]`, fp32 `weight_scale [N]` and optional fp32 `bias [N]` for `pattern`
    into a 1-D uint8 buffer with a header (csrc/packed_weight.h). Any N and K work (padded to 4).

    `amx_tiles` (dense weights): also store the weight in the amx variant's tile blocks (that variant otherwise
    rearranges it on every call); None (the default) stores them when this CPU runs the amx variant."""
    if amx_tiles is None:
        amx_tiles = pattern == "dense" and amx_available()
    return torch.ops.fastdistilbert.pack_weight(weight_q, weight_scale, bias, pattern, amx_tiles)


def amx_available() -> bool:
    """Whether this CPU (and OS) runs the amx variant, whose dense GEMMs use the tile copy of a packed weight."""
    return EXTENSION_AVAILABLE and "amx" in available_isas()


def packed_info(packed: torch.Tensor) -> dict:
    """The header of a packed weight (pattern, N, K, nnz_blocks, block_density, has_bias, ...)."""
    return R.packed_info(packed)


def _out_features(packed: torch.Tensor, out_features: int | None, residual: torch.Tensor | None) -> int:
    if out_features is not None:
        return out_features
    if residual is not None:
        return residual.shape[0]
    if torch.compiler.is_compiling():
        raise ValueError("fastdistilbert ops: pass out_features= when compiling (the packed header is not traceable)")
    if packed.dtype != torch.uint8 or packed.dim() != 1 or packed.numel() < R.HEADER_BYTES:
        return 0  # the op itself reports what is wrong with the buffer
    return int(packed[16:24].view(torch.int64))


def _copy_into(out: torch.Tensor, result: torch.Tensor, op: str) -> torch.Tensor:
    """The reference fallback's `out=`: the same contract as the C++ ops' (exact dtype and shape, contiguous)."""
    if out.dtype != result.dtype or out.shape != result.shape or not out.is_contiguous():
        raise ValueError(f"{op}: out must be a contiguous {result.dtype} tensor of shape {list(result.shape)}, got "
                         f"{out.dtype} {list(out.shape)}{'' if out.is_contiguous() else ' (non-contiguous)'}")
    return out.copy_(result)


def quantized_linear(x_q: torch.Tensor, x_scale: torch.Tensor, x_zero_point: torch.Tensor, packed: torch.Tensor, *,
                     gelu: bool = False, residual: torch.Tensor | None = None, out_scale: float | None = None,
                     out_zero_point: int | None = None, out_features: int | None = None,
                     out: torch.Tensor | None = None) -> torch.Tensor:
    """`[N, T]` = packed weight x quantized activations `x_q [K, T]` (uint8, or int8 with zero point 0),
    per-token (`[T]`) or per-tensor (`[1]`) `x_scale` / `x_zero_point`, with the fused epilogue
    (bias, optional GELU, optional fp32 `residual [N, T]`); fp32 out, or uint8 requantized with
    `out_scale` / `out_zero_point`.

    `out`: write the result into this tensor (exactly `[N, T]` of the result's dtype, contiguous, sharing no memory
    with `x_q` or `packed`; it may be `residual` itself) and return it: a loop reuses one output instead of allocating
    (and page-faulting) a new one per call."""
    if not warn_if_unavailable():
        result = R.quantized_linear(x_q, x_scale, x_zero_point, packed, gelu=gelu, residual=residual,
                                    out_scale=out_scale, out_zero_point=out_zero_point)
        return result if out is None else _copy_into(out, result, "quantized_linear")
    args = (x_q, x_scale, x_zero_point, packed, _out_features(packed, out_features, residual), gelu, residual,
            out_scale, out_zero_point)
    if out is None:
        return torch.ops.fastdistilbert.quantized_linear(*args)
    torch.ops.fastdistilbert.quantized_linear.out(*args, out=out)
    return out


def dynamic_quantized_linear(x: torch.Tensor, packed: torch.Tensor, *, gelu: bool = False,
                             residual: torch.Tensor | None = None, out_features: int | None = None,
                             out: torch.Tensor | None = None) -> torch.Tensor:
    """fp32 `x [K, T]` quantized per token on the fly (quantization.dynamic_activation_params), then
    `quantized_linear`; fp32 `[N, T]` out (into `out` when given, as `quantized_linear`'s; `out` may be `x`)."""
    if not warn_if_unavailable():
        result = R.dynamic_quantized_linear(x, packed, gelu=gelu, residual=residual)
        return result if out is None else _copy_into(out, result, "dynamic_quantized_linear")
    args = (x, packed, _out_features(packed, out_features, residual), gelu, residual)
    if out is None:
        return torch.ops.fastdistilbert.dynamic_quantized_linear(*args)
    torch.ops.fastdistilbert.dynamic_quantized_linear.out(*args, out=out)
    return out


def feed_forward_fm(x_q: torch.Tensor, x_scale: torch.Tensor, x_zero_point: torch.Tensor, packed1: torch.Tensor,
                    packed2: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
    """The encoder's feed-forward block in one op: `dynamic_quantized_linear(quantized_linear(x_q, x_scale,
    x_zero_point, packed1, gelu=True), packed2, residual=residual)`, bit-identical, computed per block of tokens
    so the `[ffn_dim, tokens]` intermediate never leaves the cache. `x_q [K, T]` uint8 per-token codes."""
    if not warn_if_unavailable():
        hidden = R.quantized_linear(x_q, x_scale, x_zero_point, packed1, gelu=True)
        return R.dynamic_quantized_linear(hidden, packed2, residual=residual)
    return torch.ops.fastdistilbert.feed_forward_fm(x_q, x_scale, x_zero_point, packed1, packed2, residual)


def feed_forward_block_fm(x_q: torch.Tensor, x_scale: torch.Tensor, x_zero_point: torch.Tensor, packed1: torch.Tensor,
                          packed2: torch.Tensor, residual: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor,
                          eps: float):
    """The feed-forward sublayer in one op: `layer_norm_quantize_fm(feed_forward_fm(...), gamma, beta, eps)` ->
    (h, codes, scale, zero point), bit-identical, the LayerNorm made on each block of tokens while it is cached."""
    if not warn_if_unavailable():
        return layer_norm_quantize_fm(feed_forward_fm(x_q, x_scale, x_zero_point, packed1, packed2, residual), gamma,
                                      beta, eps)
    return torch.ops.fastdistilbert.feed_forward_block_fm(x_q, x_scale, x_zero_point, packed1, packed2, residual,
                                                          gamma, beta, eps)


def quantize_per_token(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(uint8 codes [K, T], fp32 scale [T], int32 zero point [T]) of feature-major fp32 `x [K, T]`."""
    if not warn_if_unavailable():
        return R.quantize_per_token(x)
    return torch.ops.fastdistilbert.quantize_per_token(x)


def quantized_linear_accumulators(x_q: torch.Tensor, packed: torch.Tensor, isa: str = "",
                                  out_features: int | None = None) -> torch.Tensor:
    """Raw int32 accumulators `[N, T]` of one named kernel variant ("" = the active one), for exactness tests."""
    if not warn_if_unavailable():
        return R.quantized_linear_accumulators(x_q, packed)
    return torch.ops.fastdistilbert.quantized_linear_accumulators(
        x_q, packed, _out_features(packed, out_features, None), isa)


def layer_norm_fm(x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """LayerNorm of feature-major fp32 `x [K, T]` over its K features, `gamma` / `beta` `[K]`
    (== torch's layer_norm on `x.t()`, up to summation order)."""
    if not warn_if_unavailable():
        return R.layer_norm_fm(x, gamma, beta, eps)
    return torch.ops.fastdistilbert.layer_norm_fm(x, gamma, beta, eps)


def transpose_fm(x: torch.Tensor) -> torch.Tensor:
    """`x.t().contiguous()` of a contiguous fp32 `[A, B]` tensor, cache-blocked (the runtime's switch between the
    token-major and the feature-major layout)."""
    if not warn_if_unavailable():
        return x.t().contiguous()
    return torch.ops.fastdistilbert.transpose_fm(x)


def embeddings_fm(ids: torch.Tensor, positions: torch.Tensor, words: torch.Tensor, places: torch.Tensor,
                  gamma: torch.Tensor, beta: torch.Tensor, eps: float) -> torch.Tensor:
    """The embedding layer of the packed tokens, feature-major: LayerNorm(words[ids] + places[positions]) as
    `[dim, tokens]` (int64 `ids` / `positions` `[tokens]`, fp32 tables `[rows, dim]`), in one pass per token block
    (== torch's index_select, add, layer_norm and transpose, up to the LayerNorm's summation order)."""
    if not warn_if_unavailable():
        return R.embeddings_fm(ids, positions, words, places, gamma, beta, eps)
    return torch.ops.fastdistilbert.embeddings_fm(ids, positions, words, places, gamma, beta, eps)


def quantize_per_tensor(x: torch.Tensor, scale: float, zero_point: int) -> torch.Tensor:
    """uint8 codes of fp32 `x` with one static scale / zero point (quantization.quantize_activation), vectorized."""
    if not warn_if_unavailable():
        return Q.quantize_activation(x, torch.tensor(scale, dtype=torch.float32), torch.tensor(zero_point))
    return torch.ops.fastdistilbert.quantize_per_tensor_fm(x, scale, zero_point)


def layer_norm_quantize_fm(x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor, eps: float = 1e-12):
    """`layer_norm_fm(x)` and its per-token quantization in one pass: (y fp32 [K, T], uint8 codes [K, T],
    scale [T], zero point [T]), each exactly what `layer_norm_fm` and `quantize_per_token(y)` return."""
    if not warn_if_unavailable():
        y = R.layer_norm_fm(x, gamma, beta, eps)
        return (y, *R.quantize_per_token(y))
    return torch.ops.fastdistilbert.layer_norm_quantize_fm(x, gamma, beta, eps)


def attention_fm(qkv: torch.Tensor, lengths: list[int], n_heads: int, scaling: float) -> torch.Tensor:
    """Self-attention of packed sequences in the feature-major layout: `qkv [3*dim, tokens]` (Q, K, V rows;
    sequence i = the next `lengths[i]` token columns) -> context `[dim, tokens]`, softmax((Q^T K) * scaling)."""
    if not warn_if_unavailable():
        return R.attention_fm(qkv, lengths, n_heads, scaling)
    return torch.ops.fastdistilbert.attention_fm(qkv, list(lengths), n_heads, scaling)


def self_attention_fm(x_q: torch.Tensor, x_scale: torch.Tensor, x_zero_point: torch.Tensor, packed_qkv: torch.Tensor,
                      lengths: list[int], n_heads: int, scaling: float, *, dim: int | None = None) -> torch.Tensor:
    """QKV projection and attention in one op: `attention_fm(quantized_linear(x_q, x_scale, x_zero_point,
    packed_qkv), lengths, n_heads, scaling)`, bit-identical, one sequence at a time so its Q, K, V stay in cache.
    `dim` (the context's rows, a third of the packed weight's) is read from the packed header when not given."""
    if not warn_if_unavailable():
        return R.attention_fm(R.quantized_linear(x_q, x_scale, x_zero_point, packed_qkv), lengths, n_heads, scaling)
    dim = dim if dim is not None else _out_features(packed_qkv, None, None) // 3
    return torch.ops.fastdistilbert.self_attention_fm(x_q, x_scale, x_zero_point, packed_qkv, dim, list(lengths),
                                                      n_heads, scaling)


def attention_block_fm(x_q: torch.Tensor, x_scale: torch.Tensor, x_zero_point: torch.Tensor, packed_qkv: torch.Tensor,
                       packed_out: torch.Tensor, residual: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor,
                       eps: float, lengths: list[int], n_heads: int, scaling: float):
    """The attention sublayer in one op, for per-token codes: `layer_norm_quantize_fm(dynamic_quantized_linear(
    self_attention_fm(...), packed_out, residual=residual), gamma, beta, eps)` -> (h1, codes, scale, zero point),
    bit-identical, one sequence at a time so nothing in between leaves the cache."""
    if not warn_if_unavailable():
        ctx = self_attention_fm(x_q, x_scale, x_zero_point, packed_qkv, lengths, n_heads, scaling)
        return layer_norm_quantize_fm(R.dynamic_quantized_linear(ctx, packed_out, residual=residual), gamma, beta, eps)
    return torch.ops.fastdistilbert.attention_block_fm(x_q, x_scale, x_zero_point, packed_qkv, packed_out, residual,
                                                       gamma, beta, eps, residual.shape[0], list(lengths), n_heads,
                                                       scaling)


def attention_int8_fm(qkv: torch.Tensor, lengths: list[int], n_heads: int, scaling: float) -> torch.Tensor:
    """`attention_fm` with INT8 matmuls on the active kernel variant: Q and the probabilities quantized per query
    token (u8), K and V per key / per feature (s8 symmetric); softmax in fp32 (csrc/attention_int8.cpp)."""
    if not warn_if_unavailable():
        return R.attention_int8_fm(qkv, lengths, n_heads, scaling)
    return torch.ops.fastdistilbert.attention_int8_fm(qkv, list(lengths), n_heads, scaling)


def encoder_fm(h: torch.Tensor, packed: list[torch.Tensor], norms: list[torch.Tensor], eps: list[float],
               lengths: list[int], n_heads: int, scaling: float, int8_attention: bool = False,
               activation_params: torch.Tensor | None = None) -> torch.Tensor:
    """The whole encoder stack, depth first (csrc/encoder_fm.h): bit-identical to quantizing `h` per token, then for
    each layer i `attention_block_fm` with `packed[4i : 4i + 2]`, `norms[4i : 4i + 2]`, `eps[2i]` and
    `feed_forward_block_fm` with `packed[4i + 2 : 4i + 4]`, `norms[4i + 2 : 4i + 4]`, `eps[2i + 1]` (with
    `int8_attention`, the attention sublayer's matmuls run through `attention_int8_fm`). `activation_params`
    (`[4 * layers, 2]` float32: scale and zero point of the inputs of each layer's qkv, out, lin1 and lin2) gives
    static codes instead: each Linear quantizes its input with them (`quantize_per_tensor`). Each thread takes whole
    sequences through every layer while their activations stay in its cache."""
    if not warn_if_unavailable():
        return _encoder_layer_by_layer(h, packed, norms, eps, lengths, n_heads, scaling, int8_attention,
                                       activation_params)
    return torch.ops.fastdistilbert.encoder_fm(h, list(packed), list(norms), [float(e) for e in eps], list(lengths),
                                               n_heads, scaling, int8_attention, activation_params)


def _encoder_layer_by_layer(h, packed, norms, eps, lengths, n_heads, scaling, int8_attention, activation_params):
    """encoder_fm's reference order, op by op."""
    def linear(x, j, w, **kwargs):  # the j-th Linear (4 per layer), static codes
        scale, zero_point = (float(v) for v in activation_params[j])
        codes = quantize_per_tensor(x, scale, int(zero_point))
        return quantized_linear(codes, torch.tensor([scale]), torch.tensor([int(zero_point)], dtype=torch.int32), w,
                                **kwargs)

    if activation_params is not None:
        for i in range(len(packed) // 4):
            qkv = linear(h, 4 * i, packed[4 * i])
            ctx = (attention_int8_fm if int8_attention else attention_fm)(qkv, lengths, n_heads, scaling)
            h1 = layer_norm_fm(linear(ctx, 4 * i + 1, packed[4 * i + 1], residual=h), *norms[4 * i: 4 * i + 2],
                               eps[2 * i])
            f = linear(h1, 4 * i + 2, packed[4 * i + 2], gelu=True)
            h = layer_norm_fm(linear(f, 4 * i + 3, packed[4 * i + 3], residual=h1), *norms[4 * i + 2: 4 * i + 4],
                              eps[2 * i + 1])
        return h
    codes = quantize_per_token(h)
    for i in range(len(packed) // 4):
        norm1, norm2 = norms[4 * i: 4 * i + 2], norms[4 * i + 2: 4 * i + 4]
        if int8_attention:
            ctx = attention_int8_fm(quantized_linear(*codes, packed[4 * i]), lengths, n_heads, scaling)
            h1, *codes1 = layer_norm_quantize_fm(dynamic_quantized_linear(ctx, packed[4 * i + 1], residual=h),
                                                 *norm1, eps[2 * i])
        else:
            h1, *codes1 = attention_block_fm(*codes, packed[4 * i], packed[4 * i + 1], h, *norm1, eps[2 * i],
                                             lengths, n_heads, scaling)
        h, *codes = feed_forward_block_fm(*codes1, packed[4 * i + 2], packed[4 * i + 3], h1, *norm2, eps[2 * i + 1])
    return h


def last_isa() -> str:
    """The kernel variant that executed the most recent GEMM in this process ("" before any)."""
    return str(torch.ops.fastdistilbert.last_isa()) if EXTENSION_AVAILABLE else "torch-reference"


def peak_probe(iterations: int, isa: str = "") -> int:
    """Runs a tight loop of the variant's dot-product instruction on every thread; returns the MACs done."""
    if not EXTENSION_AVAILABLE:
        raise RuntimeError("peak_probe needs the C++ extension")
    return int(torch.ops.fastdistilbert.peak_probe(iterations, isa))


if EXTENSION_AVAILABLE:

    @torch.library.register_fake("fastdistilbert::quantized_linear")
    def _(x_q, x_scale, x_zero_point, packed, out_features, gelu=False, residual=None, out_scale=None,
          out_zero_point=None):
        dtype = torch.uint8 if out_scale is not None else torch.float32
        return x_q.new_empty((out_features, x_q.shape[1]), dtype=dtype)

    @torch.library.register_fake("fastdistilbert::dynamic_quantized_linear")
    def _(x, packed, out_features, gelu=False, residual=None):
        return x.new_empty((out_features, x.shape[1]), dtype=torch.float32)

    @torch.library.register_fake("fastdistilbert::quantized_linear.out")
    def _(x_q, x_scale, x_zero_point, packed, out_features, gelu=False, residual=None, out_scale=None,
          out_zero_point=None, *, out):
        return None

    @torch.library.register_fake("fastdistilbert::dynamic_quantized_linear.out")
    def _(x, packed, out_features, gelu=False, residual=None, *, out):
        return None

    @torch.library.register_fake("fastdistilbert::feed_forward_fm")
    def _(x_q, x_scale, x_zero_point, packed1, packed2, residual):
        return torch.empty_like(residual)

    def _normalized_with_codes(residual):  # (h, codes, scale, zero point) of a sublayer ending in LayerNorm
        return (torch.empty_like(residual), torch.empty_like(residual, dtype=torch.uint8),
                residual.new_empty((residual.shape[1],)), residual.new_empty((residual.shape[1],), dtype=torch.int32))

    @torch.library.register_fake("fastdistilbert::feed_forward_block_fm")
    def _(x_q, x_scale, x_zero_point, packed1, packed2, residual, gamma, beta, eps):
        return _normalized_with_codes(residual)

    @torch.library.register_fake("fastdistilbert::quantize_per_token")
    def _(x):
        return (x.new_empty(x.shape, dtype=torch.uint8), x.new_empty((x.shape[1],), dtype=torch.float32),
                x.new_empty((x.shape[1],), dtype=torch.int32))

    @torch.library.register_fake("fastdistilbert::quantize_per_tensor_fm")
    def _(x, scale, zero_point):
        return torch.empty_like(x, dtype=torch.uint8)

    @torch.library.register_fake("fastdistilbert::layer_norm_quantize_fm")
    def _(x, gamma, beta, eps):
        return (torch.empty_like(x), torch.empty_like(x, dtype=torch.uint8), x.new_empty((x.shape[1],)),
                x.new_empty((x.shape[1],), dtype=torch.int32))

    def _attention_context(qkv, lengths, n_heads, scaling):
        return qkv.new_empty((qkv.shape[0] // 3, qkv.shape[1]))

    for _name in ("attention_fm", "attention_int8_fm"):  # the same shape contract, fp32 or INT8 matmuls
        torch.library.register_fake(f"fastdistilbert::{_name}")(_attention_context)

    @torch.library.register_fake("fastdistilbert::self_attention_fm")
    def _(x_q, x_scale, x_zero_point, packed_qkv, dim, lengths, n_heads, scaling):
        return x_q.new_empty((dim, x_q.shape[1]), dtype=torch.float32)

    @torch.library.register_fake("fastdistilbert::attention_block_fm")
    def _(x_q, x_scale, x_zero_point, packed_qkv, packed_out, residual, gamma, beta, eps, dim, lengths, n_heads,
          scaling):
        return _normalized_with_codes(residual)

    @torch.library.register_fake("fastdistilbert::encoder_fm")
    def _(h, packed, norms, eps, lengths, n_heads, scaling, int8_attention=False, activation_params=None):
        return torch.empty_like(h)

    @torch.library.register_fake("fastdistilbert::layer_norm_fm")
    def _(x, gamma, beta, eps):
        return torch.empty_like(x)

    @torch.library.register_fake("fastdistilbert::transpose_fm")
    def _(x):
        return x.new_empty((x.shape[1], x.shape[0]))

    @torch.library.register_fake("fastdistilbert::embeddings_fm")
    def _(ids, positions, words, places, gamma, beta, eps):
        return words.new_empty((words.shape[1], ids.shape[0]))

    @torch.library.register_fake("fastdistilbert::quantized_linear_accumulators")
    def _(x_q, packed, out_features, isa=""):
        return x_q.new_empty((out_features, x_q.shape[1]), dtype=torch.int32)
