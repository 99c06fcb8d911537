"""Extractive question answering as a `transformers` pipeline, for any `AutoModelForQuestionAnswering` model.

transformers removed its own extractive question-answering pipeline in 5.3.0. This one keeps the behaviour
users relied on in 5.2 (same arguments, same output dicts, same scores):

- long contexts are split into windows of `max_seq_len` tokens that overlap by `doc_stride` tokens;
- per window, start and end logits become probabilities (softmax over the context tokens and [CLS]); a span's
  score is P(start) * P(end); spans end after they start and are at most `max_answer_len` tokens long;
- candidates with the same text (case-insensitive) are merged by adding their scores, across windows;
- `align_to_words` widens a span to whole words of the context; `handle_impossible_answer` adds the empty
  answer `{"score": null score, "start": 0, "end": 0, "answer": ""}`, its score being the smallest [CLS]
  probability over the windows;
- one answer comes back as a dict, several (or one per input for several inputs) as a list.

Differences from 5.2: `max_question_len` truncates the question with fast tokenizers too (5.2 applied it only to
slow ones); a fast tokenizer (offset mappings) is required; bad input raises a clear `ValueError` up front
(empty question or context, a window too small for the question and `doc_stride`); the pipeline stays on the
model's device (CPU for a freshly loaded model) instead of moving to the first GPU, and puts the model in eval
mode (no dropout).

Supported transformers: >=5.3,<6 (the range the package pins; see `fastdistilbert.pipelines.register_pipelines`).
"""
from __future__ import annotations

import inspect
import types
from dataclasses import dataclass

import numpy as np
import torch
from transformers.pipelines.base import ChunkPipeline

from .spans import log_softmax, top_spans

DEFAULT_MAX_SEQ_LEN = 384
DEFAULT_DOC_STRIDE = 128
DEFAULT_MAX_QUESTION_LEN = 64
DEFAULT_MAX_ANSWER_LEN = 15


def forward_input_names(model, tokenizer) -> list[str]:
    """The tokenizer outputs that the model's forward takes by name (DistilBERT takes no token_type_ids)."""
    parameters = inspect.signature(model.forward).parameters
    return [name for name in tokenizer.model_input_names if name in parameters]


@dataclass(frozen=True)
class QAExample:
    """One question about one context."""

    question: str
    context: str


def _example_from(item) -> QAExample:
    """A validated QAExample from a QAExample or a `{"question": ..., "context": ...}` dict."""
    if isinstance(item, QAExample):
        question, context = item.question, item.context
    elif isinstance(item, dict):
        missing = [key for key in ("question", "context") if key not in item]
        if missing:
            raise ValueError(f"a question-answering input needs the keys 'question' and 'context' (missing: {missing})")
        question, context = item["question"], item["context"]
    else:
        raise ValueError(f"a question-answering input must be a dict with 'question' and 'context', got {type(item).__name__}")
    for name, value in (("question", question), ("context", context)):
        if not isinstance(value, str):
            raise ValueError(f"`{name}` must be a string, got {type(value).__name__}")
        if not value.strip():
            raise ValueError(f"`{name}` cannot be empty")
    return QAExample(question, context)


