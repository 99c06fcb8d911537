"""Answer-span search shared by the question-answering pipeline and the SQuAD evaluator.

Both rank a window's candidate answers by `start_score[s] + end_score[e]` over the valid spans: start and end
inside the allowed tokens (the context), `s <= e` and at most `max_answer_len` tokens long. The evaluator feeds
raw logits (transformers' SQuAD example ranks by the logit sum); the pipeline feeds log-probabilities, whose sum
ranks spans exactly as the product of start and end probabilities does.
"""
from __future__ import annotations

import numpy as np


def top_spans(
    start_scores: np.ndarray, end_scores: np.ndarray, allowed: np.ndarray, max_answer_len: int, k: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The `k` best valid spans of one window, best first: `(starts, ends, scores)` as token indices and summed
    scores. Fewer than `k` come back when the window has fewer valid spans (none when nothing is allowed)."""
    if max_answer_len < 1:
        raise ValueError(f"max_answer_len must be >= 1 (got {max_answer_len})")
    if k < 1:
        raise ValueError(f"the number of spans must be >= 1 (got {k})")
    positions = np.flatnonzero(np.asarray(allowed, dtype=bool))
    if positions.size == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, np.zeros(0, dtype=np.float64)
    starts = np.asarray(start_scores, dtype=np.float64)[positions]
    ends = np.asarray(end_scores, dtype=np.float64)[positions]
    # Rows are starts, columns ends, both over the allowed positions only (the context may be cut by a window).
    length = positions[None, :] - positions[:, None]
    valid = (length >= 0) & (length < max_answer_len)
    scores = np.where(valid, starts[:, None] + ends[None, :], -np.inf).ravel()
    n_valid = int(valid.sum())
    k = min(k, n_valid)
    if k == 1:
        best = np.array([int(np.argmax(scores))])
    else:
        best = np.argpartition(-scores, k - 1)[:k]
        # Stable sort on the score with the flat index as tie-break keeps the order deterministic.
        best = best[np.lexsort((best, -scores[best]))]
    rows, cols = np.unravel_index(best, valid.shape)
    return positions[rows], positions[cols], scores[best]


def log_softmax(logits: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Log-softmax over the positions where `mask` is true; masked positions get -inf (all of them when the
    mask is empty)."""
    logits = np.where(mask, np.asarray(logits, dtype=np.float64), -np.inf)
    if not np.any(mask):
        return logits
    shifted = logits - logits.max()
    return shifted - np.log(np.exp(shifted).sum())
