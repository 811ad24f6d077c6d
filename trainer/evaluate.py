"""Validation with the submission's own scorer on the merged weights: report, decision rule, plots, predictions.

Predictions are saved by id with class probabilities (``val_predictions.csv``: id, score, p_-1..p_3), the one
format that ensembling and reports read.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from submission.scoring import LABELS


def score_frame(model_dir: Path, frame: pd.DataFrame, max_tokens: int, device: str | None = None):
    """(probabilities [N,5], allowed per row, families) for a frame, through the runtime's own code path."""
    from submission.engine_hf import TransformersEngine
    from submission.prompting import PromptRenderer
    from submission.scoring import probabilities_from_label_logits

    engine = TransformersEngine(model_dir, device=device)
    renderer = PromptRenderer(engine.tokenizer, max_tokens=max_tokens)
    rendered = renderer.render_many(frame["prompt"].tolist())
    allowed = [r.sections.allowed for r in rendered]
    probs = probabilities_from_label_logits(engine.label_logits([r.input_ids for r in rendered]), allowed)
    return probs, allowed, [r.sections.family for r in rendered]


def metric_objective(metric: str):
    """objective(y_true, y_pred) to maximise for a metric name (negated for error metrics; None counts as worst)."""
    from submission.metrics import compute_metrics, higher_is_better

    sign = 1.0 if higher_is_better(metric) else -1.0

    def objective(y_true, y_pred) -> float:
        value = compute_metrics(y_true, y_pred)[metric]
        return -np.inf if value is None else sign * value

    return objective


def evaluate_run(run_dir: Path, data: Path | None = None, device: str | None = None) -> dict:
    """Score ``data`` (default: the run's validation split) and write the report, plots and predictions."""
    from submission.data import read_train_csv
    from submission.metrics import compute_metrics, plot_confusion_matrix
    from submission.scoring import decide, fit_thresholds

    run_dir = Path(run_dir)
    record = json.loads((run_dir / "training_config.json").read_text(encoding="utf-8"))
    config = record["config"]
    merged = run_dir / "merged"
    if not (merged / "config.json").is_file():
        raise FileNotFoundError(f"{merged}: no merged model; run `python -m trainer merge {run_dir}` first")
    frame = read_train_csv(data or run_dir / "val.csv")
    probs, allowed, families = score_frame(merged, frame, config["max_tokens"], device)
    y_true = frame["score"].tolist()
    decision, _ = fit_thresholds(probs, y_true, allowed, metric_objective(config["metric"]))
    scores = decide(probs, allowed, decision)
    report = compute_metrics(y_true, scores, families=families)
    prior_path = run_dir / "class_prior.json"
    report.update({
        "metric": config["metric"],
        "decision": decision.to_dict(),
        "class_prior": json.loads(prior_path.read_text(encoding="utf-8")) if prior_path.is_file() else None,
        "rows": len(frame),
        "data": str(data or run_dir / "val.csv"),
        "model_dir": str(merged),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "train_seconds": record.get("train_seconds"),
    })
    text = json.dumps(report, indent=2, ensure_ascii=False)
    (run_dir / "validation_report.json").write_text(text, encoding="utf-8")
    (merged / "validation_report.json").write_text(text, encoding="utf-8")
    predictions = pd.DataFrame({"id": frame["id"], "score": scores})
    for i, label in enumerate(LABELS):
        predictions[f"p_{label}"] = probs[:, i].round(6)
    predictions.to_csv(run_dir / "val_predictions.csv", index=False)
    plots = run_dir / "plots"
    plots.mkdir(exist_ok=True)
    plot_confusion_matrix(report, plots / "confusion_matrix.png")
    plot_loss_curve(run_dir / "metrics.jsonl", plots / "loss_curve.png")
    from trainer.merge import write_model_card

    write_model_card(run_dir)
    return report


def plot_loss_curve(metrics_path: Path, out: Path) -> bool:
    """Training loss by step from metrics.jsonl as a PNG; False when there is nothing to plot."""
    if not metrics_path.is_file():
        return False
    events = [json.loads(line) for line in metrics_path.read_text(encoding="utf-8").splitlines() if line.strip()]
    points = [(e["step"], e["loss"]) for e in events if "loss" in e]
    if not points:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot(*zip(*points, strict=True), marker=".")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return True
