"""Synthesized stand-ins for published third-party sparse SQuAD checkpoints (nothing is downloaded).

- `write_intel_style`: a DistilBERT QA checkpoint, 80% block-sparse in `(4, 1)` blocks (4 output rows x 1 input
  column, what Intel's model names call "1x4"), fp32 with exact zeros, and the config quirks of such exports:
  `architectures`, `torch_dtype`, legacy keys, a pruning section.
- `write_neural_magic_style`: a BERT QA checkpoint with `(1, 4)` blocks (1 output row x 4 input columns,
  Neural Magic's "block4"), a `recipe.yaml` beside it.
- `write_qdq_int8`: an INT8 export in the QDQ layout documented in `fastdistilbert/third_party.py`.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from fastdistilbert.conversion import ENCODER_LINEARS

SPARSITY = 0.8


def block_prune_(weight: torch.Tensor, block: tuple[int, int], sparsity: float = SPARSITY) -> None:
    """Zeroes the `sparsity` fraction of `block`-shaped blocks with the smallest L2 norm (magnitude pruning)."""
    rows, cols = block
    out_features, in_features = weight.shape
    blocks = weight.detach().reshape(out_features // rows, rows, in_features // cols, cols)
    norms = blocks.pow(2).sum(dim=(1, 3))
    pruned = norms.flatten().argsort()[: int(round(sparsity * norms.numel()))]
    mask = torch.ones(norms.numel(), dtype=torch.bool)
    mask[pruned] = False
    mask = mask.reshape(norms.shape)[:, None, :, None].expand_as(blocks).reshape(out_features, in_features)
    with torch.no_grad():
        weight.mul_(mask)


def encoder_linears(model) -> dict[str, torch.nn.Linear]:
    """{"distilbert.transformer.layer.<i>.<linear>": module} of a DistilBertForQuestionAnswering."""
    return {f"distilbert.transformer.layer.{i}.{name}": model.get_submodule(f"distilbert.transformer.layer.{i}.{name}")
            for i in range(model.config.n_layers) for name in ENCODER_LINEARS}


def bert_encoder_linears(model) -> dict[str, torch.nn.Linear]:
    """{"bert.encoder.layer.<i>.<module>": Linear} of a BertForQuestionAnswering's encoder."""
    return {name: module for name, module in model.named_modules()
            if isinstance(module, torch.nn.Linear) and name.startswith("bert.encoder.layer.")}


def _edit_config(directory: Path, **changes) -> None:
    path = directory / "config.json"
    config = json.loads(path.read_text())
    config.update(changes)
    path.write_text(json.dumps(config, indent=2))


def write_intel_style(model, directory: Path) -> None:
    """Prunes `model` (DistilBertForQuestionAnswering) in place to (4, 1) blocks and saves it as Intel's exports."""
    for linear in encoder_linears(model).values():
        block_prune_(linear.weight, (4, 1))
    model.save_pretrained(directory)
    _edit_config(directory, architectures=["DistilBertForQuestionAnswering"], torch_dtype="float32",
                 transformers_version="4.20.0.dev0", tie_weights_=True, _name_or_path="distilbert-base-uncased",
                 pruning_config={"approach": "pruning", "pattern": "1x4", "sparsity": SPARSITY,
                                 "pruning_type": "snip_momentum", "start_step": 0, "end_step": 1000})


def write_neural_magic_style(bert_model, directory: Path) -> None:
    """Prunes a BertForQuestionAnswering in place to (1, 4) blocks in its encoder Linears and saves it."""
    for module in bert_encoder_linears(bert_model).values():
        block_prune_(module.weight, (1, 4))
    bert_model.save_pretrained(directory)
    _edit_config(directory, architectures=["BertForQuestionAnswering"], torch_dtype="float32",
                 _name_or_path="neuralmagic/oBERT-style-block4-80", gradient_checkpointing=False, use_cache=True)
    (directory / "recipe.yaml").write_text("pruning_modifiers:\n  - !OBSPruningModifier\n    mask_type: block4\n"
                                           f"    final_sparsity: {SPARSITY}\n")


def qdq_state_dict(model, per_channel: bool = True, input_params: tuple[float, int] | None = None,
                   linears: dict | None = None) -> dict:
    """The QDQ tensors of a QA model: its encoder `linears` (default: DistilBERT's) as symmetric int8 weights (per
    channel or per tensor), zero points 0, and, when `input_params` is given, one static activation scale for all."""
    state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    for name in linears or encoder_linears(model):
        weight = state.pop(f"{name}.weight")
        amax = weight.abs().amax(dim=1) if per_channel else weight.abs().amax().reshape(())
        scale = (amax / 127).clamp_min(1e-12)
        divisor = scale[:, None] if per_channel else scale
        state[f"{name}.weight_quantized"] = torch.round(weight / divisor).clamp(-127, 127).to(torch.int8)
        state[f"{name}.weight_scale"] = scale.to(torch.float32)
        state[f"{name}.weight_zero_point"] = torch.zeros_like(scale, dtype=torch.int8)
        if input_params is not None:
            state[f"{name}.input_scale"] = torch.tensor(input_params[0], dtype=torch.float32)
            state[f"{name}.input_zero_point"] = torch.tensor(input_params[1], dtype=torch.uint8)
    return state


def write_qdq_int8(model, directory: Path, **options) -> dict:
    """Saves the QDQ export of `model` (config + model.safetensors) and returns its state dict."""
    model.config.save_pretrained(directory)
    state = qdq_state_dict(model, **options)
    save_file(state, str(directory / "model.safetensors"), metadata={"format": "pt"})
    _edit_config(directory, architectures=["DistilBertForQuestionAnswering"], torch_dtype="float32",
                 quantization_config={"quant_method": "qdq", "weight_dtype": "int8",
                                      "per_channel": options.get("per_channel", True)})
    return state
