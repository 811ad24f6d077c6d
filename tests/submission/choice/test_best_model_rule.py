"""One "best model" rule: build/bundle.py, `trainer report` and the runtime pick the same run, and every command
that takes --metric refuses an unknown name with exit 2 and one line naming the valid ones."""

from __future__ import annotations

import json
import shutil

import pytest
from typer.testing import CliRunner

from submission.runtime.runtime import RunSettings, plan_models
from tests.build_scripts import load_script
from trainer.cli import app
from trainer.evaluation.report import collect_runs, pick_best_run

bundle = load_script("bundle")


def make_runs(root, tiny_model_dir, reports: dict[str, dict | None]):
    """runs/<name>/{training_config.json, validation_report.json, merged/ (+ the same report)} per entry."""
    for name, report in reports.items():
        run = root / name
        shutil.copytree(tiny_model_dir, run / "merged")
        (run / "training_config.json").write_text(json.dumps({"config": {"name": name, "metric": "qwk"}}))
        if report is not None:
            for where in (run, run / "merged"):
                (where / "validation_report.json").write_text(json.dumps(report))
    return root


def three_picks(runs, metric: str) -> tuple[str, str, str]:
    """(bundle's 'best', trainer report's starred run, the runtime's first choice) for ``runs``."""
    shipped = bundle.choose_runs(runs, ["best"], metric)[0].name
    rows = collect_runs(sorted(p.parent for p in runs.glob("*/training_config.json")))
    best = pick_best_run(rows, metric)
    reported = rows[best]["run"] if best is not None else None
    runtime = plan_models(RunSettings(models=runs, metric=metric, ensemble=False)).ranked[0].path.parent.name
    return shipped, reported, runtime


def test_a_tie_ships_the_run_the_runtime_would_pick_the_newer_report(tmp_path, tiny_model_dir):
    # Alphabetical order and directory order favour "alpha"; the rule says the newer report wins the tie.
    runs = make_runs(tmp_path / "runs", tiny_model_dir, {
        "alpha": {"qwk": 0.7, "created": "2026-11-01T10:00:00+0000"},
        "beta": {"qwk": 0.7, "created": "2026-11-02T10:00:00+0000"},
    })
    assert three_picks(runs, "qwk") == ("beta", "beta", "beta")


def test_error_metrics_rank_lowest_first_everywhere(tmp_path, tiny_model_dir):
    runs = make_runs(tmp_path / "runs", tiny_model_dir, {"a": {"qwk": 0.9, "mae": 0.8}, "b": {"qwk": 0.2, "mae": 0.3}})
    assert three_picks(runs, "mae") == ("b", "b", "b")
    assert three_picks(runs, "qwk") == ("a", "a", "a")


def test_missing_or_undefined_values_rank_last_everywhere(tmp_path, tiny_model_dir):
    runs = make_runs(tmp_path / "runs", tiny_model_dir, {
        "a_no_report": None, "b_undefined": {"qwk": None}, "c_scored": {"qwk": 0.1}, "d_other_metric": {"mae": 0.1},
    })
    assert three_picks(runs, "qwk") == ("c_scored", "c_scored", "c_scored")


def test_no_run_has_the_metric_ships_the_runtime_s_first_and_reports_no_best(tmp_path, tiny_model_dir):
    runs = make_runs(tmp_path / "runs", tiny_model_dir, {"a": None, "b": None})  # the old bundler shipped "b"
    shipped, reported, runtime = three_picks(runs, "qwk")
    assert shipped == runtime == "a" and reported is None


def test_unknown_metric_exits_2_with_one_line_in_bundle_and_trainer_report(tmp_path, tiny_model_dir, capsys):
    runs = make_runs(tmp_path / "runs", tiny_model_dir, {"a": {"qwk": 0.5}})
    assert bundle.main(["--runs", str(runs), "--out", str(tmp_path / "x.zip"), "--metric", "QWKX"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "unknown metric 'QWKX'" in err and "qwk" in err and "mae" in err
    assert not (tmp_path / "x.zip").exists()
    result = CliRunner().invoke(app, ["report", str(runs), "--metric", "QWKX"])
    assert result.exit_code == 2
    lines = [line for line in result.output.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "unknown metric 'QWKX'" in lines[0] and "accuracy" in lines[0]


def test_rank_order_rejects_unknown_metrics():
    from submission.choice.autopick import rank_order
    from submission.choice.metrics import UnknownMetric

    with pytest.raises(UnknownMetric, match="choose one of accuracy"):
        rank_order([{"qwk": 0.1}], "QWKX")


def test_report_shows_minus_one_precision_recall_only_for_runs_that_taught_it():
    from trainer.evaluation.report import format_report

    def row(name, report):
        return {"run": name, "report": report, "report_mtime": 0.0, "config": {"metric": "qwk"}, "metric": "qwk",
                "metrics": {"qwk": report.get("qwk")}, "size_mb": 1.0, "train_s": 1.0}

    taught = {"qwk": 0.9, "not_applicable": {"decision": {"precision": 0.75, "recall": 0.5, "predicted": 4,
                                                          "support": 6}}}
    silent = {"qwk": 0.8, "not_applicable": {"decision": {"precision": None, "recall": 0.0, "predicted": 0,
                                                          "support": 6}}}
    table = format_report([row("taught", taught), row("silent", silent), row("plain", {"qwk": 0.7})])
    lines = table.splitlines()
    assert "-1 P/R" in lines[0]
    assert "0.75/0.50" in lines[2] and "-/0.00" in lines[3] and "n/a" in lines[4]
    assert "-1 P/R" not in format_report([row("plain", {"qwk": 0.7})])
