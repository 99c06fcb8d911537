"""FastDistilBertConfig: DistilBertConfig plus the quantization section of a Fast checkpoint."""
from __future__ import annotations

from huggingface_hub.dataclasses import strict
from transformers import DistilBertConfig

from .errors import CheckpointError

# Version of the on-disk quantization layout (see `quantization_section`). Bump when the stored tensors change.
QUANTIZATION_FORMAT_VERSION = 1
SUPPORTED_ACTIVATION_MODES = ("dynamic", "static")


def quantization_section(activation: str = "dynamic", sparse_layers: dict | None = None) -> dict:
    """The `quantization` entry of config.json for an INT8 checkpoint.

    - `weights`: int8 symmetric per output channel, stored dense `[out, in]` with zeros where pruned.
    - `activation`: "dynamic" (per-token scales computed at run time, no calibration) or "static"
      (per-tensor `input_scale` / `input_zero_point` stored next to each quantized Linear).
    - `sparse_layers`: optional record of the block pattern and density each Linear was saved with;
      informational (the loader re-detects the pattern from the weights themselves).
    """
    if activation not in SUPPORTED_ACTIVATION_MODES:
        raise ValueError(f"activation must be one of {SUPPORTED_ACTIVATION_MODES}, got {activation!r}")
    section = {"format_version": QUANTIZATION_FORMAT_VERSION, "weights": "int8-symmetric-per-channel",
               "activation": activation}
    if sparse_layers:
        section["sparse_layers"] = sparse_layers
    return section


@strict
class FastDistilBertConfig(DistilBertConfig):
    r"""
    Configuration of a [`FastDistilBertModel`]: every DistilBertConfig field, plus

    quantization (`dict`, *optional*):
        `None` for an fp32 model (identical to DistilBERT). For an INT8 model, the dict built by
        `quantization_section()`: `{"format_version": 1, "weights": ..., "activation": "dynamic"|"static"}`.
    """

    model_type = "fast_distilbert"

    quantization: dict | None = None

    def check_quantization(self) -> None:
        """Refuses a quantization section this version cannot read (a newer format, an unknown mode)."""
        q = self.quantization
        if q is None:
            return
        if not isinstance(q, dict):
            raise CheckpointError(f"config.quantization must be a dict or null, got {type(q).__name__}")
        version = q.get("format_version")
        if version != QUANTIZATION_FORMAT_VERSION:
            raise CheckpointError(
                f"unsupported quantization format_version {version!r} in config.json (this fastdistilbert "
                f"reads version {QUANTIZATION_FORMAT_VERSION}); upgrade fastdistilbert or re-convert the model"
            )
        if q.get("activation") not in SUPPORTED_ACTIVATION_MODES:
            raise CheckpointError(
                f"config.quantization.activation must be one of {SUPPORTED_ACTIVATION_MODES}, got {q.get('activation')!r}"
            )

    @property
    def is_quantized(self) -> bool:
        return self.quantization is not None

    @property
    def static_activations(self) -> bool:
        return self.is_quantized and self.quantization.get("activation") == "static"

    @classmethod
    def from_distilbert_config(cls, config: DistilBertConfig, **overrides) -> "FastDistilBertConfig":
        """A FastDistilBertConfig with every field of a vanilla DistilBertConfig (architectures dropped)."""
        values = config.to_dict()
        for key in ("model_type", "architectures", "auto_map", "transformers_version"):
            values.pop(key, None)
        values.update(overrides)
        # Built through __init__, not from_dict: from_dict keeps the vanilla model_type on the instance.
        return cls(**values)


__all__ = ["FastDistilBertConfig", "quantization_section", "QUANTIZATION_FORMAT_VERSION"]
