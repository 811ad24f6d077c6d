"""POLLUX's metrics (Spearman, MAE vs the annotators' mean) per slice: the module, `pollux-report`, `evaluate`."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr
from typer.testing import CliRunner

from submission.prompts.sections import parse_prompt
from tests import pollux_fixture as fx
from trainer.cli import app
from trainer.data.pollux import import_pollux
from trainer.evaluation.pollux_metrics import format_pollux_table, pollux_metrics


@pytest.fixture
def pollux_csv(tmp_path):
    _, [path] = import_pollux(fx.write_jsonl(tmp_path / "p.jsonl"), tmp_path / "data")
    return path


def _frame():
    return pd.DataFrame({
        "id": list("abcdef"), "score": [2, 1, 0, -1, 2, 1], "human_mean": [1.5, 1.25, 0.0, 0.5, 2.0, np.nan],
        "task_type": ["x", "x", "y", "y", "y", "x"], "criteria_name": ["c1", "c2", "c1", "c2", "c1", "c2"]})


def test_spearman_and_mae_use_the_human_mean_and_leave_gold_minus_one_out():
    frame, pred = _frame(), [1, 1, 0, 2, 2, -1]
    block = pollux_metrics(frame, pred)
    kept = [0, 1, 2, 4, 5]  # row 3 is gold -1; row 5 has no human mean: its integer score stands in
    target = np.array([1.5, 1.25, 0.0, 2.0, 1.0])
    prediction = np.array(pred, dtype=float)[kept]
    overall = block["overall"]
    assert block["target"] == "human_mean"
    assert overall["n"] == 6 and overall["n_applicable"] == 5
    assert overall["mae"] == pytest.approx(np.abs(target - prediction).mean())
    assert overall["spearman"] == pytest.approx(spearmanr(target, prediction)[0])
    assert overall["accuracy"] == pytest.approx(3 / 6)  # vs the integer score, -1 included
    assert set(block["per_task_type"]) == {"x", "y"} and block["per_task_type"]["y"]["n"] == 3
    assert block["per_criterion_name"]["c1"]["mae"] == pytest.approx(np.mean([0.5, 0.0, 0.0]))
    assert any("-1" in note for note in block["notes"]) and any("fractional" in note for note in block["notes"])


def test_without_a_human_mean_the_integer_score_is_the_target():
    frame = _frame().drop(columns="human_mean")
    block = pollux_metrics(frame, [2, 1, 1, -1, 2, 1])
    assert block["target"] == "score"
    assert block["overall"]["mae"] == pytest.approx(1 / 5)


def test_the_table_lists_every_task_type_and_criterion():
    table = format_pollux_table(pollux_metrics(_frame(), [1, 1, 0, 2, 2, -1]))
    for name in ("all", "task_type: x", "task_type: y", "criterion: c1", "criterion: c2"):
        assert any(line.startswith(name) for line in table.splitlines())
    assert "vs human_mean" in table and "note:" in table


def test_pollux_report_on_an_imported_fixture(pollux_csv, tmp_path):
    data = pd.read_csv(pollux_csv, dtype={"id": str})
    predictions = tmp_path / "predictions.csv"
    data.assign(score=data["score"].clip(lower=0)).loc[:, ["id", "score"]].to_csv(predictions, index=False)
    out = tmp_path / "pollux.json"
    result = CliRunner().invoke(app, ["pollux-report", str(pollux_csv), str(predictions), "--out", str(out)])
    assert result.exit_code == 0, result.output
    for task_type in fx.TASK_TYPES.values():
        assert f"task_type: {task_type}" in result.stdout
    block = json.loads(out.read_text(encoding="utf-8"))
    assert block["overall"]["n"] == len(fx.KEPT) and block["overall"]["accuracy"] < 1.0  # the -1 row missed
    assert set(block["per_criterion_name"]) == {c for _, _, c, *_ in fx.KEPT}


def test_evaluate_adds_the_pollux_block_on_pollux_data(pollux_csv, tmp_path, monkeypatch):
    from trainer.evaluation import evaluate

    run_dir = tmp_path / "run"
    (run_dir / "merged").mkdir(parents=True)
    (run_dir / "merged" / "config.json").write_text("{}")
    (run_dir / "merged" / "model.safetensors").write_bytes(b"")  # score_rows is faked: no weights are read
    config = {"name": "t", "run_name": None, "base_model": "b", "method": "lora", "train_path": str(pollux_csv),
              "max_tokens": 512, "metric": "accuracy", "seed": 0, "augment_not_applicable": 0.0}
    (run_dir / "training_config.json").write_text(json.dumps({"config": config}))
    data = pd.read_csv(pollux_csv, dtype={"id": str})
    gold = dict(zip(data["prompt"], data["score"], strict=True))

    def fake_score_rows(model_dir, prompts, max_tokens, device=None, engine="hf", **kwargs):
        sections = [parse_prompt(p) for p in prompts]
        probs = np.full((len(prompts), 5), 0.02)
        for i, prompt in enumerate(prompts):  # the gold score, confidently
            probs[i, 1 + gold[prompt]] = 0.92
        return probs, [s.allowed for s in sections], [s.family for s in sections]

    monkeypatch.setattr(evaluate, "score_rows", fake_score_rows)
    report = evaluate.evaluate_run(run_dir, pollux_csv)
    block = report["pollux"]
    applicable = data[data["score"] != -1]
    assert block["overall"]["accuracy"] == 1.0
    assert block["overall"]["mae"] == pytest.approx((applicable["score"] - applicable["human_mean"]).abs().mean())
    assert set(block["per_task_type"]) == set(fx.TASK_TYPES.values())
    saved = json.loads((run_dir / "validation_report.json").read_text(encoding="utf-8"))
    assert saved["pollux"]["overall"]["n"] == len(fx.KEPT)


def test_the_judge_report_page_shows_the_pollux_table():
    from trainer.evaluation.report_html import _best_run_sections

    block = pollux_metrics(_frame(), [1, 1, 0, 2, 2, -1])
    page = _best_run_sections({"run": "r", "report": {"n": 6, "pollux": block}})
    assert "POLLUX metrics per slice" in page and "Spearman vs human_mean" in page
    assert "criterion: c2" in page and "task_type: y" in page and "gold -1 (not applicable) left out" in page
