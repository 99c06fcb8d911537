"""FastDistilBertModel and FastDistilBertForQuestionAnswering: HF DistilBERT with INT8 encoder Linears.

With `config.quantization = None` they are DistilBERT, computation included. With an INT8 config the encoder's
Linear layers are `QuantizedLinear`s (int8 weights, per-channel scales) and inference runs on the C++ kernels.
Only what differs from DistilBERT is replaced; key names stay HF's so vanilla checkpoints load as they are.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import torch
from transformers import DistilBertConfig, DistilBertForQuestionAnswering, DistilBertModel
from transformers.configuration_utils import PreTrainedConfig
from transformers.modeling_outputs import BaseModelOutput, QuestionAnsweringModelOutput
from transformers.utils.generic import can_return_tuple

from .attention import FastSelfAttention
from .checkpoint import check_checkpoint, check_loaded_scales, hub_kwargs
from .configuration_fast_distilbert import QUANTIZATION_FORMAT_VERSION, FastDistilBertConfig
from .conversion import ENCODER_LINEARS, distilbert_qa_from_bert, fast_from_distilbert
from . import embedding_quantization
from .errors import CheckpointError
from .modules import QuantizedLinear
from .ops_available import kernels_available
from .third_party import load_qdq_checkpoint
from . import runtime

REMOTE_CODE_DIR = Path(__file__).parent / "remote_code"
# Shims that re-export the installed package's classes, so `trust_remote_code=True` resolves a saved checkpoint
# in a process that never imported fastdistilbert (the C++ extension cannot ship as remote code).
AUTO_MAP = {
    "AutoConfig": "configuration_fast_distilbert.FastDistilBertConfig",
    "AutoModel": "modeling_fast_distilbert.FastDistilBertModel",
    "AutoModelForQuestionAnswering": "modeling_fast_distilbert.FastDistilBertForQuestionAnswering",
}
CHECKPOINT_FILES = ("config.json", "model.safetensors", "model.safetensors.index.json")


def _check_device(name: str, tensor, device: torch.device) -> None:
    if isinstance(tensor, torch.Tensor) and tensor.device != device:
        raise ValueError(f"{name} is on device {tensor.device} but the model is on {device}; move it with .to({str(device)!r})")


def _validate_inputs(config, input_ids, attention_mask, inputs_embeds, device, dtype) -> tuple[int, int]:
    """Clear errors for inputs DistilBERT would crash on or silently mis-handle; returns (batch, sequence)."""
    if input_ids is None and inputs_embeds is None:
        raise ValueError("You must specify exactly one of input_ids or inputs_embeds (got neither)")
    for name, tensor in (("input_ids", input_ids), ("attention_mask", attention_mask), ("inputs_embeds", inputs_embeds)):
        _check_device(name, tensor, device)  # before any value check: a meta tensor has no values to read
    if input_ids is not None:
        if not isinstance(input_ids, torch.Tensor):
            raise TypeError(f"input_ids must be a torch.Tensor, got {type(input_ids).__name__}")
        if input_ids.is_floating_point() or input_ids.is_complex() or input_ids.dtype == torch.bool:
            raise TypeError(f"input_ids must be an integer tensor of token ids, got dtype {input_ids.dtype}")
        if input_ids.dtype not in (torch.int64, torch.int32):  # uint8 would index the embeddings as a boolean mask
            raise TypeError(f"input_ids must be int64 (or int32) token ids, got dtype {input_ids.dtype}")
        if input_ids.dim() != 2:
            raise ValueError(f"input_ids must have shape [batch, sequence], got {tuple(input_ids.shape)}")
        shape = tuple(input_ids.shape)
        if input_ids.numel():
            low, high = (int(v) for v in torch.aminmax(input_ids))
            if low < 0 or high >= config.vocab_size:
                raise ValueError(f"input_ids contain ids outside the vocabulary [0, {config.vocab_size}): "
                                 f"min {low}, max {high}; was the right tokenizer used?")
    else:
        _validate_inputs_embeds(config, inputs_embeds, dtype)
        shape = tuple(inputs_embeds.shape[:2])
    if shape[0] and not shape[1]:
        raise ValueError(f"the input has zero-length sequences (shape {shape}); every sequence needs at least one token")
    if shape[1] > config.max_position_embeddings:
        raise ValueError(
            f"sequence length {shape[1]} exceeds max_position_embeddings={config.max_position_embeddings} of this "
            "model; truncate (tokenizer(..., truncation=True, max_length=...)) or use the question-answering "
            "pipeline, which splits long contexts into doc_stride windows"
        )
    if attention_mask is not None:
        _validate_attention_mask(attention_mask, shape)
    return shape


def _validate_inputs_embeds(config, inputs_embeds, dtype) -> None:
    if not isinstance(inputs_embeds, torch.Tensor):
        raise TypeError(f"inputs_embeds must be a torch.Tensor, got {type(inputs_embeds).__name__}")
    if inputs_embeds.dtype != dtype:
        raise TypeError(f"inputs_embeds must have the model's dtype {dtype}, got {inputs_embeds.dtype}")
    if inputs_embeds.dim() != 3 or inputs_embeds.shape[-1] != config.dim:
        raise ValueError(
            f"inputs_embeds must have shape [batch, sequence, {config.dim}], got {tuple(inputs_embeds.shape)}"
        )
    if not bool(torch.isfinite(inputs_embeds).all()):  # NaN would spread through attention to every token's logits
        bad = int((~torch.isfinite(inputs_embeds)).sum())
        raise ValueError(f"inputs_embeds contains {bad} NaN or Inf values; every value must be finite")


def _validate_attention_mask(attention_mask, shape) -> None:
    if not isinstance(attention_mask, torch.Tensor):
        raise TypeError(f"attention_mask must be a torch.Tensor, got {type(attention_mask).__name__}")
    if tuple(attention_mask.shape) != shape:
        raise ValueError(
            f"attention_mask has shape {tuple(attention_mask.shape)} but the input has shape {shape}; they must match"
        )
    if not attention_mask.numel() or attention_mask.dtype == torch.bool:
        return
    # The fast path reads any nonzero as a token, HF's as a weight: only 0 and 1 mean the same to both. For
    # integers that is a range (one reduction); a float mask could hold 0.5.
    if attention_mask.is_floating_point() or attention_mask.is_complex():
        valid = not bool(((attention_mask != 0) & (attention_mask != 1)).any())
    else:
        low, high = (int(v) for v in torch.aminmax(attention_mask))
        valid = low >= 0 and high <= 1
    if not valid:
        raise ValueError("attention_mask must contain only 0 (padding) and 1 (token), "
                         f"found {sorted(set(attention_mask.unique().tolist()) - {0, 1})[:3]}")


class _FastCheckpointMixin:
    """from_pretrained / save_pretrained behaviour shared by the Fast classes."""

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, config=None, **kwargs):
        """Loads a Fast checkpoint, a vanilla DistilBERT checkpoint (converted on the fly) or a BERT-family
        encoder (converted to the DistilBERT layout). Fails early, with the reason, on anything else."""
        path = pretrained_model_name_or_path
        if config is None or isinstance(config, (str, os.PathLike)):
            config = cls._config_for_checkpoint(config or path, kwargs)
        if isinstance(config, _BertSource):
            return cls._from_bert_checkpoint(path, kwargs)
        if not isinstance(config, FastDistilBertConfig):
            config = FastDistilBertConfig.from_distilbert_config(config)
        if not config.is_quantized and (qdq := load_qdq_checkpoint(cls, path, config, kwargs)) is not None:
            return qdq  # a third-party INT8 (QDQ) export, read by third_party.py
        config.check_quantization()
        if os.path.isdir(path) or not kwargs.get("local_files_only", False):
            check_checkpoint(path, config, **kwargs)
        model = super().from_pretrained(path, *model_args, config=config, **kwargs)
        check_loaded_scales(model)
        if config.compact_embeddings:
            embedding_quantization.dequantize_loaded(model)
        model.prepare_kernels()
        return model

    @classmethod
    def _config_for_checkpoint(cls, path, kwargs):
        if os.path.isdir(path) and not Path(path, "config.json").exists():
            raise CheckpointError(f"no config.json in {path}: not a saved model directory")
        try:
            raw, _ = PreTrainedConfig.get_config_dict(path, **hub_kwargs(kwargs))
        except ValueError as exc:  # JSON decoding errors surface as ValueError/EnvironmentError
            raise CheckpointError(f"cannot read config.json of {path}: {exc}") from exc
        model_type = raw.get("model_type")
        if model_type == FastDistilBertConfig.model_type:
            return FastDistilBertConfig.from_dict(raw)
        if model_type == "distilbert":
            return FastDistilBertConfig.from_distilbert_config(DistilBertConfig.from_dict(raw))
        if model_type == "bert":
            return _BertSource()
        raise CheckpointError(
            f"{path} holds a {model_type!r} checkpoint (architectures {raw.get('architectures')}); "
            f"{cls.__name__} loads fast_distilbert, distilbert and BERT-family (bert) checkpoints"
        )

    @classmethod
    def _from_bert_checkpoint(cls, path, kwargs):
        from transformers import BertForQuestionAnswering

        check_checkpoint(path, None, **kwargs)
        if (qdq := load_qdq_checkpoint(cls, path, None, kwargs)) is not None:
            return qdq  # a third-party INT8 (QDQ) export of a BERT encoder, read by third_party.py
        bert = BertForQuestionAnswering.from_pretrained(path, **hub_kwargs(kwargs))
        fast = fast_from_distilbert(distilbert_qa_from_bert(bert))
        return fast if isinstance(fast, cls) else fast.distilbert

    def save_pretrained(self, save_directory, *args, overwrite: bool = False, compact_embeddings: bool = False,
                        **kwargs):
        """HF's save_pretrained (safetensors) plus the `auto_map` shims.

        Refuses to replace an existing checkpoint unless `overwrite=True`; with it, stale weight files are removed
        first (a leftover unsharded model.safetensors would otherwise shadow new shards).

        `compact_embeddings=True` first quantizes the word embeddings in place (`fastdistilbert.compact_embeddings`:
        int8 codes + one fp32 scale per row, about 4x smaller) so the saved file and the model in memory compute the
        same. A model whose config already records compact embeddings is always saved compact.
        """
        directory = Path(save_directory)
        if directory.exists() and not directory.is_dir():
            raise FileExistsError(f"{directory} is a file, not a directory; save_pretrained writes a directory")
        existing = [name for name in CHECKPOINT_FILES if (directory / name).exists()]
        existing += [p.name for p in directory.glob("model-*.safetensors")] if directory.is_dir() else []
        if existing and not overwrite:
            raise FileExistsError(
                f"{directory} already holds a checkpoint ({', '.join(sorted(existing))}); pass overwrite=True to replace it"
            )
        for name in existing:
            if name != "config.json":
                (directory / name).unlink()
        # Remote-code loading sets _auto_class, which makes HF copy this module instead of the shims (PITFALLS 8).
        type(self)._auto_class = None
        type(self.config)._auto_class = None
        if compact_embeddings:
            embedding_quantization.compact_embeddings(self)
        if self.config.compact_embeddings:
            if "state_dict" in kwargs:
                raise ValueError("save_pretrained(state_dict=...) cannot be combined with compact word embeddings")
            kwargs["state_dict"] = embedding_quantization.compact_state_dict(self)
        self.config.auto_map = dict(AUTO_MAP)
        super().save_pretrained(save_directory, *args, **kwargs)
        for shim in REMOTE_CODE_DIR.glob("*.py"):
            shutil.copyfile(shim, directory / shim.name)

    def push_to_hub(self, repo_id: str, **kwargs) -> str:
        """Publishes through `fastdistilbert.hub.push_to_hub`: our model card (HF's would replace README.md,
        PITFALLS 19), the auto_map shims, the tokenizer if given, and no overwrite of another model without consent."""
        from .hub import push_to_hub

        return push_to_hub(self, repo_id, **kwargs)

    def quantized_linears(self) -> dict[str, QuantizedLinear]:
        return {name: m for name, m in self.named_modules() if isinstance(m, QuantizedLinear)}

    def _encoder(self) -> "FastDistilBertModel":
        return self.distilbert if hasattr(self, "distilbert") else self

    def _device_and_dtype(self) -> tuple[torch.device, torch.dtype]:
        """HF's `device` and `dtype` (those of the first parameter, the word embeddings), read directly: the
        properties walk the parameters, tens of us on every forward."""
        weight = self._encoder().embeddings.word_embeddings.weight
        return weight.device, weight.dtype

    def prepare_kernels(self) -> None:
        """Builds the kernel layout of every INT8 Linear now instead of at the first forward."""
        encoder = self._encoder()
        if encoder.config.is_quantized and kernels_available():
            encoder.int8_kernels()

    def kernel_report(self) -> list[dict]:
        """Per encoder Linear: the block pattern detected in its weights, the block density and the ISA it runs on
        (`fp32` when the model is not quantized, `reference` when the kernels cannot be used), and its layer's
        attention matmuls (`int8` or `fp32`)."""
        encoder = self._encoder()
        if not encoder.config.is_quantized:
            return [{"layer": i, "linear": name, "format": "fp32", "isa": "torch"}
                    for i in range(encoder.config.n_layers) for name in ("qkv", "out", "lin1", "lin2")]
        attention = "int8" if encoder.config.int8_attention else "fp32"
        if not kernels_available():
            return [{"layer": i, "linear": name, "format": "int8", "isa": "reference", "attention": attention}
                    for i in range(encoder.config.n_layers) for name in ("qkv", "out", "lin1", "lin2")]
        from ._extension import active_isa

        isa = active_isa()
        report = []
        for i, layer in enumerate(encoder.int8_kernels()):
            for name in ("qkv", "out", "lin1", "lin2"):
                kernel = getattr(layer, name)
                report.append({"layer": i, "linear": name, "format": kernel.pattern,
                               "block_density": round(kernel.block_density, 4), "isa": isa,
                               "activations": "dynamic" if kernel.input_scale is None else "static",
                               "attention": attention})
        return report


class _BertSource:
    """Marker: the checkpoint is a BERT encoder, converted to the DistilBERT layout on load."""


def _quantize_structure(model: DistilBertModel, config: FastDistilBertConfig) -> None:
    """Replaces encoder Linears by empty QuantizedLinears, so an INT8 checkpoint's tensors have a place to land."""
    for block in model.transformer.layer:
        for name in ENCODER_LINEARS:
            parent_name, child = name.split(".")
            parent = getattr(block, parent_name)
            linear = getattr(parent, child)
            setattr(parent, child, QuantizedLinear(linear.in_features, linear.out_features, config.static_activations))


