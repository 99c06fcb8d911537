"""Compact word embeddings: int8 codes with one fp32 scale per vocabulary row, in a Fast checkpoint.

The word embedding matrix is most of a small INT8 model's file (MiniLM-L6: 30522 x 384 fp32 = 46.9 MB, against
~10.6 MB of int8 encoder weights). Stored as int8 per row it takes a quarter of that. The formula is the
per-channel weight formula of `fastdistilbert.quantization` applied to rows:

    scale[v] = max|E[v, :]| / 127          (1.0 for an all-zero row)
    codes[v] = clamp(round_half_even(E[v, :] / scale[v]), -127, 127)   (int8)
    E'[v]    = codes[v] * scale[v]         (fp32, what the model computes with)

On disk, HF key names are kept: `...word_embeddings.weight` holds the int8 codes and `...word_embeddings.weight_scale`
the fp32 scales; `config.quantization["embeddings"] = "int8-symmetric-per-row"` says so. In memory the model keeps
fp32 `E'` (the embedding lookup stays an fp32 gather) plus the scales as a buffer, so that saving recovers the
exact codes and a reloaded model is bit-identical to the one in memory. Position embeddings stay fp32.
"""
from __future__ import annotations

import torch
from torch import nn

from . import quantization as Q
from .configuration_fast_distilbert import COMPACT_EMBEDDINGS_FORMAT, QUANTIZATION_FORMAT_VERSION
from .checkpoint import FLOAT_DTYPES
from .errors import CheckpointError

SCALE = "weight_scale"


def _word_embeddings(model) -> tuple[str, nn.Embedding]:
    """(module name, module) of the word embeddings of a Fast QA model or a Fast encoder."""
    encoder = model.distilbert if hasattr(model, "distilbert") else model
    prefix = "distilbert." if encoder is not model else ""
    return f"{prefix}embeddings.word_embeddings", encoder.embeddings.word_embeddings


def add_scale_buffer(embedding: nn.Embedding) -> None:
    """Gives the embedding a place for its per-row scales, so a compact checkpoint's scales load into it."""
    if not hasattr(embedding, SCALE):
        embedding.register_buffer(SCALE, torch.ones(embedding.num_embeddings, dtype=torch.float32))


def compact_embeddings(model):
    """Quantizes the word embeddings of a Fast model to int8 per row, in place, and records it in the config.

    The fp32 weight becomes the dequantized values `codes * scale`, so the model in memory computes exactly what
    the saved checkpoint computes after loading. Works on fp32 and INT8 models; returns the model.
    Cost on the real MiniLM-L6 embeddings: see README ("Compact checkpoints").
    """
    from .modeling_fast_distilbert import FastDistilBertModel, FastDistilBertForQuestionAnswering

    if not isinstance(model, (FastDistilBertModel, FastDistilBertForQuestionAnswering)):
        raise TypeError(f"compact_embeddings needs a FastDistilBert model, got {type(model).__name__}; "
                        "convert it first with fastdistilbert.convert_to_fast")
    _, embedding = _word_embeddings(model)
    weight = embedding.weight.detach()
    if weight.dtype != torch.float32:
        raise TypeError(f"word embeddings must be float32 to be compacted, got {weight.dtype}")
    if not bool(torch.isfinite(weight).all()):
        raise ValueError("word embeddings hold NaN or Inf values; they cannot be quantized")
    codes, scale = Q.quantize_weight(weight)
    add_scale_buffer(embedding)
    with torch.no_grad():
        embedding.weight.copy_(Q.dequantize_weight(codes, scale))
        getattr(embedding, SCALE).copy_(scale)
    section = dict(model.config.quantization or {"format_version": QUANTIZATION_FORMAT_VERSION})
    section["embeddings"] = COMPACT_EMBEDDINGS_FORMAT
    model.config.quantization = section
    return model


