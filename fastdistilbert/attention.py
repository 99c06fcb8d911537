"""FastSelfAttention: DistilBERT's self-attention, plus the torch reference of the INT8 attention.

When `config.quantization["attention"] == "int8"` the C++ kernels run the attention matmuls in INT8
(csrc/attention_int8.cpp). This module gives the torch path (`use_int8_kernels = False`, extra outputs such as
`output_attentions`, or no kernels on this machine) the same arithmetic, step by step through
`reference_ops.attention_int8_head`, so both paths compute one model. Training, and every model without INT8
attention, run DistilBERT's own attention unchanged (the INT8 steps round, they have no useful gradient).
"""
from __future__ import annotations

import torch
from transformers.models.distilbert.modeling_distilbert import DistilBertSelfAttention

from . import reference_ops


def attended_tokens(attention_mask: torch.Tensor | None, batch: int, seq: int) -> torch.Tensor:
    """[batch, seq] bool: the tokens any query may attend to, from the mask HF passes to its attention modules
    (None: no padding; bool [batch, 1, q, k]: True where allowed; float: 0 where allowed, a large negative bias
    elsewhere)."""
    if attention_mask is None:
        return torch.ones(batch, seq, dtype=torch.bool)
    if attention_mask.dtype == torch.bool:
        return attention_mask.any(dim=-2).reshape(batch, seq)
    return (attention_mask == 0).any(dim=-2).reshape(batch, seq)


class FastSelfAttention(DistilBertSelfAttention):
    """Same parameters and state-dict keys as DistilBertSelfAttention; only the forward of INT8-attention models in
    inference differs."""

    @classmethod
    def replacing(cls, attention: DistilBertSelfAttention) -> "FastSelfAttention":
        """A FastSelfAttention with the very submodules (and so the weights) of `attention`."""
        with torch.device("meta"):  # its own Linears are replaced at once: skip allocating and initializing them
            fast = cls(attention.config)
        for name, child in attention.named_children():
            setattr(fast, name, child)
        fast.train(attention.training)
        return fast

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None, **kwargs):
        if self.training or not getattr(self.config, "int8_attention", False):
            return super().forward(hidden_states, attention_mask=attention_mask, **kwargs)
        batch, seq, dim = hidden_states.shape
        attended = attended_tokens(attention_mask, batch, seq)
        index = attended.reshape(-1).nonzero().squeeze(1)
        lengths = attended.sum(dim=1).tolist()
        tokens = hidden_states.reshape(batch * seq, dim).index_select(0, index)
        qkv = torch.cat([self.q_lin(tokens), self.k_lin(tokens), self.v_lin(tokens)], dim=1).t()  # [3 dim, tokens]
        context = hidden_states.new_zeros(batch * seq, dim)  # queries at padding attend to nothing
        probs = hidden_states.new_zeros(batch, self.n_heads, seq, seq)
        head = self.attention_head_size
        first = 0
        for b, n in enumerate(lengths):  # a row of padding only (n = 0) attends to nothing, as in the kernels
            rows, cols = index[first:first + n], slice(first, first + n)
            positions = rows - b * seq
            for h in range(self.n_heads if n else 0):
                q, k, v = (qkv[part * dim + h * head: part * dim + (h + 1) * head, cols] for part in range(3))
                ctx, p = reference_ops.attention_int8_head(q, k, v, self.scaling)
                context[rows, h * head:(h + 1) * head] = ctx.t()
                probs[b, h, positions[:, None], positions[None, :]] = p
            first += n
        return self.out_lin(context.view(batch, seq, dim)), probs