def _examples_from_call(args: tuple, question, context):
    """Everything the pipeline accepts, as a list of examples (generators and datasets pass through lazily)."""
    if question is not None or context is not None:
        if args:
            raise ValueError("give the inputs either positionally or as question=..., context=..., not both")
        if question is None or context is None:
            raise ValueError("`question` and `context` must be given together")
        if isinstance(question, str) and isinstance(context, str):
            return [_example_from({"question": question, "context": context})]
        if isinstance(question, list) and isinstance(context, str):
            return [_example_from({"question": q, "context": context}) for q in question]
        if isinstance(question, list) and isinstance(context, list):
            if len(question) != len(context):
                raise ValueError(f"got {len(question)} questions but {len(context)} contexts")
            return [_example_from({"question": q, "context": c}) for q, c in zip(question, context)]
        raise ValueError(
            f"`question` and `context` must be strings or lists of strings "
            f"(got {type(question).__name__} and {type(context).__name__})"
        )
    if len(args) == 2 and all(isinstance(arg, str) for arg in args):
        return [_example_from({"question": args[0], "context": args[1]})]
    if len(args) != 1:
        raise ValueError("pass question=..., context=..., a dict, or a list of dicts")
    inputs = args[0]
    if isinstance(inputs, types.GeneratorType) or isinstance(inputs, torch.utils.data.Dataset):
        return inputs  # validated item by item in preprocess
    if isinstance(inputs, (dict, QAExample)):
        return [_example_from(inputs)]
    if isinstance(inputs, (list, tuple)):
        if not inputs:
            raise ValueError("got an empty list of questions")
        return [_example_from(item) for item in inputs]
    raise ValueError(f"cannot read question-answering inputs of type {type(inputs).__name__}")


