"""Metrics against values computed by hand."""

import json

import pytest

from trainer.evaluation.metrics import (
    METRIC_NAMES,
    compute_metrics,
    format_table,
    higher_is_better,
    metric_value,
    plot_confusion_matrix,
)

Y_TRUE = [0, 1, 2, 3]
Y_PRED = [0, 2, 2, 3]


def test_scalar_metrics_match_hand_computation():
    r = compute_metrics(Y_TRUE, Y_PRED)
    assert r["n"] == 4
    assert r["accuracy"] == pytest.approx(0.75)  # 3 of 4 right
    assert r["mae"] == pytest.approx(0.25)  # one error of size 1
    assert r["rmse"] == pytest.approx(0.5)  # sqrt(1/4)
    # QWK: observed weighted disagreement sum (i-j)^2 O_ij = 1 (the 1->2 row).
    # Expected: hist_true=[1,1,1,1], hist_pred=[1,0,2,1]; sum_j p_j * sum_i (i-j)^2 / n = (14+0+12+14)/4 = 10.
    assert r["qwk"] == pytest.approx(1 - 1 / 10)
    # F1 per class: 0 -> 1, 1 -> 0, 2 -> P=1/2 R=1 F=2/3, 3 -> 1; macro = (1+0+2/3+1)/4; supports equal -> weighted same.
    assert r["macro_f1"] == pytest.approx((2 + 2 / 3) / 4)
    assert r["weighted_f1"] == pytest.approx((2 + 2 / 3) / 4)


def test_per_class_and_confusion_matrix():
    r = compute_metrics(Y_TRUE, Y_PRED)
    assert r["per_class"]["2"] == pytest.approx({"precision": 0.5, "recall": 1.0, "f1": 2 / 3, "support": 1})
    assert r["per_class"]["1"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert r["per_class"]["-1"]["support"] == 0
    assert r["confusion_matrix"]["labels"] == [-1, 0, 1, 2, 3]
    assert r["confusion_matrix"]["matrix"][2] == [0, 0, 0, 1, 0]  # true 1 predicted 2


def test_minus_one_is_ordinal_minus_one_in_numeric_metrics():
    r = compute_metrics([-1, 3], [3, 3])
    assert r["mae"] == pytest.approx(2.0)  # |(-1) - 3| = 4, halved
    assert r["accuracy"] == pytest.approx(0.5)


def test_per_family_breakdown():
    r = compute_metrics([0, 1, 2, 3], [0, 1, 0, 0], families=["static", "static", "generative", "generative"])
    assert r["per_family"]["static"] == {"n": 2, "accuracy": 1.0, "macro_f1": 1.0, "mae": 0.0, "qwk": 1.0}
    assert r["per_family"]["generative"]["accuracy"] == 0.0
    assert r["per_family"]["generative"]["mae"] == pytest.approx(2.5)  # (2 + 3) / 2


def test_constant_predictions_give_none_not_nan_and_round_trip_json():
    r = compute_metrics([0, 1, 2], [1, 1, 1])
    assert r["spearman"] is None and r["pearson"] is None
    assert json.loads(json.dumps(r, allow_nan=False)) == r


def test_length_mismatch_is_an_error():
    with pytest.raises(ValueError, match="3 true labels but 2 predictions"):
        compute_metrics([0, 1, 2], [0, 1])


def test_metric_direction_and_lookup():
    assert higher_is_better("qwk") and not higher_is_better("mae") and not higher_is_better("rmse")
    r = compute_metrics(Y_TRUE, Y_PRED)
    assert metric_value(r, "accuracy") == pytest.approx(0.75)
    with pytest.raises(KeyError, match="choose one of"):
        metric_value(r, "auc")
    assert set(METRIC_NAMES) <= set(r)


def test_format_table_and_plot(tmp_path):
    r = compute_metrics(Y_TRUE, Y_PRED, families=["a", "a", "b", "b"])
    table = format_table(r)
    assert "accuracy" in table and " 0.750" in table and "a " in table
    path = tmp_path / "cm.png"
    plot_confusion_matrix(r, path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_qwk_weights_by_score_distance_not_label_position():
    # Score distance, not label position: over -1..3, hist_true has -1, 0, 3 once; hist_pred has 0 twice, 3 once.
    # Observed weighted disagreement: one (-1 -> 0) miss, (0-(-1))^2 = 1.
    # Expected: sum_ij (i-j)^2 t_i p_j / n = [t=-1: 2*1 + 1*16] + [t=0: 1*9] + [t=3: 2*9] = 45, / 3 = 15.
    r = compute_metrics([-1, 0, 3], [0, 0, 3])
    assert r["qwk"] == pytest.approx(1 - 1 / 15)
