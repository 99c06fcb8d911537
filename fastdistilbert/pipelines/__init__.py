"""Pipelines fastdistilbert puts back into `transformers.pipeline`.

`register_pipelines()` makes `transformers.pipeline("question-answering", model=..., tokenizer=...)` build our
`QuestionAnsweringPipeline` for any `AutoModelForQuestionAnswering` model. Supported transformers: >=5.3,<6 (the
releases without their own extractive QA pipeline, the range the package pins). Registration on any other
version fails with a message saying so rather than replacing or breaking transformers' own pipeline registry.
"""
from __future__ import annotations

import transformers
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from .question_answering import QAExample, QuestionAnsweringPipeline

SUPPORTED_TRANSFORMERS = SpecifierSet(">=5.3,<6")
TASK = "question-answering"


def _check_transformers_version(version: str) -> None:
    if not SUPPORTED_TRANSFORMERS.contains(Version(version), prereleases=True):
        raise RuntimeError(
            f"fastdistilbert's {TASK} pipeline supports transformers {SUPPORTED_TRANSFORMERS} but "
            f"transformers {version} is installed; install a supported release "
            f"(pip install 'transformers{SUPPORTED_TRANSFORMERS}')"
        )


def register_pipelines() -> None:
    """Register the extractive question-answering pipeline with transformers (idempotent)."""
    _check_transformers_version(transformers.__version__)
    from transformers import AutoModelForQuestionAnswering
    from transformers import pipelines as hf_pipelines

    if not hasattr(hf_pipelines, "PIPELINE_REGISTRY"):
        raise RuntimeError(
            f"transformers {transformers.__version__} has no transformers.pipelines.PIPELINE_REGISTRY: "
            f"cannot register the {TASK} pipeline (supported: transformers {SUPPORTED_TRANSFORMERS})"
        )
    registry = hf_pipelines.PIPELINE_REGISTRY
    # transformers >= 5.3 lists the task as removed and raises KeyError before looking at the registry.
    getattr(hf_pipelines, "REMOVED_TASKS", {}).pop(TASK, None)
    if registry.supported_tasks.get(TASK, {}).get("impl") is not QuestionAnsweringPipeline:
        registry.register_pipeline(
            TASK, pipeline_class=QuestionAnsweringPipeline, pt_model=AutoModelForQuestionAnswering, type="text"
        )


__all__ = ["QAExample", "QuestionAnsweringPipeline", "register_pipelines", "SUPPORTED_TRANSFORMERS"]
