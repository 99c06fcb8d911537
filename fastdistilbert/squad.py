"""SQuAD v1.1 evaluation: the official exact-match / F1 metric and a model evaluator.

The metric follows the official v1.1 evaluation script: answers are normalised (lower case, ASCII punctuation
removed, the articles a/an/the removed, whitespace collapsed), a prediction scores the best over the ground
truths, and the totals are percentages over all questions. transformers 5.x no longer ships it (nor the SQuAD
processors), and `evaluate.load("squad")` needs the Hub, so it is written here.

The evaluator follows transformers' question-answering examples: contexts are split into windows of
`max_seq_len` tokens overlapping by `doc_stride`; in every window the `n_best` spans inside the context, at most
`max_answer_len` tokens long, are ranked by start logit + end logit; the best one over all windows, cut from the
context with the offset mapping, is the prediction. One deliberate difference: the example pairs only the
`n_best` highest start logits with the `n_best` highest end logits, which can miss the best valid span when those
pairs are all invalid; here the search covers every valid span of the window, so the prediction is the same
whenever the example finds a valid span among its pairs, and never a lower-scoring one.
"""
from __future__ import annotations

import json
import re
import string
from collections import Counter
from pathlib import Path

import torch
from tqdm.auto import tqdm

from .errors import UserError
from .pipelines.question_answering import forward_input_names
from .pipelines.spans import top_spans

_PUNCTUATION = frozenset(string.punctuation)  # ASCII only, as in the official script
_ARTICLES = re.compile(r"\b(a|an|the)\b")


# --- the official metric ------------------------------------------------------------------------------------


def normalize_answer(text: str) -> str:
    """Lower-case, drop ASCII punctuation, drop the articles a/an/the, collapse whitespace."""
    text = "".join(char for char in text.lower() if char not in _PUNCTUATION)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def exact_match_score(prediction: str, ground_truth: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(ground_truth))


def f1_score(prediction: str, ground_truth: str) -> float:
    prediction_tokens = normalize_answer(prediction).split()
    truth_tokens = normalize_answer(ground_truth).split()
    n_same = sum((Counter(prediction_tokens) & Counter(truth_tokens)).values())
    if n_same == 0:
        return 0.0
    precision = n_same / len(prediction_tokens)
    recall = n_same / len(truth_tokens)
    return 2 * precision * recall / (precision + recall)


def squad_metrics(predictions: dict[str, str], examples: list[dict]) -> dict[str, float]:
    """`{"exact_match", "f1"}` in percent over `examples`; a question without a prediction scores 0 (as in the
    official script)."""
    if not examples:
        raise ValueError("no SQuAD examples to score")
    exact = f1 = 0.0
    for example in examples:
        prediction = predictions.get(example["id"])
        if prediction is None:
            continue
        exact += max(exact_match_score(prediction, truth) for truth in example["answers"])
        f1 += max(f1_score(prediction, truth) for truth in example["answers"])
    return {"exact_match": 100.0 * exact / len(examples), "f1": 100.0 * f1 / len(examples)}


# --- data ---------------------------------------------------------------------------------------------------


