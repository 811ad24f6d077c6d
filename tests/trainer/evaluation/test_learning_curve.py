"""The learning curve: both training paths record train loss, train-sample accuracy, validation accuracy/QWK and the
predicted-class histogram every N steps, and evaluate draws it."""

from __future__ import annotations

import json

from trainer.evaluation.learning_curve import curve_point, curve_records, train_sample
from trainer.recipes.pipeline import train_merge_evaluate
from trainer.training.config import resolve_config
from trainer.training.rundir import RunDir


def test_a_curve_point_counts_predictions_and_scores_them():
    import numpy as np

    probs = np.eye(5)[[1, 2, 2, 3]]  # argmax labels 0, 1, 1, 2
    point = curve_point(4, 0.5, [0, 1], probs[:2], [0, 1, 1, 3], probs, learning_rate=1e-3)
    assert point["val_histogram"] == {"-1": 0, "0": 1, "1": 2, "2": 1, "3": 0}
    assert point["val_accuracy"] == 0.75 and point["train_accuracy"] == 1.0
    assert point["step"] == 4 and point["train_loss"] == 0.5 and point["kind"] == "curve"


def test_the_train_sample_is_fixed_per_seed():
    assert train_sample(300, 42) == train_sample(300, 42)
    assert len(train_sample(300, 42)) == 64 and len(set(train_sample(300, 42))) == 64
    assert train_sample(10, 1) == list(range(10))


def test_lm_training_records_the_curve_and_evaluate_draws_it(tmp_path, synth_dir, tiny_model_dir):
    config = resolve_config("demo", overrides=["max_steps=4", "curve_steps=2", "logging_steps=2", "batch_size=4"],
                            train_path=str(synth_dir / "train.csv"), base_model=str(tiny_model_dir),
                            output_dir=str(tmp_path), run_name="curve")
    trained = train_merge_evaluate(config)
    points = curve_records(RunDir(trained.path))
    assert [p["step"] for p in points] == [0, 2, 4]
    val_rows = len(RunDir(trained.path).read_val_ids())
    assert all(sum(p["val_histogram"].values()) == val_rows for p in points)
    assert points[0]["train_loss"] is None and all(isinstance(p["train_loss"], float) for p in points[1:])
    assert (trained.path / "plots" / "learning_curve.png").stat().st_size > 1000
    # the last point scores the trained weights the way the runtime does (argmax, fp32 before the fp16 merge)
    assert abs(points[-1]["val_accuracy"] - trained.report["argmax_metrics"]["accuracy"]) <= 2 / val_rows
    assert json.loads((trained.path / "metrics.jsonl").read_text().splitlines()[-1])


def test_the_html_report_shows_the_learning_curve_of_the_best_run(tmp_path):
    from trainer.evaluation.report import collect_runs
    from trainer.evaluation.report_html import render_report_html

    run = tmp_path / "r"
    (run / "merged").mkdir(parents=True)
    (run / "training_config.json").write_text(json.dumps({"config": {"name": "r", "metric": "qwk"}}))
    (run / "validation_report.json").write_text(json.dumps({"qwk": 0.5, "accuracy": 0.6, "n": 10}))
    points = [{"kind": "curve", "step": s, "train_loss": 1.0 / (s + 1), "train_accuracy": 0.5, "val_accuracy": 0.4,
               "val_qwk": 0.3, "val_histogram": {}} for s in (0, 5)]
    (run / "metrics.jsonl").write_text("".join(json.dumps(p) + "\n" for p in points))
    page = render_report_html(collect_runs([run]), "qwk")
    assert 'alt="learning curve"' in page
