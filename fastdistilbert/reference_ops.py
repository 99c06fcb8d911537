"""Pure-PyTorch reference of every INT8 kernel op, with the kernels' exact integer and fp32 math.

Two roles: the model-level oracle in tests, and the fallback when the C++ extension is missing.
It also owns the packed-weight format writer (`pack_weight`), which needs no C++ at all; the
C++ side only reads and validates the buffer (csrc/packed_weight.h documents the byte layout).

Layout: activations are feature-major `[K, T]` (features x tokens), outputs `[N, T]`.
Epilogue, in this order, all fp32 (csrc/kernels.h):
    acc' = acc - x_zp[t] * wsum[n]               (int32)
    y = float(acc') * (x_scale[t] * w_scale[n])  (product of scales first)
    y = y + bias[n]                              (only when the packed weight has a bias)
    y = gelu(y) = y * fma(a, R(a^2) / S(a^2), 1/2), a = clamp(y, +-4 sqrt 2)  (optional; see gelu)
    y = y + residual[n, t]                       (optional)
    q = clamp(round(y * (1 / out_scale)) + out_zp, 0, 255) (optional, uint8 output)
"""
from __future__ import annotations

import struct

import torch

from . import quantization as Q

MAGIC = b"FDBWPACK"
FORMAT_VERSION = 1
HEADER_BYTES = 128
PATTERNS = {"dense": 0, "4x1": 1, "1x4": 2}
PATTERN_NAMES = {v: k for k, v in PATTERNS.items()}
FLAG_AMX_TILES = 2       # header flags bit 1: a dense weight's copy in the AMX tiles' blocks follows
AMX_BLOCK_ROWS = 32      # rows per block of that copy (csrc/kernels.h, kAmxBlockRows)
_HEADER = struct.Struct("<8sII" + "q" * 13 + "II")  # 128 bytes; see csrc/packed_weight.h

# GELU constants, bit-identical to csrc/erf_constants.h (hex = exact float32 values; made by csrc/erf_fit.py).
_GELU_CLAMP = float.fromhex("0x1.6a09e6p+2")
_GELU_R = [float.fromhex(h) for h in ("0x1.98844ep-2", "0x1.1c2f54p-5", "0x1.35b5bcp-8", "0x1.7307a8p-13",
                                      "0x1.ab2270p-18", "0x1.76dfcap-26")]  # u^0 .. u^5
_GELU_S = [float.fromhex(h) for h in ("0x1p+0", "0x1.03b574p-2", "0x1.dd124cp-6", "0x1.fa0eb0p-10", "0x1.3ed6f2p-14",
                                      "0x1.3a6c4ap-20")]
_LOG2E = float.fromhex("0x1.715476p+0")
_EXP2_CODES = [float.fromhex(h) for h in ("0x1.fdf6a0p+7", "0x1.619026p+7", "0x1.eeec74p+5", "0x1.c231e8p+3")]


def _fnv1a(data: bytes) -> int:
    h = 2166136261
    for byte in data:
        h = ((h ^ byte) * 16777619) & 0xFFFFFFFF
    return h


def _ceil4(n: int) -> int:
    return (n + 3) // 4 * 4


def _check_weight(weight_q: torch.Tensor, weight_scale: torch.Tensor, bias: torch.Tensor | None, pattern: str) -> None:
    if pattern not in PATTERNS:
        raise ValueError(f"pack_weight: unknown pattern {pattern!r} (expected one of {sorted(PATTERNS)})")
    if weight_q.dtype != torch.int8 or weight_q.dim() != 2 or 0 in weight_q.shape:
        raise ValueError(f"pack_weight: weight_q must be a non-empty 2-D int8 tensor [out, in], got {weight_q.dtype} "
                         f"{tuple(weight_q.shape)}")
    if bool((weight_q == -128).any()):
        raise ValueError("pack_weight: weight_q contains -128; weights are symmetric in [-127, 127] (quantization.py)")
    n = weight_q.shape[0]
    if weight_scale.dtype != torch.float32 or tuple(weight_scale.shape) != (n,):
        raise ValueError(f"pack_weight: weight_scale must be float32 [{n}], got {weight_scale.dtype} {tuple(weight_scale.shape)}")
    if not bool((torch.isfinite(weight_scale) & (weight_scale > 0)).all()):
        raise ValueError("pack_weight: weight_scale must be finite and positive in every channel")
    if bias is not None and (bias.dtype != torch.float32 or tuple(bias.shape) != (n,)):
        raise ValueError(f"pack_weight: bias must be float32 [{n}] or None, got {bias.dtype} {tuple(bias.shape)}")