def _as_fast_config(config) -> FastDistilBertConfig:
    """Accepts a vanilla DistilBertConfig too (same fields, fp32), and refuses an unreadable quantization section."""
    if not isinstance(config, FastDistilBertConfig):
        config = FastDistilBertConfig.from_distilbert_config(config)
    config.check_quantization()
    return config


class FastDistilBertModel(_FastCheckpointMixin, DistilBertModel):
    config_class = FastDistilBertConfig
    config: FastDistilBertConfig

    def __init__(self, config: FastDistilBertConfig):
        config = _as_fast_config(config)
        super().__init__(config)
        for block in self.transformer.layer:
            block.attention = FastSelfAttention.replacing(block.attention)
        if config.is_quantized:
            _quantize_structure(self, config)
        if config.compact_embeddings:
            embedding_quantization.add_scale_buffer(self.embeddings.word_embeddings)

    # Set to False to run a quantized model through the torch reference path (same integer math, slow).
    use_int8_kernels: bool = True

    @property
    def int8_attention(self) -> bool:
        """Whether the attention matmuls run in INT8 (`config.quantization["attention"]`; the conversion default).
        Setting it switches the model, and what save_pretrained records."""
        return self.config.int8_attention

    @int8_attention.setter
    def int8_attention(self, value: bool) -> None:
        if not self.config.is_quantized:
            raise ValueError("INT8 attention needs an INT8 model: quantize it first (fastdistilbert.quantize_model)")
        self.config.quantization = {**self.config.quantization, "format_version": QUANTIZATION_FORMAT_VERSION,
                                    "attention": "int8" if value else "fp32"}

    def int8_kernels(self):
        """The packed kernels of the encoder, rebuilt whenever a quantized tensor changed (e.g. after loading)."""
        version = runtime.weights_version(self)
        if getattr(self, "_kernel_version", None) != version:
            self._kernels = runtime.build_kernels(self)
            self._kernel_version = version
        return self._kernels

    def install_int8_kernels(self, layers) -> None:
        """Uses already packed kernels (e.g. memory-mapped from a cache shared by worker processes)."""
        if len(layers) != self.config.n_layers:
            raise ValueError(f"expected kernels for {self.config.n_layers} layers, got {len(layers)}")
        self._kernels = layers
        self._kernel_version = runtime.weights_version(self)

    def _can_use_int8_kernels(self, inputs_embeds, position_ids, kwargs) -> bool:
        wants_extra_outputs = any(kwargs.get(k, getattr(self.config, k, False))
                                  for k in ("output_hidden_states", "output_attentions"))
        return (self.config.is_quantized and self.use_int8_kernels and not self.training and inputs_embeds is None
                and position_ids is None and not wants_extra_outputs and self.config.activation == "gelu"
                and kernels_available())

    def forward(self, input_ids=None, attention_mask=None, inputs_embeds=None, position_ids=None, **kwargs):
        device, dtype = self._device_and_dtype()
        batch, seq = _validate_inputs(self.config, input_ids, attention_mask, inputs_embeds, device, dtype)
        if batch == 0:  # an empty batch (a serving batcher with no requests): empty outputs; HF's forward crashes on it
            return BaseModelOutput(last_hidden_state=torch.zeros(0, seq, self.config.dim, dtype=dtype, device=device))
        if self._can_use_int8_kernels(inputs_embeds, position_ids, kwargs):
            with torch.no_grad():
                hidden = runtime.encoder_forward(self, input_ids, attention_mask)
            return BaseModelOutput(last_hidden_state=hidden)
        return super().forward(input_ids=input_ids, attention_mask=attention_mask, inputs_embeds=inputs_embeds,
                               position_ids=position_ids, **kwargs)


