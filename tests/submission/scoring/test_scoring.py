"""Label probabilities, rubric masking, decisions, threshold fitting and the free-text fallback."""

import math

import numpy as np
import pytest
from sklearn.metrics import accuracy_score

from submission.scoring.decoding import (
    LABELS,
    Decision,
    decide,
    expected_score,
    extract_score_from_text,
    fit_minus_one_threshold,
    fit_thresholds,
    label_logprobs,
    probabilities_from_label_logits,
)


def test_renormalises_over_allowed_labels_only():
    logits = np.array([[0.0, math.log(1), math.log(2), math.log(3), math.log(4)]])
    probs = probabilities_from_label_logits(logits, [(0, 1, 2)])
    np.testing.assert_allclose(probs, [[0, 1 / 6, 2 / 6, 3 / 6, 0]])


def test_logprobs_with_missing_labels_get_a_floor_below_the_smallest_shown():
    class Logprob:  # the shape of vllm.sequence.Logprob
        def __init__(self, logprob):
            self.logprob = logprob

    label_ids = [10, 11, 12, 13, 14]
    top = [{11: Logprob(-0.1), 12: Logprob(-2.5), 99: Logprob(-3.0)}]
    probs = probabilities_from_label_logits(label_logprobs(top, label_ids), [(0, 1, 2, 3)])
    # label 2 and 3 are missing: floor = -3.0 - 1.0 = -4.0
    weights = np.exp([-0.1, -2.5, -4.0, -4.0])
    np.testing.assert_allclose(probs[0, 1:], weights / weights.sum())
    assert probs[0, 0] == 0.0


def test_logprobs_without_any_allowed_label_are_uniform():
    probs = probabilities_from_label_logits(label_logprobs([{99: -0.01}], [1, 2, 3, 4, 5]), [(0, 1)])
    np.testing.assert_allclose(probs, [[0, 0.5, 0.5, 0, 0]])


def test_argmax_respects_the_rubric():
    probs = np.array([[0.0, 0.1, 0.1, 0.1, 0.7]])
    assert decide(probs, [(0, 1, 2, 3)]) == [3]
    assert decide(probs, [(0, 1, 2)]) == [2]  # 3 not allowed: nearest allowed label


def test_thresholds_on_expected_score():
    probs = np.array([[0, 0.5, 0, 0, 0.5], [0, 0, 0, 0.2, 0.8], [0.9, 0.1, 0, 0, 0]])
    assert expected_score(probs)[:2].tolist() == pytest.approx([1.5, 2.8])
    decision = Decision("thresholds", (0.5, 1.4, 2.9))
    assert decide(probs, [LABELS] * 3, decision) == [2, 2, -1]


def test_decision_round_trip_and_validation():
    d = Decision("thresholds", (0.4, 1.5, 2.6))
    assert Decision.from_dict(d.to_dict()) == d
    assert Decision.from_dict(None) == Decision()
    with pytest.raises(ValueError, match="3 increasing"):
        Decision.from_dict({"rule": "thresholds", "thresholds": [2, 1, 3]})


def test_fit_thresholds_beats_argmax_when_probabilities_are_biased():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, size=400)
    # A model that always puts its top mass one class too low but keeps the ordering in the expected score.
    probs = np.zeros((400, 5))
    for i, label in enumerate(y):
        low = max(label - 1, 0)
        probs[i, low + 1] = 0.6
        probs[i, label + 1] += 0.4
    argmax_acc = accuracy_score(y, decide(probs, [LABELS] * 400))
    decision, value = fit_thresholds(probs, y.tolist(), [LABELS] * 400, accuracy_score)
    assert decision.rule == "thresholds"
    assert value > argmax_acc + 0.3
    assert accuracy_score(y, decide(probs, [LABELS] * 400, decision)) == pytest.approx(value)


WITH_MINUS = (-1, 0, 1, 2, 3)
WITHOUT_MINUS = (0, 1, 2, 3)


def test_minus_one_threshold_says_minus_one_below_argmax_and_only_where_the_rubric_allows_it():
    probs = np.array([
        [0.40, 0.05, 0.05, 0.10, 0.40],  # P(-1) ties the top: argmax picks -1 (first), the cut too
        [0.35, 0.05, 0.05, 0.05, 0.50],  # P(-1) not the largest, but above the cut: -1
        [0.35, 0.05, 0.05, 0.05, 0.50],  # same probabilities, rubric without -1: never -1
        [0.60, 0.05, 0.25, 0.05, 0.05],  # largest P(-1) yet under a 0.7 cut: the best 0..3 label (1)
    ])
    allowed = [WITH_MINUS, WITH_MINUS, WITHOUT_MINUS, WITH_MINUS]
    assert decide(probs, allowed) == [-1, 3, 3, -1]
    assert decide(probs, allowed, Decision(minus_one_threshold=0.3)) == [-1, -1, 3, -1]
    assert decide(probs, allowed, Decision(minus_one_threshold=0.7)) == [3, 3, 3, 1]
    thresholds = Decision("thresholds", (0.5, 1.5, 2.5), minus_one_threshold=0.3)
    assert decide(probs, allowed, thresholds) == [-1, -1, 3, -1]