class QuestionAnsweringPipeline(ChunkPipeline):
    """Answer questions by extracting spans of the context, with any `AutoModelForQuestionAnswering` model.

    ```python
    >>> import fastdistilbert  # registers the task
    >>> from transformers import pipeline
    >>> qa = pipeline("question-answering", model=model, tokenizer=tokenizer)
    >>> qa(question="Where do I live?", context="My name is Wolfgang and I live in Berlin")
    {'score': ..., 'start': 34, 'end': 40, 'answer': 'Berlin'}
    ```

    Call arguments: `top_k` (1), `max_answer_len` (15), `handle_impossible_answer` (False), `align_to_words`
    (True), `max_seq_len` (384, at most the tokenizer's and the model's limits), `doc_stride` (128, at most half
    of `max_seq_len`), `max_question_len` (64), `batch_size` (windows per forward pass).
    """

    default_input_names = "question,context"
    _load_tokenizer = True
    _load_processor = False
    _load_image_processor = False
    _load_feature_extractor = False

    def __init__(self, model, tokenizer=None, task: str = "", device=None, **kwargs):
        if tokenizer is None:
            raise ValueError("the question-answering pipeline needs a tokenizer")
        if not getattr(tokenizer, "is_fast", False):
            raise ValueError(
                f"the question-answering pipeline needs a fast tokenizer (offset mappings); got {type(tokenizer).__name__}"
            )
        if device is None and getattr(model, "hf_device_map", None) is None:
            # Pipeline's default is the first GPU when one exists; stay where the model is (CPU unless moved).
            device = model.device
        super().__init__(model=model, tokenizer=tokenizer, task=task, device=device, **kwargs)
        # A model built in code starts in training mode; dropout would make the answers random.
        self.model.eval()
        self._model_input_names = forward_input_names(model, tokenizer)

    def _sanitize_parameters(
        self,
        padding=None,
        top_k=None,
        doc_stride=None,
        max_answer_len=None,
        max_seq_len=None,
        max_question_len=None,
        handle_impossible_answer=None,
        align_to_words=None,
        **unknown,
    ):
        if unknown:
            raise TypeError(f"unknown question-answering argument(s): {sorted(unknown)}")
        preprocess = {}
        for name, value in (("doc_stride", doc_stride), ("max_seq_len", max_seq_len), ("max_question_len", max_question_len)):
            if value is not None:
                _check_int(name, value, minimum=0 if name == "doc_stride" else 1)
                preprocess[name] = value
        if padding is not None:
            preprocess["padding"] = padding
        postprocess = {}
        for name, value in (("top_k", top_k), ("max_answer_len", max_answer_len)):
            if value is not None:
                _check_int(name, value, minimum=1)
                postprocess[name] = value
        if handle_impossible_answer is not None:
            postprocess["handle_impossible_answer"] = bool(handle_impossible_answer)
        if align_to_words is not None:
            postprocess["align_to_words"] = bool(align_to_words)
        return preprocess, {}, postprocess

    def __call__(self, *args, question=None, context=None, **kwargs):
        """Answer `question=..., context=...` (strings or lists), a dict, a list of dicts, or a generator/dataset
        of dicts. Returns `{score, start, end, answer}` (character offsets into the context), a list of them for
        `top_k > 1`, and one result per input when several are given."""
        examples = _examples_from_call(args, question, context)
        if isinstance(examples, list) and len(examples) == 1:
            return super().__call__(examples[0], **kwargs)
        return super().__call__(examples, **kwargs)

    def _window_limits(self, max_seq_len, doc_stride) -> tuple[int, int]:
        model_limit = getattr(self.model.config, "max_position_embeddings", None) or DEFAULT_MAX_SEQ_LEN
        if max_seq_len is None:
            max_seq_len = min(self.tokenizer.model_max_length, DEFAULT_MAX_SEQ_LEN, model_limit)
        elif max_seq_len > model_limit:
            raise ValueError(f"max_seq_len={max_seq_len} exceeds the model's max_position_embeddings ({model_limit})")
        if doc_stride is None:
            doc_stride = min(max_seq_len // 2, DEFAULT_DOC_STRIDE)
        return max_seq_len, doc_stride

    def _truncated_question(self, question: str, max_question_len: int) -> tuple[str, int]:
        """The question cut to `max_question_len` tokens, and its token count."""
        offsets = self.tokenizer(question, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
        if len(offsets) > max_question_len:
            return question[: offsets[max_question_len - 1][1]], max_question_len
        return question, len(offsets)

    def preprocess(self, example, padding="do_not_pad", doc_stride=None, max_question_len=DEFAULT_MAX_QUESTION_LEN, max_seq_len=None):
        example = _example_from(example)
        max_seq_len, doc_stride = self._window_limits(max_seq_len, doc_stride)
        question, question_len = self._truncated_question(example.question, max_question_len)
        room = max_seq_len - question_len - self.tokenizer.num_special_tokens_to_add(pair=True)
        if room <= doc_stride:
            raise ValueError(
                f"a window of max_seq_len={max_seq_len} tokens leaves {max(room, 0)} tokens of context after the "
                f"{question_len}-token question; that must exceed doc_stride={doc_stride} "
                "(raise max_seq_len, or lower doc_stride or max_question_len)"
            )
        # Tokenizers that pad on the left put the context first (as transformers' pipeline did).
        question_first = self.tokenizer.padding_side == "right"
        context_index = 1 if question_first else 0
        encoded = self.tokenizer(
            text=question if question_first else example.context,
            text_pair=example.context if question_first else question,
            padding=padding,
            truncation="only_second" if question_first else "only_first",
            max_length=max_seq_len,
            stride=doc_stride,
            return_overflowing_tokens=True,
            return_offsets_mapping=True,
        )
        n_windows = len(encoded["input_ids"])
        for window in range(n_windows):
            sequence_ids = encoded.sequence_ids(window)
            input_ids = encoded["input_ids"][window]
            tensors = {name: encoded[name][window] for name in self.tokenizer.model_input_names if name in encoded}
            tensors["context_mask"] = [int(sid == context_index) for sid in sequence_ids]
            tensors["cls_mask"] = [int(token == self.tokenizer.cls_token_id) for token in input_ids]
            yield {
                **{name: torch.tensor([values], dtype=torch.long) for name, values in tensors.items()},
                "example": example,
                "encoding": encoded[window],
                "context_index": context_index,
                "is_last": window == n_windows - 1,
            }

    def _forward(self, inputs):
        model_inputs = {name: inputs[name] for name in self._model_input_names}
        output = self.model(**model_inputs)
        if isinstance(output, dict):
            if "start_logits" not in output or "end_logits" not in output:
                raise ValueError(f"{type(self.model).__name__} returned no start_logits/end_logits: not a question-answering model")
            start, end = output["start_logits"], output["end_logits"]
        else:
            start, end = output[:2]
        return {"start": start, "end": end, **inputs}

    def postprocess(self, model_outputs, top_k=1, handle_impossible_answer=False, max_answer_len=DEFAULT_MAX_ANSWER_LEN, align_to_words=True):
        # Some candidates collapse into one when widened to words, so fetch extra ones (as transformers did).
        candidates_per_window = top_k * 2 + 10 if align_to_words else top_k
        answers: dict[str, dict] = {}  # lower-cased answer text -> answer; same texts add their scores
        null_score = None
        for output in model_outputs:
            window = _WindowScores.from_output(output, self.tokenizer.padding_side)
            if handle_impossible_answer and window.cls_position is not None:
                score = window.null_probability()
                null_score = score if null_score is None else min(null_score, score)
            starts, ends, log_scores = top_spans(
                window.start_log_probs, window.end_log_probs, window.context, max_answer_len, candidates_per_window
            )
            for start, end, log_score in zip(starts, ends, log_scores):
                char_start, char_end = window.char_span(int(start), int(end), align_to_words)
                text = window.context_text[char_start:char_end]
                score = float(np.exp(log_score))
                if text.lower() in answers:
                    answers[text.lower()]["score"] += score
                else:
                    answers[text.lower()] = {"score": score, "start": char_start, "end": char_end, "answer": text}
        ranked = list(answers.values())
        if handle_impossible_answer:
            ranked.append({"score": 0.0 if null_score is None else null_score, "start": 0, "end": 0, "answer": ""})
        ranked = sorted(ranked, key=lambda answer: answer["score"], reverse=True)[:top_k]
        return ranked[0] if len(ranked) == 1 else ranked


class _WindowScores:
    """One window's start/end log-probabilities and the maps from its tokens back to context characters."""

    def __init__(self, start_logits, end_logits, context, cls, encoding, context_index, context_text, shift):
        # transformers' pipeline normalised over the context tokens and [CLS]: keep that, scores depend on it.
        normaliser = context | cls
        self.start_log_probs = log_softmax(start_logits, normaliser)
        self.end_log_probs = log_softmax(end_logits, normaliser)
        self.context = context
        self.cls_position = int(np.flatnonzero(cls)[0]) if cls.any() else None
        self.encoding = encoding
        self.context_index = context_index
        self.context_text = context_text
        self.shift = shift

    @classmethod
    def from_output(cls, output, padding_side: str) -> "_WindowScores":
        attention = output["attention_mask"][0].numpy().astype(bool) if "attention_mask" in output else None
        context = output["context_mask"][0].numpy().astype(bool)
        cls_mask = output["cls_mask"][0].numpy().astype(bool)
        if attention is not None:
            context, cls_mask = context & attention, cls_mask & attention
        encoding = output["encoding"]
        # Batching pads windows; on the left that shifts every token index relative to the encoding.
        padded_len = output["input_ids"].shape[-1]
        shift = padded_len - len(encoding.ids) if padding_side == "left" else 0
        return cls(
            output["start"][0].float().numpy(),
            output["end"][0].float().numpy(),
            context,
            cls_mask,
            encoding,
            output["context_index"],
            output["example"].context,
            shift,
        )

    def null_probability(self) -> float:
        position = self.cls_position
        return float(np.exp(self.start_log_probs[position] + self.end_log_probs[position]))

    def char_span(self, start: int, end: int, align_to_words: bool) -> tuple[int, int]:
        """Character offsets in the context of the token span [start, end] (inclusive)."""
        start, end = start - self.shift, end - self.shift
        if align_to_words:
            start_word, end_word = self.encoding.token_to_word(start), self.encoding.token_to_word(end)
            if start_word is not None and end_word is not None:
                return (
                    self.encoding.word_to_chars(start_word, sequence_index=self.context_index)[0],
                    self.encoding.word_to_chars(end_word, sequence_index=self.context_index)[1],
                )
        return self.encoding.offsets[start][0], self.encoding.offsets[end][1]


def _check_int(name: str, value, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"`{name}` must be an integer >= {minimum} (got {value!r})")