class FastDistilBertForQuestionAnswering(_FastCheckpointMixin, DistilBertForQuestionAnswering):
    config_class = FastDistilBertConfig
    config: FastDistilBertConfig

    def __init__(self, config: FastDistilBertConfig):
        config = _as_fast_config(config)
        super().__init__(config)
        self.distilbert = FastDistilBertModel(config)

    @can_return_tuple
    def forward(self, input_ids=None, attention_mask=None, inputs_embeds=None, start_positions=None,
                end_positions=None, position_ids=None, **kwargs):
        # Inference of an INT8 model: the QA head reads the encoder's feature-major output directly (see
        # runtime.question_answering_logits); the same logits as HF's forward on our hidden states, up to the
        # head's summation order. Training, losses and extra outputs take HF's forward.
        encoder = self.distilbert
        if (input_ids is not None and start_positions is None and end_positions is None and not self.training
                and encoder._can_use_int8_kernels(inputs_embeds, position_ids, kwargs)):
            batch, _ = _validate_inputs(self.config, input_ids, attention_mask, inputs_embeds,
                                        *self._device_and_dtype())
            if batch:
                with torch.no_grad():
                    start, end = runtime.question_answering_logits(self, input_ids, attention_mask)
                return QuestionAnsweringModelOutput(start_logits=start, end_logits=end)
        return super().forward(input_ids=input_ids, attention_mask=attention_mask, inputs_embeds=inputs_embeds,
                               start_positions=start_positions, end_positions=end_positions,
                               position_ids=position_ids, **kwargs)

    @classmethod
    def from_hf(cls, model) -> "FastDistilBertForQuestionAnswering":
        """Converts an in-memory HF DistilBertForQuestionAnswering or BERT QA model (fp32, same weights)."""
        from .conversion import convert_to_fast

        return convert_to_fast(model)
