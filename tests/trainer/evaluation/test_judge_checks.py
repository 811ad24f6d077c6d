"""Calibration and bias checks (trainer/evaluation/judge_checks.py) against cases computed by hand."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

from submission.prompts.sections import compose_prompt
from trainer.evaluation.judge_checks import calibration, judge_checks

SCALE = "0: нет\n1: слабо\n2: частично\n3: полностью"


def prompt(answer: str = "ответ", criterion: str = "Точность", reference: str | None = "эталон") -> str:
    return compose_prompt("Задача", answer, criterion, SCALE, reference)


def one_hot(labels, confidence: float = 0.9) -> np.ndarray:
    """Rows with ``confidence`` on each label (column order -1, 0, 1, 2, 3), the rest spread over the others."""
    out = np.full((len(labels), 5), (1 - confidence) / 4)
    for i, label in enumerate(labels):
        out[i, label + 1] = confidence
    return out


def test_ece_of_a_hand_made_case():
    #                  p_-1  p_0   p_1   p_2   p_3     argmax  conf  gold  bin
    probs = np.array([[0.0, 0.0, 0.0, 0.05, 0.95],   # 3       0.95  3 ok   9
                      [0.0, 0.0, 0.0, 0.05, 0.95],   # 3       0.95  2 no   9
                      [0.0, 0.45, 0.55, 0.0, 0.0],   # 1       0.55  1 ok   5
                      [0.0, 0.45, 0.55, 0.0, 0.0],   # 1       0.55  0 no   5
                      [0.0, 0.33, 0.32, 0.35, 0.0]])  # 2       0.35  2 ok   3
    block = calibration(probs, [3, 2, 1, 0, 2])
    # bin 9: 2/5 * |0.5 - 0.95| = 0.18; bin 5: 2/5 * |0.5 - 0.55| = 0.02; bin 3: 1/5 * |1 - 0.35| = 0.13
    assert block["ece"] == pytest.approx(0.33)
    assert block["bins"] == 10 and block["accuracy"] == pytest.approx(0.6)
    assert [(b["low"], b["n"], b["accuracy"]) for b in block["reliability"]] == [(0.3, 1, 1.0), (0.5, 2, 0.5),
                                                                                 (0.9, 2, 0.5)]
    assert [b["confidence"] for b in block["reliability"]] == pytest.approx([0.35, 0.55, 0.95])


def test_a_calibrated_judge_has_zero_ece_and_an_overconfident_one_does_not():
    gold = [1] * 8 + [0] * 2  # the judge says 1 every time and is right 8 times in 10
    assert calibration(one_hot([1] * 10, 0.8), gold)["ece"] == pytest.approx(0.0)
    assert calibration(one_hot([1] * 10, 0.98), gold)["ece"] == pytest.approx(0.18)


def test_ece_judges_the_argmax_label_so_thresholds_do_not_change_it():
    probs = one_hot([2, 2, 3], 0.7)
    assert calibration(probs, [2, 2, 3])["ece"] == pytest.approx(0.3)  # all right at confidence 0.7
    assert calibration(probs, [2, 2, 3])["accuracy"] == 1.0


def test_length_split_shows_a_judge_that_lets_the_longer_answer_win():
    lengths = [50, 10, 80, 30, 20, 70, 60, 40]  # file order is not length order
    predicted = {10: 1, 20: 1, 30: 2, 40: 2, 50: 2, 60: 2, 70: 3, 80: 3}  # short ones marked down, long ones up
    prompts = [prompt("ы" * n) for n in lengths]
    y_pred = [predicted[n] for n in lengths]
    block = judge_checks(prompts, one_hot(y_pred), [2] * 8, y_pred)["by_answer_length"]
    got = [(g["quartile"], g["n"], g["min_chars"], g["max_chars"], g["accuracy"], g["mean_error"])
           for g in block["groups"]]
    assert got == [(1, 2, 10, 20, 0.0, -1.0), (2, 2, 30, 40, 1.0, 0.0), (3, 2, 50, 60, 1.0, 0.0),
                   (4, 2, 70, 80, 0.0, 1.0)]
    assert block["mean_error_gap"] == pytest.approx(2.0)


def test_reference_split_counts_rows_with_and_without_a_reference():
    prompts = [prompt(reference="эталон")] * 4 + [prompt(reference=None), prompt(reference="  ")]
    gold, y_pred = [3, 3, 0, 1, 2, 2], [3, 3, 0, 1, 0, 1]  # right with the reference, wrong without
    block = judge_checks(prompts, one_hot(y_pred), gold, y_pred)["by_reference"]
    assert (block["present"]["n"], block["present"]["accuracy"]) == (4, 1.0)
    assert (block["absent"]["n"], block["absent"]["accuracy"], block["absent"]["mean_error"]) == (2, 0.0, -1.5)
    assert block["accuracy_gap"] == pytest.approx(1.0)


def test_score_distribution_shows_mid_scale_excess():
    gold, y_pred = [0, 3, 3, 1], [1, 2, 2, 1]
    block = judge_checks([prompt()] * 4, one_hot(y_pred), gold, y_pred)["score_distribution"]
    assert block["gold"] == {"-1": 0, "0": 1, "1": 1, "2": 0, "3": 2}
    assert block["predicted"] == {"-1": 0, "0": 0, "1": 2, "2": 2, "3": 0}
    assert block["mid_scale_excess"] == pytest.approx(1.0 - 0.25)


def test_per_criterion_agreement_lists_the_worst_criterion_first():
    prompts = [prompt(criterion="Полнота")] * 2 + [prompt(criterion="Грамотность")] * 3
    gold, y_pred = [1, 3, 0, 1, 3], [1, 3, 1, 1, 0]
    rows = judge_checks(prompts, one_hot(y_pred), gold, y_pred)["per_criterion"]
    assert [(r["criterion"], r["n"]) for r in rows] == [("Грамотность", 3), ("Полнота", 2)]
    assert rows[0]["accuracy"] == pytest.approx(1 / 3) and rows[1]["accuracy"] == 1.0
    assert rows[1]["qwk"] == pytest.approx(1.0) and rows[1]["spearman"] == pytest.approx(1.0)
    # QWK of gold [0,1,3] vs [1,1,0] over labels 0..3: observed sum (i-j)^2 = 1 + 0 + 9 = 10; expected from
    # hist_true [1,1,0,1], hist_pred [1,2,0,0]: sum_ij h_i h'_j (i-j)^2 / 3 = (0*1+1*2 + 1*1+0*2 + 9*1+4*2) / 3 = 20/3
    assert rows[0]["qwk"] == pytest.approx(1 - 10 / (20 / 3))
    assert rows[0]["spearman"] == pytest.approx(-1.5 / np.sqrt(3))  # ranks [1,2,3] vs [2.5,2.5,1]


def test_confident_errors_are_the_wrong_rows_by_probability_of_the_decided_score():
    y_pred, gold = [3, 2, 1, 0], [3, 0, 0, 3]
    probs = np.array([[0, 0, 0, 0, 1.0], [0, 0.3, 0, 0.7, 0], [0, 0.1, 0.9, 0, 0], [0, 0.6, 0, 0, 0.4]])
    rows = judge_checks([prompt(f"ответ {i}") for i in range(4)], probs, gold, y_pred, ids=list("abcd"))
    got = [(r["id"], r["gold"], r["predicted"], r["p"], r["p_gold"], r["answer"]) for r in rows["confident_errors"]]
    assert got == [("c", 0, 1, 0.9, 0.1, "ответ 2"), ("b", 0, 2, 0.7, 0.3, "ответ 1"), ("d", 3, 0, 0.6, 0.4, "ответ 3")]


def test_unparsed_rows_stay_out_of_the_length_and_reference_splits():
    prompts = [prompt("ы" * 5), prompt("ы" * 9), "просто текст без разделов"]
    checks = judge_checks(prompts, one_hot([1, 2, 3]), [1, 2, 3], [1, 2, 3])
    assert checks["unparsed_rows"] == 1
    assert sum(g["n"] for g in checks["by_answer_length"]["groups"]) == 2
    assert checks["by_reference"]["present"]["n"] == 2 and checks["by_reference"]["absent"] is None
    assert "(layout not recognised)" in [r["criterion"] for r in checks["per_criterion"]]


def test_report_blocks_survive_strict_json_and_draw(tmp_path):
    from trainer.evaluation.evaluate import build_report
    from trainer.evaluation.judge_checks import plot_reliability_diagram, plot_score_distribution

    prompts = [prompt("ы" * (i + 1), criterion=f"К{i % 2}") for i in range(12)]
    gold = [i % 4 for i in range(12)]
    probs = one_hot([(g + (i % 3 == 0)) % 4 for i, g in enumerate(gold)], 0.6)
    report = build_report(probs, [(0, 1, 2, 3)] * 12, ["static"] * 12, gold, "accuracy", None, tmp_path,
                          prompts=prompts, ids=[f"r{i}" for i in range(12)])
    for key in ("calibration", "by_answer_length", "by_reference", "score_distribution", "per_criterion",
                "confident_errors"):
        assert report[key] is not None, key
    assert json.loads(json.dumps(report, allow_nan=False))["calibration"]["ece"] == pytest.approx(
        report["calibration"]["ece"])
    for plot in (plot_reliability_diagram, plot_score_distribution):
        buffer = io.BytesIO()
        plot(report, buffer)
        assert buffer.getvalue().startswith(b"\x89PNG")
