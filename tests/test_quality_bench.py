"""bench/quality.py's scoring helpers: the organisers' decoding and the -1 precision/recall every row carries."""

from __future__ import annotations

import importlib.util
from pathlib import Path

_spec = importlib.util.spec_from_file_location("aij_bench_quality",
                                               Path(__file__).resolve().parent.parent / "bench" / "quality.py")
quality = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(quality)


def test_organisers_decoding_takes_the_first_character_if_a_digit_else_zero():
    assert [quality.organisers_score(t) for t in ("3<|im_end|>", " 2 points", "-1", "The score is 3", "", "7")] == \
        [3, 2, 0, 0, 0, 7]


def test_scored_metrics_carry_minus_one_precision_and_recall_into_the_table():
    metrics = quality.scored_metrics([-1, -1, 0, 3], [-1, 0, -1, 3])
    assert (metrics["m1_precision"], metrics["m1_recall"], metrics["n"]) == (0.5, 0.5, 4)
    rows = quality.summarise({("minus_one", "x", "heldout"): {1: metrics}})
    assert "| 0.50 / 0.50 |" in quality.format_table(rows)
    never = quality.scored_metrics([-1, 0], [0, 0])
    assert never["m1_precision"] is None and never["m1_recall"] == 0.0