def load_squad(path) -> list[dict]:
    """Examples of a SQuAD v1.1 JSON file: dicts with `id`, `title`, `question`, `context`, `answers` (texts) and
    `answer_starts`. A missing file, bad JSON or another layout raises `UserError`."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"SQuAD file not found: {path}")
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(document, dict) or not isinstance(document.get("data"), list):
        raise UserError(f"{path} is not in SQuAD format (no top-level 'data' list)")
    examples = []
    try:
        for article in document["data"]:
            for paragraph in article["paragraphs"]:
                for qa in paragraph["qas"]:
                    examples.append(
                        {
                            "id": str(qa["id"]),
                            "title": article.get("title", ""),
                            "question": qa["question"],
                            "context": paragraph["context"],
                            "answers": [answer["text"] for answer in qa["answers"]],
                            "answer_starts": [answer["answer_start"] for answer in qa["answers"]],
                        }
                    )
    except (KeyError, TypeError) as exc:
        raise UserError(f"{path} is not in SQuAD format (entry {len(examples)}: missing or bad field {exc})") from None
    if not examples:
        raise UserError(f"{path} holds no questions")
    unanswerable = [example["id"] for example in examples if not example["answers"]]
    if unanswerable:
        raise UserError(f"{path}: {len(unanswerable)} question(s) without answers (e.g. {unanswerable[0]}); SQuAD v1.1 needs one each")
    return examples


def examples_from_rows(rows) -> list[dict]:
    """Examples from rows in the Hugging Face `squad` dataset layout (`answers` = {"text": [...], "answer_start": [...]})."""
    return [
        {
            "id": str(row["id"]),
            "title": row.get("title", ""),
            "question": row["question"],
            "context": row["context"],
            "answers": list(row["answers"]["text"]),
            "answer_starts": list(row["answers"]["answer_start"]),
        }
        for row in rows
    ]


# --- the evaluator ------------------------------------------------------------------------------------------


def evaluate_squad(
    model,
    tokenizer,
    examples: list[dict],
    *,
    max_seq_len: int = 384,
    doc_stride: int = 128,
    n_best: int = 20,
    max_answer_len: int = 30,
    batch_size: int = 32,
    progress: bool = True,
) -> dict:
    """Official SQuAD v1.1 EM/F1 of `model` on `examples` (as `load_squad` returns them).

    Returns `{"exact_match", "f1", "n", "n_windows", "predictions": {id: text}, "nbest": {id: [candidates]}}`.
    """
    _check_settings(model, tokenizer, examples, max_seq_len, doc_stride, n_best, max_answer_len, batch_size)
    model.eval()
    input_names = forward_input_names(model, tokenizer)
    predictions: dict[str, str] = {}
    nbest: dict[str, list[dict]] = {}
    n_windows = 0
    with tqdm(total=len(examples), desc="SQuAD eval", unit="q", disable=not progress) as bar:
        for first in range(0, len(examples), batch_size):
            chunk = examples[first : first + batch_size]
            candidates = [[] for _ in chunk]
            for window, start_logits, end_logits in _windows_with_logits(
                model, tokenizer, chunk, input_names, max_seq_len, doc_stride, batch_size
            ):
                n_windows += 1
                candidates[window["example"]].extend(_window_candidates(window, start_logits, end_logits, chunk, n_best, max_answer_len))
            for example, found in zip(chunk, candidates):
                found.sort(key=lambda candidate: candidate["score"], reverse=True)
                nbest[example["id"]] = found[:n_best]
                predictions[example["id"]] = found[0]["text"] if found else ""
            bar.update(len(chunk))
    return {**squad_metrics(predictions, examples), "n": len(examples), "n_windows": n_windows, "predictions": predictions, "nbest": nbest}


def _check_settings(model, tokenizer, examples, max_seq_len, doc_stride, n_best, max_answer_len, batch_size) -> None:
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError(f"SQuAD evaluation needs a fast tokenizer (offset mappings); got {type(tokenizer).__name__}")
    if not examples:
        raise ValueError("no SQuAD examples to evaluate")
    for name, value in (("n_best", n_best), ("max_answer_len", max_answer_len), ("batch_size", batch_size), ("max_seq_len", max_seq_len)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer (got {value!r})")
    model_limit = getattr(model.config, "max_position_embeddings", None)
    if model_limit is not None and max_seq_len > model_limit:
        raise ValueError(f"max_seq_len={max_seq_len} exceeds the model's max_position_embeddings ({model_limit})")
    question_lengths = [len(ids) for ids in tokenizer([e["question"].lstrip() for e in examples], add_special_tokens=False)["input_ids"]]
    longest = max(range(len(examples)), key=question_lengths.__getitem__)
    room = max_seq_len - question_lengths[longest] - tokenizer.num_special_tokens_to_add(pair=True)
    if room <= doc_stride:
        raise ValueError(
            f"question {examples[longest]['id']} has {question_lengths[longest]} tokens, which leaves {max(room, 0)} "
            f"context tokens per {max_seq_len}-token window; that must exceed doc_stride={doc_stride}"
        )


def _windows_with_logits(model, tokenizer, chunk, input_names, max_seq_len, doc_stride, batch_size):
    """Yield (window, start_logits, end_logits) for every window of the chunk's examples."""
    # transformers' example strips the questions' leading whitespace: some SQuAD questions have a lot of it.
    encoded = tokenizer(
        [example["question"].lstrip() for example in chunk],
        [example["context"] for example in chunk],
        truncation="only_second",
        max_length=max_seq_len,
        stride=doc_stride,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
        padding="longest",
        return_tensors="pt",
    )
    n = encoded["input_ids"].shape[0]
    device = model.device
    for first in range(0, n, batch_size):
        rows = slice(first, min(first + batch_size, n))
        with torch.inference_mode():
            output = model(**{name: encoded[name][rows].to(device) for name in input_names})
        start_logits, end_logits = output["start_logits"].float().cpu().numpy(), output["end_logits"].float().cpu().numpy()
        for row in range(rows.start, rows.stop):
            window = {
                "example": int(encoded["overflow_to_sample_mapping"][row]),
                "context": [sid == 1 for sid in encoded.sequence_ids(row)],
                "offsets": encoded["offset_mapping"][row].tolist(),
            }
            yield window, start_logits[row - first], end_logits[row - first]


def _window_candidates(window, start_logits, end_logits, chunk, n_best, max_answer_len) -> list[dict]:
    context = chunk[window["example"]]["context"]
    offsets = window["offsets"]
    starts, ends, scores = top_spans(start_logits, end_logits, window["context"], max_answer_len, n_best)
    return [
        {"score": float(score), "start": offsets[s][0], "end": offsets[e][1], "text": context[offsets[s][0] : offsets[e][1]]}
        for s, e, score in zip(starts, ends, scores)
    ]
