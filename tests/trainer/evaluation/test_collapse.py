"""A judge that learnt nothing is flagged everywhere a user looks, and autopick never ships it over a healthy one."""

from __future__ import annotations

import json

import numpy as np
from typer.testing import CliRunner

from submission.choice.autopick import auto_ensemble, rank_candidates
from submission.runtime.runtime import RunSettings, plan_models
from tests.submission.choice.test_best_model_rule import make_runs, three_picks
from trainer.evaluation.collapse import collapse_line, collapse_reasons
from trainer.evaluation.evaluate import build_report
from trainer.evaluation.metrics import format_table

GOLD = [0, 1, 2, 3] * 10
HEALTHY = [0, 1, 2, 3] * 8 + [1, 1, 2, 2] * 2  # 32 right, 8 off by one


def one_hot(labels) -> np.ndarray:
    probs = np.full((len(labels), 5), 0.01)
    for i, label in enumerate(labels):
        probs[i, label + 1] = 0.96
    return probs / probs.sum(axis=1, keepdims=True)


def test_a_constant_class_judge_is_collapsed_with_every_reason():
    reasons = collapse_reasons(GOLD, [2] * len(GOLD))
    assert len(reasons) == 3
    assert "100% of validation predictions are 2" in reasons[0]
    assert any("QWK" in r for r in reasons) and any("majority" in r for r in reasons)


def test_a_healthy_judge_is_not_collapsed():
    assert collapse_reasons(GOLD, HEALTHY) == []


def test_each_rule_fires_alone():
    # 90 % in one class, otherwise fine on a skewed gold set
    skewed_gold = [1] * 36 + [0, 2, 3, 3]
    assert collapse_reasons(skewed_gold, [1] * 36 + [0, 2, 3, 1]) == ["92% of validation predictions are 1"]
    # varied predictions that do not track gold: QWK ~0 and accuracy at the majority rate
    rng = np.random.default_rng(0)
    shuffled = rng.permutation(HEALTHY).tolist()
    assert any("QWK" in r for r in collapse_reasons(GOLD, shuffled))


def test_validation_report_says_collapsed_with_reasons_and_the_table_says_so():
    allowed = [(0, 1, 2, 3)] * len(GOLD)
    families = ["f"] * len(GOLD)
    dead = build_report(one_hot([1] * len(GOLD)), allowed, families, GOLD, "qwk", {}, "m")
    alive = build_report(one_hot(HEALTHY), allowed, families, GOLD, "qwk", {}, "m")
    assert dead["collapsed"] is True and dead["collapse_reasons"]
    assert alive["collapsed"] is False and alive["collapse_reasons"] == []
    assert "COLLAPSED" in format_table(dead)
    assert "COLLAPSED" not in format_table(alive)


def test_autopick_skips_a_collapsed_model_even_when_its_metric_is_higher(tmp_path, tiny_model_dir, caplog):
    runs = make_runs(tmp_path / "runs", tiny_model_dir, {
        "dead": {"qwk": 0.9, "accuracy": 0.3, "collapsed": True, "collapse_reasons": ["95% of validation predictions are 1"]},
        "alive": {"qwk": 0.4, "accuracy": 0.5, "collapsed": False},
    })
    assert three_picks(runs, "qwk") == ("alive", "alive", "alive")
    with caplog.at_level("WARNING", logger="submission.runtime.runtime"):
        plan = plan_models(RunSettings(models=runs, metric="qwk", ensemble=False))
    assert "skipped dead (collapsed: 95% of validation predictions are 1)" in plan.reason
    assert "skipping dead (collapsed: 95% of validation predictions are 1)" in caplog.text


def test_every_candidate_collapsed_still_picks_one_and_warns(tmp_path, tiny_model_dir):
    runs = make_runs(tmp_path / "runs", tiny_model_dir, {
        "a": {"qwk": 0.02, "collapsed": True}, "b": {"qwk": 0.04, "collapsed": True},
    })
    plan = plan_models(RunSettings(models=runs, metric="qwk", ensemble=False))
    assert plan.ranked[0].path.parent.name == "b"
    assert "every candidate collapsed" in plan.reason


def test_auto_ensemble_leaves_a_collapsed_member_out(tmp_path, tiny_model_dir):
    runs = make_runs(tmp_path / "runs", tiny_model_dir, {
        "a": {"qwk": 0.80}, "b": {"qwk": 0.79}, "c": {"qwk": 0.81, "collapsed": True},
    })
    ranked = rank_candidates([runs / n / "merged" for n in "abc"], "qwk")
    ensemble = auto_ensemble(ranked, "qwk", tolerance=0.05, max_members=3)
    assert sorted(m.path.parent.name for m in ensemble.members) == ["a", "b"]


def test_terminal_and_html_reports_flag_the_collapsed_run(tmp_path, tiny_model_dir):
    from trainer.evaluation.report import collect_runs, format_report
    from trainer.evaluation.report_html import render_report_html

    report = {"qwk": 0.0, "accuracy": 0.25, "n": 40, "collapsed": True,
              "collapse_reasons": ["100% of validation predictions are 2"]}
    runs = make_runs(tmp_path / "runs", tiny_model_dir, {"dead": report, "alive": {"qwk": 0.6, "n": 40}})
    rows = collect_runs(sorted(p.parent for p in runs.glob("*/training_config.json")))
    text = format_report(rows, "qwk")
    assert "dead (COLLAPSED)" in text and "dead: COLLAPSED" in text and "alive (COLLAPSED)" not in text
    page = render_report_html(rows, "qwk")
    assert 'class="collapsed"' in page and "100% of validation predictions are 2" in page
    assert collapse_line({"qwk": 0.6}) is None


def test_trainer_train_ends_with_the_collapse_warning(tmp_path, monkeypatch, synth_dir, tiny_model_dir):
    from trainer.cli import app
    from trainer.recipes import pipeline

    dead = {"qwk": 0.0, "accuracy": 0.2, "collapsed": True, "collapse_reasons": ["100% of validation predictions are 1"]}
    monkeypatch.setattr(pipeline, "train_merge_evaluate",
                        lambda config, **_: pipeline.TrainedRun(tmp_path / "runs" / "demo", dead))
    result = CliRunner().invoke(app, ["train", "--experiment", "demo", "--train-path", str(synth_dir / "train.csv"),
                                      "--base-model", str(tiny_model_dir), "--output-dir", str(tmp_path / "runs")])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip().splitlines()[-1].endswith("demo")  # scripts still read the run folder
    assert "COLLAPSED" in result.stderr.strip().splitlines()[-1]
    assert json.loads(json.dumps(dead))["collapsed"]
