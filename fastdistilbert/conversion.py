"""Conversion into the DistilBERT layout and into FastDistilBert models.

- BERT-family encoders (BertModel / BertForQuestionAnswering with absolute positions, GELU, LayerNorm eps 1e-12)
  map one-to-one onto DistilBERT, except that BERT adds a token-type embedding. A DistilBERT input has only
  type 0, so the type-0 row is folded into every position embedding: word + (position + type0) computes the
  same embedding sum as BERT's word + type0 + position.
- Any DistilBertForQuestionAnswering (in memory or on disk) becomes a FastDistilBertForQuestionAnswering with the
  same fp32 weights; `quantize_model` then swaps the encoder's Linear layers for INT8 `QuantizedLinear`s.
"""
from __future__ import annotations

import torch
from torch import nn
from transformers import BertConfig, DistilBertConfig, DistilBertForQuestionAnswering

from .configuration_fast_distilbert import FastDistilBertConfig, quantization_section
from .errors import CheckpointError
from .modules import QuantizedLinear

# Encoder Linear layers that run as INT8 GEMMs (relative to a TransformerBlock). Embeddings, LayerNorms and
# qa_outputs stay fp32.
ENCODER_LINEARS = ("attention.q_lin", "attention.k_lin", "attention.v_lin", "attention.out_lin", "ffn.lin1", "ffn.lin2")

_BERT_LAYER_MAP = {
    "attention.self.query": "attention.q_lin",
    "attention.self.key": "attention.k_lin",
    "attention.self.value": "attention.v_lin",
    "attention.output.dense": "attention.out_lin",
    "attention.output.LayerNorm": "sa_layer_norm",
    "intermediate.dense": "ffn.lin1",
    "output.dense": "ffn.lin2",
    "output.LayerNorm": "output_layer_norm",
}


def distilbert_config_from_bert(config: BertConfig) -> DistilBertConfig:
    """The DistilBertConfig of a BERT encoder, refusing settings DistilBERT cannot reproduce exactly."""
    problems = []
    if getattr(config, "position_embedding_type", "absolute") != "absolute":
        problems.append(f"position_embedding_type={config.position_embedding_type!r} (DistilBERT: absolute)")
    if config.hidden_act != "gelu":
        problems.append(f"hidden_act={config.hidden_act!r} (DistilBERT: gelu)")
    if abs(config.layer_norm_eps - 1e-12) > 0:
        problems.append(f"layer_norm_eps={config.layer_norm_eps} (DistilBERT hard-codes 1e-12)")
    if getattr(config, "is_decoder", False):
        problems.append("is_decoder=True")
    if problems:
        raise CheckpointError("this BERT encoder does not convert exactly to DistilBERT: " + "; ".join(problems))
    return DistilBertConfig(
        vocab_size=config.vocab_size,
        max_position_embeddings=config.max_position_embeddings,
        n_layers=config.num_hidden_layers,
        n_heads=config.num_attention_heads,
        dim=config.hidden_size,
        hidden_dim=config.intermediate_size,
        dropout=config.hidden_dropout_prob,
        attention_dropout=config.attention_probs_dropout_prob,
        activation="gelu",
        initializer_range=config.initializer_range,
        pad_token_id=config.pad_token_id,
    )


