"""The official SQuAD v1.1 metric, on hand-computed cases and tricky strings."""
import pytest

from fastdistilbert.squad import exact_match_score, f1_score, normalize_answer, squad_metrics


@pytest.mark.parametrize(
    "raw, normalized",
    [
        ("The Eiffel Tower", "eiffel tower"),
        ("  a   cat\tand\nan  owl ", "cat and owl"),
        ("Theatre, then ANOTHER apple", "theatre then another apple"),  # articles only as whole words
        ("U.S.A.", "usa"),
        ("rock'n'roll!", "rocknroll"),
        ("the-end", "theend"),  # punctuation goes first, so "the-end" is one word and keeps its "the"
        ("a", ""),
        ("", ""),
        ("«Bonjour» — l’été", "«bonjour» — l’été"),  # the official script strips ASCII punctuation only
        ("ÉCOLE  Normale", "école normale"),
    ],
)
def test_normalize_answer_matches_the_official_script(raw, normalized):
    assert normalize_answer(raw) == normalized


def test_exact_match_ignores_case_articles_punctuation_and_spacing():
    assert exact_match_score("the Denver Broncos.", "Denver  Broncos") == 1.0
    assert exact_match_score("Denver", "Denver Broncos") == 0.0
    assert exact_match_score("", "") == 1.0
    assert exact_match_score("", "a") == 1.0  # both normalise to ""


def test_f1_hand_computed():
    # prediction tokens: denver broncos team; truth: denver broncos -> p = 2/3, r = 1, f1 = 0.8
    assert f1_score("Denver Broncos team", "the Denver Broncos") == pytest.approx(0.8)
    # repeated tokens count with multiplicity: pred "a b b" -> "b b", truth "b c": common 1, p 1/2, r 1/2
    assert f1_score("a b b", "b c") == pytest.approx(0.5)
    assert f1_score("Carolina Panthers", "Denver Broncos") == 0.0
    assert f1_score("", "Denver") == 0.0
    assert f1_score("", "") == 0.0  # v1.1 has no special case for empty answers: no common token


def test_squad_metrics_take_the_best_ground_truth_and_count_missing_predictions_as_zero():
    examples = [
        {"id": "1", "answers": ["Denver Broncos", "the Broncos"]},
        {"id": "2", "answers": ["Santa Clara, California"]},
        {"id": "3", "answers": ["gold"]},
    ]
    predictions = {"1": "Broncos", "2": "Santa Clara"}
    metrics = squad_metrics(predictions, examples)
    # 1: EM 1 against "the Broncos"; 2: EM 0, F1 = 2*(1*2/3)/(1+2/3) = 0.8; 3: missing -> 0
    assert metrics["exact_match"] == pytest.approx(100 / 3)
    assert metrics["f1"] == pytest.approx(100 * (1 + 0.8) / 3)


def test_squad_metrics_reject_an_empty_set():
    with pytest.raises(ValueError, match="no SQuAD examples"):
        squad_metrics({}, [])