def compact_state_dict(model) -> dict[str, torch.Tensor]:
    """The model's state dict with the word embeddings as int8 codes (for save_pretrained).

    Refuses embeddings that are no longer `codes * scale` (changed after compact_embeddings, e.g. by training):
    re-quantizing them with stale scales would save a different model than the one in memory."""
    name, embedding = _word_embeddings(model)
    scale = getattr(embedding, SCALE, None)
    if scale is None:
        raise ValueError("the config records compact word embeddings but the model has no scales; "
                         "call fastdistilbert.compact_embeddings(model) first")
    weight = embedding.weight.detach()
    codes = torch.clamp(torch.round(weight / scale[:, None]), -Q.WEIGHT_QMAX, Q.WEIGHT_QMAX)
    if not torch.equal(codes * scale[:, None], weight):
        raise ValueError("the word embeddings changed since fastdistilbert.compact_embeddings(model) (they are no "
                         "longer int8 codes times their row scales); call it again before saving")
    state = model.state_dict()
    state[f"{name}.weight"] = codes.to(torch.int8)
    return state


def check_embedding_tensors(specs: dict, config, prefix: str) -> None:
    """Header check of the word embeddings against config.quantization: int8 codes `[vocab, dim]` and fp32 scales
    `[vocab]` when it records compact embeddings, a float weight otherwise (int8 codes loaded without their scales
    would be a silently wrong model)."""
    base = f"{prefix}embeddings.word_embeddings"
    if not getattr(config, "compact_embeddings", False):
        dtype = specs.get(f"{base}.weight", ("F32",))[0]
        if dtype not in FLOAT_DTYPES:
            raise CheckpointError(f"tensor '{base}.weight' is stored as {dtype} but config.quantization records no "
                                  f"compact embeddings ('embeddings': {COMPACT_EMBEDDINGS_FORMAT!r}); the file does "
                                  "not match its config")
        return
    expected = {f"{base}.weight": ("I8", (config.vocab_size, config.dim)), f"{base}.{SCALE}": ("F32", (config.vocab_size,))}
    for key, (dtype, shape) in expected.items():
        if key not in specs:
            raise CheckpointError(f"compact-embeddings checkpoint is missing tensor {key!r} (config.quantization."
                                  f"embeddings says {COMPACT_EMBEDDINGS_FORMAT}); the checkpoint is corrupt")
        if specs[key][0] != dtype:
            raise CheckpointError(f"tensor {key!r} is stored as {specs[key][0]}, expected {dtype} for compact word "
                                  "embeddings; the file does not match its config.quantization section")
        if specs[key][1] != shape:
            raise CheckpointError(f"tensor {key!r} has shape {specs[key][1]}, expected {shape} "
                                  f"(vocab_size={config.vocab_size}, dim={config.dim})")


def dequantize_loaded(model) -> None:
    """After from_pretrained: the loader put the int8 codes, cast to fp32, into the weight; multiply by the scales.

    Checks first what the quantizer never writes (codes outside [-127, 127], non-finite or non-positive scales),
    and that the weight still holds integer codes: dequantizing twice would silently shrink every embedding."""
    name, embedding = _word_embeddings(model)
    scale = getattr(embedding, SCALE)
    if not bool((torch.isfinite(scale) & (scale > 0)).all()):
        raise CheckpointError(f"{name}.{SCALE} holds non-finite or non-positive values; the checkpoint is corrupt")
    codes = embedding.weight.detach()
    if not torch.equal(codes, torch.round(codes)):
        raise CheckpointError(f"{name}.weight was not loaded as integer codes; cannot dequantize compact embeddings")
    if bool((codes.abs() > Q.WEIGHT_QMAX).any()):
        raise CheckpointError(f"{name}.weight holds codes outside [-{Q.WEIGHT_QMAX}, {Q.WEIGHT_QMAX}]; "
                              "the checkpoint is corrupt")
    with torch.no_grad():
        embedding.weight.copy_(Q.dequantize_weight(codes.to(torch.int8), scale))