def _bytes(t: torch.Tensor) -> torch.Tensor:
    return t.contiguous().view(-1).view(torch.uint8)


def _sparse_sections(wp: torch.Tensor, pattern: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """(pointers, indices, weight dwords, nonzero blocks) of a padded int8 weight [Np, Kp]."""
    Np, Kp = wp.shape
    if pattern == "1x4":
        blocks = wp.view(Np, Kp // 4, 4)
        nz = blocks.ne(0).any(-1)                                        # [Np, Kp/4]
        ptr = torch.zeros(Np + 1, dtype=torch.int32)
        ptr[1:] = nz.sum(1).cumsum(0)
        kgrp = nz.nonzero()[:, 1].to(torch.int32)
        words = blocks[nz].contiguous().view(torch.int32).view(-1)
        return ptr, kgrp, words, int(kgrp.numel())
    # 4x1: per group of 4 rows, nonzero input columns, in quads (short quads padded with k = 0, weight 0).
    G = Np // 4
    groups = wp.view(G, 4, Kp)
    nz = groups.ne(0).any(1)                                             # [G, Kp]
    counts = nz.sum(1)
    quads = (counts + 3) // 4
    ptr = torch.zeros(G + 1, dtype=torch.int32)
    ptr[1:] = quads.cumsum(0)
    n_slots = int(ptr[-1]) * 4
    g_idx, k_idx = nz.nonzero(as_tuple=True)
    first_block = torch.zeros(G, dtype=torch.int64)
    first_block[1:] = counts.cumsum(0)[:-1]
    slot = ptr[g_idx].to(torch.int64) * 4 + (torch.arange(g_idx.numel()) - first_block[g_idx])
    kidx = torch.zeros(n_slots, dtype=torch.int32)
    kidx[slot] = k_idx.to(torch.int32)
    wbytes = torch.zeros(n_slots // 4, 4, 4, dtype=torch.int8)          # [quad, row, position]
    wbytes[slot // 4, :, slot % 4] = groups[g_idx, :, k_idx]
    return ptr, kidx, wbytes.view(torch.int32).view(-1), int(g_idx.numel())


def amx_tile_features(K: int) -> int:
    """Features of a dense weight that the AMX tile copy holds: Kp rounded down to a multiple of 64."""
    return _ceil4(K) // 64 * 64


def pack_weight(weight_q: torch.Tensor, weight_scale: torch.Tensor, bias: torch.Tensor | None, pattern: str,
                amx_tiles: bool = False) -> torch.Tensor:
    """Self-describing uint8 buffer of an int8 weight `[N, K]` in `pattern` ("dense", "4x1" or "1x4").

    `amx_tiles` (dense only) adds a copy of the weight in blocks the amx variant loads into its tiles as they are
    (csrc/packed_weight.h); without it that variant rearranges the weight on every call. Ignored when K, padded to
    a multiple of 4, is below 64 (no whole tile)."""
    _check_weight(weight_q, weight_scale, bias, pattern)
    if amx_tiles and pattern != "dense":
        raise ValueError(f"amx_tiles applies to dense weights only, not to the {pattern!r} pattern")
    N, K = weight_q.shape
    Np, Kp = _ceil4(N), _ceil4(K)
    wp = torch.zeros(Np, Kp, dtype=torch.int8)
    wp[:N, :K] = weight_q
    pad = lambda v, fill: torch.cat([v.to(torch.float32), torch.full((Np - N,), fill, dtype=torch.float32)])  # noqa: E731
    sections = [pad(weight_scale, 1.0), pad(bias if bias is not None else torch.zeros(N), 0.0),
                wp.to(torch.int32).sum(1).to(torch.int32)]
    if pattern == "dense":
        ptr = idx = None
        words = wp.view(Np // 4, 4, Kp // 4, 4).permute(0, 2, 1, 3).contiguous()
        nnz, n_stored = (Np // 4) * (Kp // 4), Np * Kp // 4
    else:
        ptr, idx, words, nnz = _sparse_sections(wp, pattern)
        n_stored = words.numel()
    K64 = amx_tile_features(K)
    amx = None
    if amx_tiles and K64 > 0:
        # [row block][64-feature step][32 rows][64]: each block-step is two contiguous 16 x 64 tiles.
        blocks = -(-Np // AMX_BLOCK_ROWS)
        amx = torch.zeros(blocks * AMX_BLOCK_ROWS, K64, dtype=torch.int8)
        amx[:Np] = wp[:, :K64]
        amx = amx.view(blocks, AMX_BLOCK_ROWS, K64 // 64, 64).permute(0, 2, 1, 3).contiguous()
    sections += [ptr, idx, words, amx]
    offsets, chunks, pos = [], [], HEADER_BYTES
    for s in sections:
        if s is None:
            offsets.append(0)
            continue
        offsets.append(pos)
        data = _bytes(s)
        chunks.append(torch.cat([data, torch.zeros((-data.numel()) % 64, dtype=torch.uint8)]))
        pos += chunks[-1].numel()
    flags = int(bias is not None) | (FLAG_AMX_TILES if amx is not None else 0)
    fields = [MAGIC, FORMAT_VERSION, PATTERNS[pattern], N, K, nnz, n_stored, flags, pos, *offsets, 0]
    header = _HEADER.pack(*fields, 0)
    header = header[:124] + struct.pack("<I", _fnv1a(header[:124]))
    return torch.cat([torch.frombuffer(bytearray(header), dtype=torch.uint8), *chunks])


def packed_info(packed: torch.Tensor) -> dict:
    """Header of a packed weight as a dict; raises ValueError naming the problem if it is not one."""
    if packed.dtype != torch.uint8 or packed.dim() != 1:
        raise ValueError(f"packed weight must be a 1-D uint8 tensor, got {packed.dtype} {tuple(packed.shape)}")
    if packed.numel() < HEADER_BYTES:
        raise ValueError(f"packed weight is corrupt ({packed.numel()} bytes, shorter than its header)")
    raw = bytes(packed[:HEADER_BYTES].tolist())
    f = _HEADER.unpack(raw)
    if f[0] != MAGIC:
        raise ValueError("packed weight is corrupt (bad magic; not a packed weight?)")
    if f[1] != FORMAT_VERSION:
        raise ValueError(f"packed weight has format version {f[1]} but this version reads {FORMAT_VERSION}; re-pack it")
    if f[-1] != _fnv1a(raw[:124]):
        raise ValueError("packed weight is corrupt (header checksum mismatch)")
    if f[2] not in PATTERN_NAMES or f[8] != packed.numel():
        raise ValueError("packed weight is corrupt (pattern or size)")
    names = ["N", "K", "nnz_blocks", "n_stored", "flags", "total_bytes", "off_scale", "off_bias", "off_wsum",
             "off_ptr", "off_idx", "off_w", "off_amx_tiles"]
    info = dict(zip(names, f[3:16]))
    info.update(magic=f[0].decode(), version=f[1], pattern=PATTERN_NAMES[f[2]], has_bias=bool(info["flags"] & 1),
                has_amx_tiles=bool(info["flags"] & FLAG_AMX_TILES))
    Np, Kp = _ceil4(info["N"]), _ceil4(info["K"])
    blocks_total = Np * Kp // 4
    info["block_density"] = info["nnz_blocks"] / blocks_total if info["pattern"] != "dense" else 1.0
    return info


def _section(packed: torch.Tensor, offset: int, count: int, dtype: torch.dtype) -> torch.Tensor:
    size = torch.empty((), dtype=dtype).element_size()
    return packed[offset:offset + count * size].view(dtype)


def _owner(ptr: torch.Tensor, count: int) -> torch.Tensor:
    """Index i of the pointer interval [ptr[i], ptr[i+1]) that holds each of 0 .. count-1."""
    return torch.searchsorted(ptr[1:], torch.arange(count), right=True)


def unpack_weight(packed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, str]:
    """(weight_q int8 [N, K], weight_scale [N], bias [N] or None, pattern) of a packed weight."""
    info = packed_info(packed)
    N, K, pattern = info["N"], info["K"], info["pattern"]
    Np, Kp = _ceil4(N), _ceil4(K)
    scale = _section(packed, info["off_scale"], Np, torch.float32)[:N].clone()
    bias = _section(packed, info["off_bias"], Np, torch.float32)[:N].clone() if info["has_bias"] else None
    n_stored = info["n_stored"]
    if pattern == "dense":
        tiles = _section(packed, info["off_w"], Np * Kp, torch.int8).view(Np // 4, Kp // 4, 4, 4)
        wp = tiles.permute(0, 2, 1, 3).reshape(Np, Kp)
    else:
        nptr = Np // 4 + 1 if pattern == "4x1" else Np + 1
        ptr = _section(packed, info["off_ptr"], nptr, torch.int32).to(torch.int64)
        idx = _section(packed, info["off_idx"], n_stored, torch.int32).to(torch.int64)
        words = _section(packed, info["off_w"], n_stored, torch.int32).contiguous().view(torch.int8)
        wp = torch.zeros(Np, Kp, dtype=torch.int8)
        if pattern == "1x4":
            rows = _owner(ptr, n_stored)
            wp.view(Np, Kp // 4, 4)[rows, idx] = words.view(-1, 4)
        else:
            quad_group = _owner(ptr, n_stored // 4)
            w = words.view(-1, 4, 4)                                     # [quad, row, position]
            for pos in range(4):                                          # padded slots carry weight 0
                k = idx.view(-1, 4)[:, pos]
                for r in range(4):
                    wp.index_put_((quad_group * 4 + r, k), w[:, r, pos], accumulate=True)
    return wp[:N, :K].contiguous(), scale, bias, pattern


def block_densities(weight: torch.Tensor) -> dict[str, float]:
    """Fraction of nonzero blocks of each pattern ("dense" = fraction of nonzero elements), zero-padded to 4."""
    N, K = weight.shape
    wp = torch.zeros(_ceil4(N), _ceil4(K), dtype=torch.bool)
    wp[:N, :K] = weight.ne(0)
    Np, Kp = wp.shape
    return {
        "dense": float(weight.ne(0).float().mean()),
        "4x1": float(wp.view(Np // 4, 4, Kp).any(1).float().mean()),
        "1x4": float(wp.view(Np, Kp // 4, 4).any(-1).float().mean()),
    }


def _check_x(x: torch.Tensor, K: int, op: str) -> None:
    if x.dim() != 2 or x.shape[0] != K:
        raise ValueError(f"{op}: activations must be feature-major [{K}, tokens], got {tuple(x.shape)}")


def quantized_linear_accumulators(x_q: torch.Tensor, packed: torch.Tensor) -> torch.Tensor:
    """int32 `W_q @ x_q` (`[N, T]`), exact: partial sums of u8 x s8 products stay below 2**53 in float64."""
    weight_q, _, _, _ = unpack_weight(packed)
    _check_x(x_q, weight_q.shape[1], "quantized_linear_accumulators")
    return torch.matmul(weight_q.to(torch.float64), x_q.to(torch.float64)).to(torch.int32)


def _exp_codes(d: torch.Tensor) -> torch.Tensor:
    """255 exp(d) for d in [-16, 0] (csrc: exp_codes, erf_constants.h's kExp2Codes): 255 * 2^f by a cubic."""
    x = d * _LOG2E
    n = torch.round(x)
    f = x - n
    e = torch.full_like(d, _EXP2_CODES[3])
    for c in reversed(_EXP2_CODES[:3]):
        e = fma32(e, f, c)
    scale = torch.bitwise_left_shift(n.to(torch.int32) + 127, 23).view(torch.float32)
    return e * scale


def fma32(a: torch.Tensor, b: torch.Tensor, c: float) -> torch.Tensor:
    """float32 a * b + c rounded once, as a fused multiply-add (torch has none): the product is exact in float64,
    the sum is rounded to odd there (the float64 sum, moved one ulp toward the exact value when it is inexact and
    even), and rounding that to float32 equals one rounding of the exact result because 53 >= 24 + 2 bits."""
    p = a.double() * b.double()
    s = p + c
    back = s - p
    err = (p - (s - back)) + (c - back)  # exact: p + c == s + err (TwoSum)
    bits = s.view(torch.int64)
    step = torch.where((err > 0) == (s > 0), 1, -1)  # one ulp toward s + err
    bits = torch.where((err != 0) & (bits & 1 == 0), bits + step, bits)
    return bits.view(torch.float64).float()


def gelu(y: torch.Tensor) -> torch.Tensor:
    """DistilBERT's exact-erf GELU as the kernels compute it (csrc/erf_constants.h): y * Phi(y) with Phi a rational
    approximation, the same fp32 operations in the same order."""
    a = torch.clamp(y, -_GELU_CLAMP, _GELU_CLAMP)
    u = a * a
    r, s = torch.full_like(a, _GELU_R[5]), torch.full_like(a, _GELU_S[5])
    for i in range(4, -1, -1):
        r = fma32(r, u, _GELU_R[i])
        s = fma32(s, u, _GELU_S[i])
    return y * fma32(a, r / s, 0.5)


def _per_token(v: torch.Tensor, T: int) -> torch.Tensor:
    return v.reshape(-1).expand(T)


def epilogue(acc: torch.Tensor, x_scale: torch.Tensor, x_zero_point: torch.Tensor, packed: torch.Tensor, *,
             gelu_: bool = False, residual: torch.Tensor | None = None, out_scale: float | None = None,
             out_zero_point: int | None = None) -> torch.Tensor:
    weight_q, w_scale, bias, _ = unpack_weight(packed)
    T = acc.shape[1]
    wsum = weight_q.to(torch.int32).sum(1)
    a = acc - _per_token(x_zero_point.to(torch.int32), T)[None, :] * wsum[:, None]
    y = a.to(torch.float32) * (_per_token(x_scale.to(torch.float32), T)[None, :] * w_scale[:, None])
    if bias is not None:
        y = y + bias[:, None]
    if gelu_:
        y = gelu(y)
    if residual is not None:
        y = y + residual
    if out_scale is None:
        return y
    q = torch.round(y * Q.reciprocal(torch.tensor(out_scale, dtype=torch.float32))) + float(out_zero_point or 0)
    return torch.clamp(q, 0, 255).to(torch.uint8)


def quantized_linear(x_q, x_scale, x_zero_point, packed, *, gelu=False, residual=None, out_scale=None,
                     out_zero_point=None):
    if x_q.dtype == torch.int8:  # s8 codes: exact shift to u8 with zero point 128
        if bool(x_zero_point.ne(0).any()):
            raise ValueError("quantized_linear: int8 activations need zero point 0")
        x_q = (x_q.to(torch.int16) + 128).to(torch.uint8)
        x_zero_point = torch.full_like(x_zero_point, 128)
    acc = quantized_linear_accumulators(x_q, packed)
    return epilogue(acc, x_scale, x_zero_point, packed, gelu_=gelu, residual=residual, out_scale=out_scale,
                    out_zero_point=out_zero_point)


def quantize_per_token(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(u8 codes [K, T], scale [T], zero point [T]) of feature-major fp32 `x`, per token (column)."""
    xt = x.to(torch.float32).t()
    scale, zero_point = Q.dynamic_activation_params(xt)
    return Q.quantize_activation(xt, scale, zero_point).t().contiguous(), scale, zero_point


def dynamic_quantized_linear(x, packed, *, gelu=False, residual=None):
    x_q, scale, zero_point = quantize_per_token(x)
    return quantized_linear(x_q, scale, zero_point, packed, gelu=gelu, residual=residual)


def layer_norm_fm(x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor, eps: float) -> torch.Tensor:
    """LayerNorm of feature-major `x [K, T]` over its K features (each token normalized on its own)."""
    return torch.nn.functional.layer_norm(x.t(), (x.shape[0],), gamma, beta, eps).t().contiguous()


def embeddings_fm(ids: torch.Tensor, positions: torch.Tensor, words: torch.Tensor, places: torch.Tensor,
                  gamma: torch.Tensor, beta: torch.Tensor, eps: float) -> torch.Tensor:
    """LayerNorm(words[ids] + places[positions]) as feature-major `[dim, tokens]`."""
    h = words.index_select(0, ids) + places.index_select(0, positions)
    return torch.nn.functional.layer_norm(h, (h.shape[1],), gamma, beta, eps).t().contiguous()


def _per_sequence_and_head(qkv: torch.Tensor, lengths: list[int], n_heads: int, attend) -> torch.Tensor:
    """`attend(q, k, v) -> [head_dim, n]` on each (sequence, head) block of packed feature-major `qkv`."""
    dim = qkv.shape[0] // 3
    head = dim // n_heads
    out = torch.empty(dim, qkv.shape[1], dtype=qkv.dtype)
    first = 0
    for n in lengths:
        cols = slice(first, first + n)
        for h in range(n_heads if n else 0):
            q, k, v = (qkv[part * dim + h * head: part * dim + (h + 1) * head, cols] for part in range(3))
            out[h * head:(h + 1) * head, cols] = attend(q, k, v)
        first += n
    return out


def attention_fm(qkv: torch.Tensor, lengths: list[int], n_heads: int, scaling: float) -> torch.Tensor:
    """Self-attention of packed feature-major Q, K, V rows `[3*dim, tokens]`, one sequence and head at a time."""
    return _per_sequence_and_head(qkv, lengths, n_heads,
                                  lambda q, k, v: v @ torch.softmax((q.t() @ k) * scaling, dim=-1).t())


def _symmetric_rows(w: torch.Tensor, extra_scale: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """int8 codes and fp32 scale per row of fp32 `w [N, K]`, as the INT8 attention quantizes K^T and V."""
    amax = w.abs().amax(dim=1)
    inv = torch.where(amax > 0, torch.tensor(127.0) / amax, torch.ones_like(amax))
    scale = torch.where(amax > 0, amax / 127.0, torch.ones_like(amax)) * torch.tensor(extra_scale, dtype=torch.float32)
    return torch.clamp(torch.round(w * inv[:, None]), -127, 127).to(torch.int32), scale


def _int8_matmul(codes_w: torch.Tensor, w_scale: torch.Tensor, x_q: torch.Tensor, x_scale: torch.Tensor,
                 x_zp: torch.Tensor) -> torch.Tensor:
    """The kernels' epilogue without bias: (acc - x_zp * wsum) * (x_scale * w_scale). The accumulators are exact in
    float64 (|u8 x s8| < 2^15 per product, sums over at most 2^20 products stay below 2^53), which is a BLAS GEMM
    rather than torch's slow int64 matmul."""
    acc = codes_w.to(torch.float64) @ x_q.to(torch.float64)
    a = (acc - x_zp.to(torch.float64)[None, :] * codes_w.sum(1, dtype=torch.int64).to(torch.float64)[:, None])
    return a.to(torch.int32).to(torch.float32) * (x_scale[None, :] * w_scale[:, None])


def softmax_codes(s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(u8 codes, int32 column sums): the kernels' softmax over the rows of `s [rows, cols]` as codes
    rne(255 exp(max(s - column max, -16))); probabilities are codes / sums."""
    d = torch.clamp(s - s.max(dim=0).values, min=-16.0)
    codes = torch.round(_exp_codes(d)).to(torch.int32)
    return codes.to(torch.uint8), codes.sum(dim=0, dtype=torch.int32)


def attention_int8_head(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scaling: float):
    """One head of one sequence through csrc/attention_int8.cpp's steps: feature-major `q, k, v [head_dim, n]` ->
    (context `[head_dim, n]`, bit-identical to the kernels; probabilities `[n queries, n keys]`, codes / sums)."""
    q_codes, q_scale, q_zp = quantize_per_token(q.contiguous())
    k_codes, k_scale = _symmetric_rows(k.t(), scaling)
    p_codes, p_sums = softmax_codes(_int8_matmul(k_codes, k_scale, q_codes, q_scale, q_zp))
    p_scale, p_zp = torch.ones(p_sums.shape) / p_sums.to(torch.float32), torch.zeros_like(p_sums)
    v_codes, v_scale = _symmetric_rows(v)
    probs = (p_codes.to(torch.float32) * p_scale[None, :]).t()
    return _int8_matmul(v_codes, v_scale, p_codes, p_scale, p_zp), probs


def attention_int8_fm(qkv: torch.Tensor, lengths: list[int], n_heads: int, scaling: float) -> torch.Tensor:
    """csrc/attention_int8.cpp step by step (one sequence and head at a time); bit-identical to it."""
    return _per_sequence_and_head(qkv, lengths, n_heads, lambda q, k, v: attention_int8_head(q, k, v, scaling)[0])
