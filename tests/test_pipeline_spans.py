"""Span search shared by the pipeline and the SQuAD evaluator, against a brute-force search."""
import itertools

import numpy as np
import pytest

from fastdistilbert.pipelines.spans import log_softmax, top_spans


def brute_force(start, end, allowed, max_answer_len):
    spans = [
        (start[s] + end[e], s, e)
        for s, e in itertools.product(range(len(start)), repeat=2)
        if allowed[s] and allowed[e] and 0 <= e - s < max_answer_len
    ]
    return sorted(spans, key=lambda span: (-span[0], span[1] * len(start) + span[2]))


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("max_answer_len", [1, 3, 30])
def test_top_spans_match_brute_force(seed, max_answer_len):
    rng = np.random.default_rng(seed)
    n = 37
    start, end = rng.normal(size=n), rng.normal(size=n)
    allowed = rng.random(n) < 0.7
    allowed[:3] = False  # question-like prefix
    expected = brute_force(start, end, allowed, max_answer_len)
    for k in (1, 5, 1000):
        starts, ends, scores = top_spans(start, end, allowed, max_answer_len, k)
        assert len(starts) == min(k, len(expected))
        assert [(s, e) for s, e in zip(starts, ends)] == [(s, e) for _, s, e in expected[:k]]
        assert scores == pytest.approx([score for score, _, _ in expected[:k]])


def test_top_spans_with_nothing_allowed():
    starts, ends, scores = top_spans(np.zeros(4), np.zeros(4), np.zeros(4, dtype=bool), 5, 3)
    assert len(starts) == len(ends) == len(scores) == 0


def test_top_spans_bad_arguments():
    with pytest.raises(ValueError, match="max_answer_len"):
        top_spans(np.zeros(4), np.zeros(4), np.ones(4, dtype=bool), 0, 1)
    with pytest.raises(ValueError, match="number of spans"):
        top_spans(np.zeros(4), np.zeros(4), np.ones(4, dtype=bool), 3, 0)


def test_log_softmax_normalises_over_the_mask_only():
    logits = np.array([1.0, 2.0, 3.0, 100.0])
    mask = np.array([True, True, True, False])
    out = log_softmax(logits, mask)
    assert np.exp(out[:3]).sum() == pytest.approx(1.0)
    assert out[3] == -np.inf
    assert out[2] - out[1] == pytest.approx(1.0)


def test_log_softmax_of_an_empty_mask_is_all_minus_infinity():
    out = log_softmax(np.array([1.0, 2.0]), np.array([False, False]))
    assert np.all(out == -np.inf)
