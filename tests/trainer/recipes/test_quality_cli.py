"""The quality options from the command line on the tiny model (a few steps each: the mechanics, not the accuracy)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest


def _cli(args, code=0):
    from typer.testing import CliRunner

    from trainer.cli import app

    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == code, result.output
    return result


@pytest.fixture(scope="module")
def small_train(synth_dir, tmp_path_factory):
    """80 synthetic train rows (every criterion present)."""
    path = tmp_path_factory.mktemp("quality") / "train.csv"
    pd.read_csv(synth_dir / "train.csv", dtype={"id": str}).head(80).to_csv(path, index=False)
    return path


def _train(small_train, tiny_model_dir, out, *extra):
    result = _cli(["train", "--experiment", "demo", "--train-path", small_train, "--base-model", tiny_model_dir,
                   "--output-dir", out, "--set", "max_steps=2", "--set", "batch_size=4", *extra])
    return Path(result.stdout.strip().splitlines()[-1])


def test_train_split_by_criterion_validates_on_unseen_criteria_only(small_train, tiny_model_dir, tmp_path):
    from trainer.data.split import row_groups

    run = _train(small_train, tiny_model_dir, tmp_path, "--split-by", "criterion")
    record = json.loads((run / "training_config.json").read_text())
    split = record["split"]
    assert split["split_by"] == "criterion" and not set(split["train_groups"]) & set(split["val_groups"])
    frame = pd.read_csv(small_train, dtype={"id": str})
    val_ids = set(pd.read_csv(run / "val_ids.csv", dtype=str)["id"])
    val_groups = set(row_groups(frame[frame.id.isin(val_ids)].prompt, "criterion"))
    assert val_groups == set(split["val_groups"])
    groups = json.loads((run / "validation_report.json").read_text())["groups"]
    assert groups["seen"] is None and groups["unseen"]["n"] == len(val_ids)
    assert set(groups["unseen_groups"]) == val_groups


def test_reference_dropout_adds_copies_to_the_fit_rows(small_train, tiny_model_dir, tmp_path):
    from trainer.data.training_data import fit_rows, load_and_split
    from trainer.training.config import resolve_config

    config = resolve_config("demo", None, ["reference_dropout=1.0"], train_path=str(small_train))
    rows = load_and_split(config)
    fit = fit_rows(config, rows)
    copies = fit[fit.id.str.endswith("#noref")]
    assert len(copies) > 0 and set(copies.id.str.removesuffix("#noref")) <= set(rows.train.id)
    assert not set(copies.id.str.removesuffix("#noref")) & set(rows.val.id)
    assert _cli(["train", "--experiment", "demo", "--train-path", small_train, "--set", "reference_dropout=1.5",
                 "--dry-run"], code=2).output.count("\n") == 1


def test_hard_rounds_report_every_round_and_up_weight_train_rows(small_train, tiny_model_dir, tmp_path):
    result = _cli(["advanced", "--hard-rounds", "2", "--experiment", "demo", "--train-path", small_train,
                   "--base-model", tiny_model_dir, "--output-dir", tmp_path, "--set", "max_steps=2",
                   "--set", "batch_size=4", "--hard-share", "0.25"])
    out = Path(result.stdout.strip().splitlines()[-1])
    record = json.loads((out / "hard_rounds.json").read_text())
    assert [r["round"] for r in record["rounds"]] == [1, 2]
    assert record["rounds"][0]["up_weighted_rows"] == 0 and record["rounds"][1]["up_weighted_rows"] > 0
    weights = pd.read_csv(out / "round2_weights.csv", dtype={"id": str})
    val_ids = set(pd.read_csv(out / "round1" / "val_ids.csv", dtype=str)["id"])
    assert not set(weights.id) & val_ids  # validation rows never drive the weights
    hardest = weights.sort_values("oof_loss", ascending=False).head((weights.weight > 1).sum())
    assert (hardest.weight > 1).all()
    assert "round | up-weighted rows" in result.stdout


def test_kfold_split_by_family_never_straddles(small_train, tiny_model_dir, tmp_path):
    from trainer.data.split import row_groups

    result = _cli(["advanced", "--kfold", "2", "--split-by", "family", "--experiment", "demo", "--train-path",
                   small_train, "--base-model", tiny_model_dir, "--output-dir", tmp_path, "--set", "max_steps=1",
                   "--set", "batch_size=4"])
    out = Path(result.stdout.strip().splitlines()[-1])
    frame = pd.read_csv(small_train, dtype={"id": str})
    for fold in sorted(out.glob("fold*")):
        val_ids = set(pd.read_csv(fold / "val_ids.csv", dtype=str)["id"])
        held, rest = frame[frame.id.isin(val_ids)], frame[~frame.id.isin(val_ids)]
        assert not set(row_groups(held.prompt, "family")) & set(row_groups(rest.prompt, "family"))


def test_distill_then_train_on_soft_labels_with_unlabelled_rows_and_ce_mse(small_train, tiny_model_dir, tmp_path):
    import math

    soft = tmp_path / "soft.csv"
    frame = pd.read_csv(small_train, dtype={"id": str})
    frame[["id", "prompt"]].to_csv(tmp_path / "rows.csv", index=False)  # unlabelled input to the teacher
    _cli(["distill", "--teacher", tiny_model_dir, "--data", tmp_path / "rows.csv", "--out", soft, "--max-tokens", 512])
    mixed = tmp_path / "mixed.csv"
    frame.assign(score=[str(s) if i < 40 else "" for i, s in enumerate(frame.score)]).to_csv(mixed, index=False)
    run = _train(mixed, tiny_model_dir, tmp_path / "runs", "--soft-labels", soft, "--set", "distill_alpha=0.7",
                 "--set", "loss=ce_mse", "--set", "logging_steps=1")
    record = json.loads((run / "training_config.json").read_text())
    assert record["rows"]["soft_only"] == 40 and record["config"]["loss"] == "ce_mse"
    val_ids = set(pd.read_csv(run / "val_ids.csv", dtype=str)["id"])
    assert val_ids <= set(frame.id[:40])  # validation rows always carry a gold score
    losses = [json.loads(line)["loss"] for line in (run / "metrics.jsonl").read_text().splitlines() if '"loss"' in line]
    assert losses and all(math.isfinite(v) for v in losses)
    assert (run / "validation_report.json").is_file()


def test_train_rejects_rows_with_neither_score_nor_soft_label(small_train, tiny_model_dir, tmp_path):
    frame = pd.read_csv(small_train, dtype={"id": str})
    soft = tmp_path / "soft.csv"
    pd.DataFrame({"id": frame.id[:5], "p_-1": 0.0, "p_0": 0.0, "p_1": 0.0, "p_2": 0.0, "p_3": 1.0}).to_csv(soft, index=False)
    mixed = tmp_path / "mixed.csv"
    frame.assign(score="").to_csv(mixed, index=False)
    result = _cli(["train", "--experiment", "demo", "--train-path", mixed, "--base-model", tiny_model_dir,
                   "--output-dir", tmp_path, "--soft-labels", soft], code=2)
    assert "no score and no soft label" in result.output