def distilbert_state_dict_from_bert(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Renames a BERT state dict (with or without the `bert.` prefix) into DistilBertForQuestionAnswering keys.

    The pooler is dropped (DistilBERT has none); `qa_outputs` is kept when present.
    """
    sd = {k.removeprefix("bert."): v for k, v in state_dict.items()}
    out: dict[str, torch.Tensor] = {}
    out["distilbert.embeddings.word_embeddings.weight"] = sd["embeddings.word_embeddings.weight"]
    positions = sd["embeddings.position_embeddings.weight"]
    type0 = sd["embeddings.token_type_embeddings.weight"][0]
    out["distilbert.embeddings.position_embeddings.weight"] = positions + type0
    for p in ("weight", "bias"):
        out[f"distilbert.embeddings.LayerNorm.{p}"] = sd[f"embeddings.LayerNorm.{p}"]
    for key, value in sd.items():
        if not key.startswith("encoder.layer."):
            continue
        index, rest = key[len("encoder.layer."):].split(".", 1)
        module, param = rest.rsplit(".", 1)
        if module not in _BERT_LAYER_MAP:
            raise CheckpointError(f"unexpected BERT encoder tensor {key!r}; cannot convert to DistilBERT")
        out[f"distilbert.transformer.layer.{index}.{_BERT_LAYER_MAP[module]}.{param}"] = value
    for p in ("weight", "bias"):
        if f"qa_outputs.{p}" in sd:
            out[f"qa_outputs.{p}"] = sd[f"qa_outputs.{p}"]
    return out


def distilbert_qa_from_bert(bert_model: nn.Module, qa_head_seed: int | None = None) -> DistilBertForQuestionAnswering:
    """HF DistilBertForQuestionAnswering computing what a BERT encoder (+ its QA head, if any) computes.

    A bare encoder has no QA head: it is initialized as DistilBERT does, from `qa_head_seed` when given.
    """
    config = distilbert_config_from_bert(bert_model.config)
    state = distilbert_state_dict_from_bert(bert_model.state_dict())
    if qa_head_seed is not None:
        torch.manual_seed(qa_head_seed)
    model = DistilBertForQuestionAnswering(config)
    missing, unexpected = model.load_state_dict(state, strict=False)
    not_head = [k for k in missing if not k.startswith("qa_outputs.")]
    if not_head or unexpected:
        raise CheckpointError(f"BERT -> DistilBERT conversion incomplete: missing {not_head}, unexpected {unexpected}")
    return model.eval()


def fast_from_distilbert(model: DistilBertForQuestionAnswering):
    """FastDistilBertForQuestionAnswering (fp32) with a copy of the weights of an in-memory HF model."""
    from .modeling_fast_distilbert import FastDistilBertForQuestionAnswering

    if not isinstance(model.config, DistilBertConfig):
        raise CheckpointError(f"expected a DistilBERT QA model, got config type {type(model.config).__name__}")
    config = FastDistilBertConfig.from_distilbert_config(model.config)
    fast = FastDistilBertForQuestionAnswering(config)
    state = model.state_dict()
    missing, unexpected = fast.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("position_ids")]
    if missing or unexpected:
        raise CheckpointError(f"cannot convert {type(model).__name__}: missing {missing}, unexpected {unexpected}")
    return fast.train(model.training)


def encoder_linear_names(config) -> list[str]:
    """Module names (in a QA model) of every encoder Linear that runs as an INT8 GEMM."""
    return [f"distilbert.transformer.layer.{i}.{suffix}" for i in range(config.n_layers) for suffix in ENCODER_LINEARS]


def quantize_model(model, activation_params: dict[str, tuple[float, int]] | None = None, attention: str = "int8"):
    """Swaps the encoder Linear layers of an fp32 Fast model for INT8 QuantizedLinear modules, in place.

    `activation_params` maps module names (e.g. "distilbert.transformer.layer.0.attention.q_lin") to a static
    `(scale, zero_point)`; without it activations are quantized per token at run time (no calibration needed).
    `attention`: "int8" runs the attention matmuls in INT8 too (faster, above all on long sequences), "fp32" keeps
    them in fp32; recorded in the config, so a saved model computes the same way after loading.
    """
    if model.config.is_quantized:
        raise ValueError("model is already quantized")
    static = activation_params is not None
    # Built first: an unknown `attention` is refused before any module is swapped.
    section = quantization_section("static" if static else "dynamic", attention=attention)
    names = encoder_linear_names(model.config)
    if static:
        unknown = sorted(set(activation_params) - set(names))
        absent = [n for n in names if n not in activation_params]
        if unknown or absent:
            raise ValueError(f"activation_params must name every encoder Linear: unknown {unknown}, missing {absent}")
    for name in names:
        parent_name, child = name.rsplit(".", 1)
        parent = model.get_submodule(parent_name)
        linear = getattr(parent, child)
        scale, zero_point = activation_params[name] if static else (None, None)
        setattr(parent, child, QuantizedLinear.from_linear(linear, static, scale, zero_point))
    if model.config.compact_embeddings:  # keep the record of compact word embeddings
        section["embeddings"] = model.config.quantization["embeddings"]
    model.config.quantization = section
    return model


def convert_to_fast(model, quantize: bool = False, activation_params: dict[str, tuple[float, int]] | None = None,
                    attention: str = "int8"):
    """FastDistilBertForQuestionAnswering from an in-memory HF QA model (DistilBERT, or a BERT-family encoder).

    `quantize=True` gives the INT8 model (dynamic per-token activations, or the static `activation_params`), with
    INT8 (default) or fp32 `attention` (see `quantize_model`).
    """
    from transformers import BertPreTrainedModel

    if isinstance(model, BertPreTrainedModel):
        model = distilbert_qa_from_bert(model)
    fast = fast_from_distilbert(model)
    if quantize or activation_params is not None:
        quantize_model(fast, activation_params, attention)
    return fast


def to_hf_distilbert(model) -> DistilBertForQuestionAnswering:
    """HF DistilBertForQuestionAnswering running exactly the weights a Fast model computes with (INT8 weights
    dequantized): the fair fp32 peer for answers and speed."""
    config = DistilBertConfig(**{k: v for k, v in model.config.to_dict().items()
                                 if k not in ("model_type", "quantization", "auto_map", "architectures", "transformers_version")})
    hf = DistilBertForQuestionAnswering(config)
    state = {}
    for key, value in model.state_dict().items():
        if key.endswith((".weight_scale", ".input_scale", ".input_zero_point")):
            continue
        state[key] = value
    for name, module in model.named_modules():
        if isinstance(module, QuantizedLinear):
            state[f"{name}.weight"] = module.dequantized_weight()
    hf.load_state_dict(state, strict=True)
    return hf.eval()