def test_decision_without_the_minus_one_field_reads_as_before_and_the_field_round_trips():
    old = {"rule": "thresholds", "thresholds": [0.5, 1.5, 2.5]}  # a report written before the field existed
    assert Decision.from_dict(old).minus_one_threshold is None
    assert Decision.from_dict(old).to_dict() == old
    cut = Decision("argmax", (), 0.25)
    assert Decision.from_dict(cut.to_dict()) == cut and cut.to_dict()["minus_one_threshold"] == 0.25
    with pytest.raises(ValueError, match="probability"):
        Decision.from_dict({"rule": "argmax", "minus_one_threshold": 1.5})


def _minus_one_rows(rng, n, p_minus_gold, p_minus_other):
    """Rows allowing -1: half gold -1 with P(-1) around p_minus_gold, half gold 2 with P(-1) around p_minus_other."""
    y = np.array([-1] * (n // 2) + [2] * (n // 2))
    p_minus = np.where(y == -1, p_minus_gold, p_minus_other) + rng.uniform(-0.05, 0.05, n)
    probs = np.zeros((n, 5))
    probs[:, 0] = p_minus
    probs[:, 3] = 1 - p_minus
    return probs, y.tolist()


def test_minus_one_threshold_is_fitted_when_argmax_misses_the_minus_one_rows():
    probs, y = _minus_one_rows(np.random.default_rng(0), 200, 0.30, 0.08)  # -1 never the argmax, yet separable
    allowed = [WITH_MINUS] * len(y)
    assert -1 not in decide(probs, allowed)
    decision, value = fit_minus_one_threshold(probs, y, allowed, accuracy_score)
    assert 0.13 < decision.minus_one_threshold < 0.25 and value == pytest.approx(1.0)
    assert decide(probs, allowed, decision) == y


def test_argmax_is_kept_when_it_already_finds_the_minus_one_rows():
    probs, y = _minus_one_rows(np.random.default_rng(1), 200, 0.80, 0.10)
    start = Decision("thresholds", (0.5, 1.5, 2.5))
    decision, value = fit_minus_one_threshold(probs, y, [WITH_MINUS] * len(y), accuracy_score, start)
    assert decision == start and value == pytest.approx(1.0)


def test_a_cut_that_costs_more_ordinary_rows_than_it_finds_minus_one_rows_is_not_taken():
    # 10 gold -1 rows at P(-1) 0.30, 40 ordinary rows at 0.25-0.35: any cut low enough to find them mislabels more.
    rng = np.random.default_rng(3)
    p_minus = np.concatenate([np.full(10, 0.30), rng.uniform(0.25, 0.35, 40)])
    probs = np.column_stack([p_minus, np.zeros(50), np.zeros(50), 1 - p_minus, np.zeros(50)])
    y = [-1] * 10 + [2] * 40
    decision, value = fit_minus_one_threshold(probs, y, [WITH_MINUS] * 50, accuracy_score)
    assert decision.minus_one_threshold is None and value == pytest.approx(0.8)


def test_minus_one_threshold_ignores_rows_whose_rubric_has_no_minus_one():
    probs, y = _minus_one_rows(np.random.default_rng(2), 200, 0.30, 0.08)
    noise = np.tile([0.9, 0.0, 0.0, 0.1, 0.0], (50, 1))  # high P(-1) on rubrics without -1: never turned into -1
    decision, value = fit_minus_one_threshold(np.vstack([probs, noise]), y + [2] * 50,
                                              [WITH_MINUS] * len(y) + [WITHOUT_MINUS] * 50, accuracy_score)
    assert 0.13 < decision.minus_one_threshold < 0.25 and value == pytest.approx(1.0)


@pytest.mark.parametrize("text, allowed, expected", [
    ("3", LABELS, 3),
    ("-1", LABELS, -1),
    ("Рассуждение: ответ неполный. [RESULT] 1 [END]", LABELS, 1),
    ("Ответ хороший.\nОценка: 2", LABELS, 2),
    ("Итоговый балл — 0", LABELS, 0),
    ("score=3", (0, 1, 2), None),
    ("В ответе 12 ошибок, ставлю 1", LABELS, 1),
    ("нет числа", LABELS, None),
    (None, LABELS, None),
])
def test_extract_score_from_text(text, allowed, expected):
    assert extract_score_from_text(text, allowed) == expected
