"""FastDistilBertConfig: DistilBertConfig plus the quantization section of a Fast checkpoint."""
from __future__ import annotations

from huggingface_hub.dataclasses import strict
from transformers import DistilBertConfig

from .errors import CheckpointError

# Version of the on-disk quantization layout (see `quantization_section`). Bump when the stored tensors change or a
# field that changes the model's numerics is added, so that an older reader refuses the checkpoint rather than
# computing something else. 2 added `attention`; version 1 sections (no such field) mean fp32 attention.
QUANTIZATION_FORMAT_VERSION = 2
READABLE_FORMAT_VERSIONS = (1, 2)
SUPPORTED_ACTIVATION_MODES = ("dynamic", "static")
SUPPORTED_ATTENTION_MODES = ("int8", "fp32")
# Value of `quantization["embeddings"]` for word embeddings stored as int8 codes + one fp32 scale per row
# (fastdistilbert.compact_embeddings). Absent key: fp32 word embeddings.
COMPACT_EMBEDDINGS_FORMAT = "int8-symmetric-per-row"


def quantization_section(activation: str = "dynamic", sparse_layers: dict | None = None,
                         attention: str = "int8") -> dict:
    """The `quantization` entry of config.json for an INT8 checkpoint.

    - `weights`: int8 symmetric per output channel, stored dense `[out, in]` with zeros where pruned.
    - `activation`: "dynamic" (per-token scales computed at run time, no calibration) or "static"
      (per-tensor `input_scale` / `input_zero_point` stored next to each quantized Linear).
    - `attention`: "int8" (the attention matmuls in INT8: Q per token, K and V symmetric per row, softmax
      probabilities as 8-bit codes; csrc/attention_int8.cpp) or "fp32" (what a version 1 section means).
    - `sparse_layers`: optional record of the block pattern and density each Linear was saved with;
      informational (the loader re-detects the pattern from the weights themselves).
    """
    if activation not in SUPPORTED_ACTIVATION_MODES:
        raise ValueError(f"activation must be one of {SUPPORTED_ACTIVATION_MODES}, got {activation!r}")
    if attention not in SUPPORTED_ATTENTION_MODES:
        raise ValueError(f"attention must be one of {SUPPORTED_ATTENTION_MODES}, got {attention!r}")
    section = {"format_version": QUANTIZATION_FORMAT_VERSION, "weights": "int8-symmetric-per-channel",
               "activation": activation, "attention": attention}
    if sparse_layers:
        section["sparse_layers"] = sparse_layers
    return section


def encoder_is_quantized(section) -> bool:
    """Whether a quantization section (config.json's dict, or None) makes the encoder Linears INT8: a section
    that records only compact word embeddings does not."""
    embeddings_only = isinstance(section, dict) and "embeddings" in section and \
        set(section) <= {"format_version", "embeddings"}
    return section is not None and not embeddings_only


def has_compact_embeddings(section) -> bool:
    """Whether a quantization section records int8 per-row word embeddings."""
    return isinstance(section, dict) and section.get("embeddings") == COMPACT_EMBEDDINGS_FORMAT


@strict
class FastDistilBertConfig(DistilBertConfig):
    r"""
    Configuration of a [`FastDistilBertModel`]: every DistilBertConfig field, plus

    quantization (`dict`, *optional*):
        `None` for an fp32 model (identical to DistilBERT). For an INT8 model, the dict built by
        `quantization_section()`: `{"format_version": 2, "weights": ..., "activation": "dynamic"|"static",
        "attention": "int8"|"fp32"}` (version 1 sections have no `attention`: fp32).
        Either may also hold `"embeddings": "int8-symmetric-per-row"` (word embeddings stored as int8 codes with
        one fp32 scale per row, see `fastdistilbert.compact_embeddings`); an fp32 model with compact embeddings
        has a section with only `format_version` and `embeddings`.
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
        if version not in READABLE_FORMAT_VERSIONS:
            raise CheckpointError(
                f"unsupported quantization format_version {version!r} in config.json (this fastdistilbert "
                f"reads versions {', '.join(map(str, READABLE_FORMAT_VERSIONS))}); upgrade fastdistilbert or "
                f"re-convert the model"
            )
        embeddings = q.get("embeddings")
        if embeddings is not None and embeddings != COMPACT_EMBEDDINGS_FORMAT:
            raise CheckpointError(
                f"config.quantization.embeddings must be {COMPACT_EMBEDDINGS_FORMAT!r} (or absent for fp32 word "
                f"embeddings), got {embeddings!r}"
            )
        if embeddings is not None and "weights" not in q and "activation" not in q:
            return  # fp32 encoder, compact word embeddings only
        if q.get("activation") not in SUPPORTED_ACTIVATION_MODES:
            raise CheckpointError(
                f"config.quantization.activation must be one of {SUPPORTED_ACTIVATION_MODES}, got {q.get('activation')!r}"
            )
        if q.get("attention", "fp32") not in SUPPORTED_ATTENTION_MODES:
            raise CheckpointError(
                f"config.quantization.attention must be one of {SUPPORTED_ATTENTION_MODES} (or absent: fp32), got "
                f"{q.get('attention')!r}"
            )

    @property
    def is_quantized(self) -> bool:
        """True when the encoder Linears are INT8 (compact word embeddings alone do not count)."""
        return encoder_is_quantized(self.quantization)

    @property
    def compact_embeddings(self) -> bool:
        """True when the word embeddings are stored as int8 codes + per-row fp32 scales."""
        return has_compact_embeddings(self.quantization)

    @property
    def static_activations(self) -> bool:
        return self.is_quantized and self.quantization.get("activation") == "static"

    @property
    def int8_attention(self) -> bool:
        """True when the attention matmuls run in INT8 (`quantization["attention"] == "int8"`)."""
        return self.is_quantized and self.quantization.get("attention", "fp32") == "int8"

    @classmethod
    def from_distilbert_config(cls, config: DistilBertConfig, **overrides) -> "FastDistilBertConfig":
        """A FastDistilBertConfig with every field of a vanilla DistilBertConfig (architectures dropped)."""
        values = config.to_dict()
        for key in ("model_type", "architectures", "auto_map", "transformers_version"):
            values.pop(key, None)
        values.update(overrides)
        # Built through __init__, not from_dict: from_dict keeps the vanilla model_type on the instance.
        return cls(**values)


__all__ = ["FastDistilBertConfig", "quantization_section", "QUANTIZATION_FORMAT_VERSION", "COMPACT_EMBEDDINGS_FORMAT"]
