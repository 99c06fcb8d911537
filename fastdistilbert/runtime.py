"""The fast INT8 forward of a quantized FastDistilBertModel.

Layout: tokens of all sequences are packed (padding is never computed) and activations are FEATURE-MAJOR,
`[features, tokens]`, the layout of the kernels in csrc/ (they compute Y^T = W X^T so block sparsity lives in
weight rows and SIMD lanes run over tokens). The encoder is entered with one transpose after the embeddings and
left with one scatter; in between, every Linear is a fused INT8 op:

    qkv  = linear(h, W_qkv)                      fused Q, K and V projections
    attn = softmax(Q^T K * scale) per sequence and head (fp32 FMA kernel: csrc/attention_head.inc, or INT8 matmuls:
                                                     csrc/attention_int8.cpp with config.int8_attention)
    h1   = LayerNorm(linear(attn, W_out) + h)    residual fused into the epilogue
    ff   = linear(h1, W_lin1, gelu)              GELU fused into the epilogue
    h    = LayerNorm(linear(ff, W_lin2) + h1)    residual fused into the epilogue

The whole stack is one op (csrc/encoder_fm.h, fp32 or INT8 attention, per-token or static activation scales):
each thread takes whole sequences through every layer in panels that stay in its cache (when whole sequences
cannot keep every thread busy, it runs the layer ops below, which split rows across threads). Layer by layer, with
fp32 attention, the first three lines run as one op, sequence by sequence (csrc/self_attention_fm.cpp), and the
last two (with the LayerNorm) as one op, 64 tokens at a time (csrc/feed_forward_fm.cpp), so the intermediates
between them stay in the cache. Every fused op gives the bits of the unfused kernels.

Position ids follow HF: a token's position is its column in the padded input, whatever the padding side.
Hidden states at padding positions are returned as zeros.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch



@dataclass
class LinearKernel:
    """One packed INT8 Linear; `input_scale`/`input_zero_point` are set for static activation quantization."""

    packed: torch.Tensor
    pattern: str
    block_density: float
    input_scale: torch.Tensor | None = None
    input_zero_point: torch.Tensor | None = None

    def __call__(self, x: torch.Tensor, *, gelu: bool = False, residual: torch.Tensor | None = None,
                 x_codes: tuple | None = None) -> torch.Tensor:
        """`x_codes`: (codes, scale, zero point) of `x` as this kernel quantizes it, when the previous op made them."""
        from . import ops

        if self.input_scale is None and x_codes is None:
            return ops.dynamic_quantized_linear(x, self.packed, gelu=gelu, residual=residual)
        return ops.quantized_linear(*self.input_codes(x, x_codes), self.packed, gelu=gelu, residual=residual)

    def input_codes(self, x: torch.Tensor, x_codes: tuple | None = None) -> tuple:
        """(codes, scale, zero point) of `x` exactly as this kernel quantizes its input (per token, or with the
        static per-tensor parameters); `x_codes` when the caller already has them."""
        from . import ops

        if x_codes is not None:
            return x_codes
        if self.input_scale is None:
            return ops.quantize_per_token(x)
        return (ops.quantize_per_tensor(x, float(self.input_scale), int(self.input_zero_point)),
                self.input_scale.reshape(1), self.input_zero_point.reshape(1))


def pack_linears(modules) -> LinearKernel:
    """Packs one or several QuantizedLinears sharing an input (Q, K, V) as one kernel with stacked output rows."""
    from . import ops

    weight = torch.cat([m.weight for m in modules]) if len(modules) > 1 else modules[0].weight
    scale = torch.cat([m.weight_scale for m in modules])
    bias = torch.cat([m.bias.detach() for m in modules])
    info = ops.detect_pattern(weight)
    first = modules[0]
    if first.static_activations and any(
        not (torch.equal(m.input_scale, first.input_scale) and torch.equal(m.input_zero_point, first.input_zero_point))
        for m in modules[1:]
    ):
        raise ValueError("Linears fused into one kernel must share their static input quantization parameters")
    return LinearKernel(ops.pack_weight(weight.contiguous(), scale, bias, info.pattern), info.pattern,
                        info.block_density, first.input_scale, first.input_zero_point)


@dataclass
class LayerKernels:
    qkv: LinearKernel
    out: LinearKernel
    lin1: LinearKernel
    lin2: LinearKernel

    def self_attention(self, h: torch.Tensor, h_codes: tuple | None, lengths: list[int], n_heads: int,
                       scaling: float) -> torch.Tensor:
        """Attention context of h: QKV projection and fp32 attention as one op (csrc/self_attention_fm.cpp)."""
        from . import ops

        return ops.self_attention_fm(*self.qkv.input_codes(h, h_codes), self.qkv.packed, lengths, n_heads, scaling,
                                     dim=h.shape[0])

    def attention_block(self, h: torch.Tensor, h_codes: tuple | None, norm: torch.nn.LayerNorm, lengths: list[int],
                        n_heads: int, scaling: float) -> tuple:
        """(h1, its codes for lin1 or None): h1 = LayerNorm(out(attention(qkv(h))) + h). One op, sequence by
        sequence (csrc/self_attention_fm.cpp), when out and lin1 both quantize their inputs per token."""
        from . import ops

        if self.out.input_scale is None and self.lin1.input_scale is None:
            h1, *codes = ops.attention_block_fm(*self.qkv.input_codes(h, h_codes), self.qkv.packed, self.out.packed, h,
                                                norm.weight.detach(), norm.bias.detach(), norm.eps, lengths, n_heads,
                                                scaling)
            return h1, tuple(codes)
        ctx = self.self_attention(h, h_codes, lengths, n_heads, scaling)
        return layer_norm_feature_major(self.out(ctx, residual=h), norm, self.lin1)

    def feed_forward(self, h1: torch.Tensor, h1_codes: tuple | None) -> torch.Tensor:
        """lin2(GELU(lin1(h1))) + h1: one fused op (csrc/feed_forward_fm.cpp) when both Linears quantize their
        input per token, else the two kernels."""
        from . import ops

        if h1_codes is not None and self.lin2.input_scale is None:
            return ops.feed_forward_fm(*h1_codes, self.lin1.packed, self.lin2.packed, h1)
        return self.lin2(self.lin1(h1, gelu=True, x_codes=h1_codes), residual=h1)

    def feed_forward_block(self, h1: torch.Tensor, h1_codes: tuple | None, norm: torch.nn.LayerNorm,
                           consumer: LinearKernel | None) -> tuple:
        """(h, its codes for `consumer` or None): h = LayerNorm(lin2(GELU(lin1(h1))) + h1). One op, 64 tokens at a
        time (csrc/feed_forward_fm.cpp), when lin2 and the consumer (if any: the last layer has none, and its
        codes are dropped) both quantize their inputs per token."""
        from . import ops

        if (h1_codes is not None and self.lin2.input_scale is None
                and (consumer is None or consumer.input_scale is None)):
            h, *codes = ops.feed_forward_block_fm(*h1_codes, self.lin1.packed, self.lin2.packed, h1,
                                                  norm.weight.detach(), norm.bias.detach(), norm.eps)
            return h, (tuple(codes) if consumer is not None else None)
        return layer_norm_feature_major(self.feed_forward(h1, h1_codes), norm, consumer)


def build_kernels(model) -> list[LayerKernels]:
    layers = []
    # Normal tensors even when the first forward runs under inference_mode: the ops check a packed buffer's
    # indices once per version (csrc/packed_weight.cpp), and inference tensors have no version, so they would
    # be checked on every call.
    with torch.inference_mode(False):
        for block in model.transformer.layer:
            att, ffn = block.attention, block.ffn
            layers.append(LayerKernels(qkv=pack_linears([att.q_lin, att.k_lin, att.v_lin]),
                                       out=pack_linears([att.out_lin]), lin1=pack_linears([ffn.lin1]),
                                       lin2=pack_linears([ffn.lin2])))
    return layers


def weights_version(model) -> tuple:
    """Changes whenever any quantized tensor or LayerNorm of the encoder is modified in place or replaced (then the
    kernels, and the whole-encoder arguments cached with them, are rebuilt)."""
    key = []
    # The module and tensor dicts directly: nn.Module attribute lookups made this three times slower (it runs on
    # every forward: 8 us per layer instead of 20, LayerNorms included).
    for block in model._modules["transformer"]._modules["layer"]._modules.values():
        parts = block._modules
        att, ffn = parts["attention"]._modules, parts["ffn"]._modules
        for m in (att["q_lin"], att["k_lin"], att["v_lin"], att["out_lin"], ffn["lin1"], ffn["lin2"],
                  parts["sa_layer_norm"], parts["output_layer_norm"]):
            for tensors in (m._parameters, m._buffers):
                for t in tensors.values():
                    if t is not None:
                        key.append((t.data_ptr(), t._version))
        key += [parts["sa_layer_norm"].eps, parts["output_layer_norm"].eps]
    return tuple(key)


def layer_norm_feature_major(x: torch.Tensor, norm: torch.nn.LayerNorm, consumer: LinearKernel | None = None):
    """(LayerNorm over the feature dimension (dim 0) of `[features, tokens]`, its per-token INT8 codes or None).

    The codes are made in the same pass when the `consumer` kernel quantizes its input dynamically per token."""
    from . import ops

    weight, bias = norm.weight.detach(), norm.bias.detach()
    if consumer is not None and consumer.input_scale is None:
        y, *codes = ops.layer_norm_quantize_fm(x, weight, bias, norm.eps)
        return y, tuple(codes)
    return ops.layer_norm_fm(x, weight, bias, norm.eps), None


def cached_whole_encoder_arguments(model, kernels: list[LayerKernels]) -> tuple | None:
    """whole_encoder_arguments of the model with these kernels, made once per kernel build: rebuilding them cost
    about 80 us per forward (int8_kernels rebuilds the kernels, a new list, when a LayerNorm changes too)."""
    cached = getattr(model, "_whole_encoder_cache", None)
    if cached is None or cached[0] is not kernels:
        # Outside inference mode, like the kernels: the cached tensors serve later calls in any mode.
        with torch.inference_mode(False):
            cached = (kernels, whole_encoder_arguments(model, list(zip(model.transformer.layer, kernels))))
        model._whole_encoder_cache = cached  # one assignment: threads sharing the model see old or new, whole
    return cached[1]


def whole_encoder_arguments(model, layers: list[tuple]) -> tuple | None:
    """(packed, norms, eps, activation_params) of `ops.encoder_fm` for the (block, LayerKernels) pairs
    (activation_params: None for per-token codes, the static scales and zero points of a calibrated model), or None
    when the model needs the layer-by-layer path: some Linears with static input scales and some without."""
    packed, norms, eps, params = [], [], [], []
    for block, kernels in layers:
        linears = (kernels.qkv, kernels.out, kernels.lin1, kernels.lin2)
        packed += [kernel.packed for kernel in linears]
        params += [(kernel.input_scale, kernel.input_zero_point) for kernel in linears if kernel.input_scale is not None]
        for norm in (block.sa_layer_norm, block.output_layer_norm):
            norms += [norm.weight.detach(), norm.bias.detach()]
            eps.append(norm.eps)
    if not params:
        return packed, norms, eps, None
    if len(params) != len(packed):
        return None
    return packed, norms, eps, torch.tensor([[float(scale), float(zero_point)] for scale, zero_point in params])


def packed_tokens(attention_mask: torch.Tensor | None, batch: int, seq: int) -> tuple:
    """(flat indices of the real tokens in row-major order, or None when no token is padding; per-sequence
    lengths). The mask (None: no padding) holds only 0 and 1, as the forward checked."""
    if attention_mask is None:
        return None, [seq] * batch
    lengths = [int(n) for n in attention_mask.sum(dim=1).tolist()]
    if sum(lengths) == batch * seq:
        return None, lengths
    return attention_mask.reshape(-1).nonzero().squeeze(1), lengths


def encoder_layers(h: torch.Tensor, layers: list[tuple], lengths: list[int], n_heads: int, scaling: float,
                   int8_attention: bool) -> torch.Tensor:
    """The encoder layer by layer on feature-major h, for the (block, LayerKernels) pairs (any activation scheme)."""
    from . import ops

    codes = None  # per-token INT8 codes of h, made by the LayerNorm that produced it
    for i, (block, kernels) in enumerate(layers):
        if int8_attention:
            ctx = ops.attention_int8_fm(kernels.qkv(h, x_codes=codes), lengths, n_heads, scaling)
            h1, h1_codes = layer_norm_feature_major(kernels.out(ctx, residual=h), block.sa_layer_norm, kernels.lin1)
        else:
            h1, h1_codes = kernels.attention_block(h, codes, block.sa_layer_norm, lengths, n_heads, scaling)
        next_qkv = layers[i + 1][1].qkv if i + 1 < len(layers) else None
        h, codes = kernels.feed_forward_block(h1, h1_codes, block.output_layer_norm, next_qkv)
    return h


def encoder_forward_fm(model, input_ids: torch.Tensor, attention_mask: torch.Tensor | None):
    """(the last hidden states of the real tokens, feature-major `[dim, tokens]`; their flat indices in
    `[batch * seq]`, or None when there is no padding) of a quantized FastDistilBertModel, through the INT8 kernels."""
    from . import ops

    batch, seq = input_ids.shape
    index, lengths = packed_tokens(attention_mask, batch, seq)
    if index is None:  # every token, in order, at positions 0 .. seq - 1
        ids, positions = input_ids.reshape(-1), torch.arange(seq).expand(batch, seq).reshape(-1)
    else:
        ids, positions = input_ids.reshape(-1).index_select(0, index), index % seq
    emb = model.embeddings
    norm = emb.LayerNorm
    # (The callers run this under no_grad: the parameters go to the ops as they are, with no detached copies.)
    h = ops.embeddings_fm(ids.to(torch.long).contiguous(), positions, emb.word_embeddings.weight,
                          emb.position_embeddings.weight, norm.weight, norm.bias, norm.eps)
    config = model.config
    scaling = (config.dim // config.n_heads) ** -0.5
    kernels = model.int8_kernels()
    int8_attention = model.config.int8_attention
    whole = cached_whole_encoder_arguments(model, kernels)
    if whole is not None:  # one op, each sequence through every layer while it stays in cache
        packed, norms, eps, activation_params = whole
        h = ops.encoder_fm(h, packed, norms, eps, lengths, config.n_heads, scaling, int8_attention, activation_params)
    else:
        h = encoder_layers(h, list(zip(model.transformer.layer, kernels)), lengths, config.n_heads, scaling,
                           int8_attention)
    return h, index


def scatter_tokens(values: torch.Tensor, index: torch.Tensor | None, batch: int, seq: int, fill) -> torch.Tensor:
    """`[batch, seq, ...]` from the packed tokens' `[tokens, ...]` values (flat indices `index`, None without
    padding); padding positions get `fill` (a scalar or a tensor broadcast over the trailing dimensions)."""
    if index is None:
        return values.view(batch, seq, *values.shape[1:])
    out = torch.empty(batch * seq, *values.shape[1:], dtype=values.dtype)
    out[:] = fill
    out[index] = values
    return out.view(batch, seq, *values.shape[1:])


def encoder_forward(model, input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
    """last_hidden_state `[batch, seq, dim]` of a quantized FastDistilBertModel, through the INT8 kernels (zeros at
    padding)."""
    from . import ops

    h, index = encoder_forward_fm(model, input_ids, attention_mask)
    hidden = ops.transpose_fm(h)  # [tokens, dim]: index_put from the transposed view is 2.5x slower
    return scatter_tokens(hidden, index, *input_ids.shape, 0.0)


def question_answering_logits(model, input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> tuple:
    """(start_logits, end_logits) `[batch, seq]` of a quantized FastDistilBertForQuestionAnswering in eval mode,
    through the INT8 kernels. The fp32 QA head runs on the feature-major hidden states (`[2, dim] x [dim, tokens]`):
    no transpose back, and no `[tokens, dim] x [dim, 2]` matmul, which torch runs slowly. Padding positions get
    the head's bias, as the hidden states there are zero."""
    h, index = encoder_forward_fm(model.distilbert, input_ids, attention_mask)
    head = model.qa_outputs
    weight = head.weight
    bias = head.bias if head.bias is not None else weight.new_zeros(weight.shape[0])
    start, end = torch.addmm(bias.unsqueeze(1), weight, h)  # [tokens] each
    return (scatter_tokens(start, index, *input_ids.shape, bias[0]),
            scatter_tokens(end, index, *input_ids.shape, bias[1]))
