"""bench/quality.py's scoring helpers: the organisers' decoding and the -1 precision/recall every row carries."""

from __future__ import annotations

import importlib.util
from pathlib import Path

_spec = importlib.util.spec_from_file_location("aij_bench_quality",
                                               Path(__file__).resolve().parents[2] / "bench" / "quality.py")
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


def test_majority_and_probe_blocks_score_held_out_rows_with_a_validation_chosen_layer(tmp_path, synth_dir,
                                                                                     tiny_model_dir):
    import pandas as pd

    test = pd.read_csv(synth_dir / "test.csv", dtype={"id": str}).merge(
        pd.read_csv(synth_dir / "gold.csv", dtype={"id": str})).head(30)
    test.to_csv(tmp_path / "heldout.csv", index=False)
    paths = {"base": tiny_model_dir, "train": synth_dir / "train.csv", "heldout": tmp_path / "heldout.csv",
             "features": tmp_path / "features"}
    results: dict = {}
    quality.block_majority(paths, tmp_path, [1, 2], 0, results)
    quality.block_probe(paths, tmp_path, [1, 2], 0, results)
    rows = {(r["block"], r["data"]): r for r in quality.summarise(results)}
    majority = rows[("majority", "heldout")]
    gold = test["score"].astype(int)
    assert majority["n"] == 30 and majority["seeds"] == [1, 2]
    modes = [int(quality.seed_split(paths, seed)[0]["score"].astype(int).mode().iloc[0]) for seed in (1, 2)]
    assert abs(majority["accuracy"] - sum((gold == m).mean() for m in modes) / 2) < 1e-9
    probe = rows[("probe", "heldout")]
    assert probe["n"] == 30 and {m["layer"] for m in probe["per_seed"].values()} == {1}  # the tiny model: 2 layers
    assert len(list((tmp_path / "features").glob("*.npy"))) >= 30  # every row's forward cached for the next run
