"""fastdistilbert: fast, faithful DistilBERT question answering on CPUs.

Importing the package registers `fast_distilbert` with AutoConfig, AutoModel and AutoModelForQuestionAnswering,
and makes `transformers.pipeline("question-answering")` work again (for any extractive QA model).
"""
from transformers import AutoConfig, AutoModel, AutoModelForQuestionAnswering

from ._extension import active_isa, available_isas, compiled_isas, set_isa
from .configuration_fast_distilbert import FastDistilBertConfig
from .conversion import convert_to_fast, quantize_model
from .embedding_quantization import compact_embeddings
from . import ops_available
from .errors import CheckpointError, UserError
from .modeling_fast_distilbert import FastDistilBertForQuestionAnswering, FastDistilBertModel

__version__ = "0.1.0"

AutoConfig.register(FastDistilBertConfig.model_type, FastDistilBertConfig, exist_ok=True)
AutoModel.register(FastDistilBertConfig, FastDistilBertModel, exist_ok=True)
AutoModelForQuestionAnswering.register(FastDistilBertConfig, FastDistilBertForQuestionAnswering, exist_ok=True)


def _register_pipelines() -> None:
    """Puts pipeline("question-answering") back; on an unsupported transformers the model still imports."""
    import warnings

    from .pipelines import register_pipelines

    try:
        register_pipelines()
    except RuntimeError as exc:
        warnings.warn(str(exc), RuntimeWarning, stacklevel=3)


_register_pipelines()

__all__ = [
    "FastDistilBertConfig",
    "FastDistilBertModel",
    "FastDistilBertForQuestionAnswering",
    "convert_to_fast",
    "quantize_model",
    "compact_embeddings",
    "CheckpointError",
    "UserError",
    "active_isa",
    "available_isas",
    "compiled_isas",
    "set_isa",
    "__version__",
]
