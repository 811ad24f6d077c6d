"""The learning curve: every N steps, train loss, accuracy on a fixed sample of train rows, validation accuracy/QWK
and the predicted-class histogram, as ``kind: curve`` records in the run's metrics.jsonl, and its PNG.

Both training paths record it: the judge head's loop (trainer/training/judge_head.py) and the LM path through
:func:`curve_callback` (``curve_steps > 0``), which scores through the label tokens exactly as the runtime does.
It answers "can the model fit its own training rows?" and "where does it stall?".
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

TRAIN_SAMPLE = 64  # train rows scored at each curve point


def train_sample(n_rows: int, seed: int, size: int = TRAIN_SAMPLE) -> list[int]:
    """A fixed sample of train-row indices (the same at every curve point)."""
    rng = np.random.default_rng(seed + 1)
    return sorted(rng.choice(n_rows, size=min(size, n_rows), replace=False).tolist())


def curve_point(step: int, loss: float | None, train_gold, train_probs, val_gold, val_probs, **extra) -> dict:
    """One curve record (argmax over the rubric-masked probabilities, as the runtime's default decision)."""
    from submission.scoring.decoding import labels_of
    from trainer.evaluation.metrics import compute_metrics

    labels = np.array(labels_of(val_probs))
    train_pred = labels[np.asarray(train_probs).argmax(axis=1)].tolist() if len(train_gold) else []
    val_pred = labels[np.asarray(val_probs).argmax(axis=1)].tolist()
    val = compute_metrics(list(val_gold), val_pred)
    train_accuracy = float(np.mean(np.array(train_pred) == np.array(train_gold))) if train_gold else None
    histogram = Counter(int(p) for p in val_pred)
    return {"kind": "curve", "step": int(step), "train_loss": loss, "train_accuracy": train_accuracy,
            "val_accuracy": val["accuracy"], "val_qwk": val["qwk"],
            "val_histogram": {str(label): histogram.get(label, 0) for label in labels.tolist()}, **extra}


class CurveRecorder:
    """Appends curve points to a run's metrics log; ``record`` returns the point's validation metric (to maximise)."""

    def __init__(self, run, every: int, metric: str = "qwk"):
        self.run, self.every, self.metric = run, max(1, int(every)), metric

    def due(self, step: int) -> bool:
        return step % self.every == 0

    def record(self, step, loss, train_gold, train_probs, val_gold, val_probs, **extra) -> float:
        import logging

        point = curve_point(step, loss, train_gold, train_probs, val_gold, val_probs, **extra)
        self.run.append_metrics(point)
        logging.getLogger("trainer.curve").info(
            "curve step %d | train loss %s | train acc %s | val acc %.3f | val qwk %s | predicted %s", step,
            "-" if loss is None else f"{loss:.4f}",
            "-" if point["train_accuracy"] is None else f"{point['train_accuracy']:.3f}", point["val_accuracy"],
            "-" if point["val_qwk"] is None else f"{point['val_qwk']:.3f}", point["val_histogram"])
        value = point["val_qwk"] if self.metric == "qwk" else point["val_accuracy"]
        return float(value) if value is not None else float("-inf")


def curve_records(run) -> list[dict]:
    """The run's curve points, in step order."""
    return sorted((r for r in run.read_metrics() if r.get("kind") == "curve"), key=lambda r: r["step"])


def draw_learning_curve(ax, points: list[dict], title: str = "") -> None:
    """Train loss (left axis) and train/validation accuracy + validation QWK (right axis) against step on ``ax``."""
    steps = [p["step"] for p in points]
    losses = [(p["step"], p["train_loss"]) for p in points if p.get("train_loss") is not None]
    if losses:
        ax.plot(*zip(*losses, strict=True), color="tab:gray", marker=".", label="train loss")
    ax.set_xlabel("step")
    ax.set_ylabel("train loss")
    twin = ax.twinx()
    for key, style in (("train_accuracy", "tab:green"), ("val_accuracy", "tab:blue"), ("val_qwk", "tab:red")):
        values = [(s, p.get(key)) for s, p in zip(steps, points, strict=True) if p.get(key) is not None]
        if values:
            twin.plot(*zip(*values, strict=True), color=style, marker="o", label=key.replace("_", " "))
    twin.set_ylim(-0.1, 1.05)
    twin.set_ylabel("accuracy / QWK")
    handles = ax.get_legend_handles_labels()[0] + twin.get_legend_handles_labels()[0]
    twin.legend(handles, [h.get_label() for h in handles], loc="lower right", fontsize=8)
    ax.set_title(title, fontsize=10)


def plot_learning_curve(points: list[dict], out, title: str = "") -> Path | None:
    """PNG of :func:`draw_learning_curve` (``out``: a path or a binary file); None when there are no points."""
    if not points:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    draw_learning_curve(ax, points, title)
    fig.tight_layout()
    if isinstance(out, (str, Path)):
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100, format="png")
    plt.close(fig)
    return out


def label_probabilities(model, rows: list[list[int]], allowed, label_ids: list[int]) -> np.ndarray:
    """[N, 5] rubric-masked label probabilities of a causal LM, one row per forward (the runtime's reading)."""
    import torch

    from submission.scoring.decoding import probabilities_from_label_logits

    was_training = model.training
    model.eval()
    logits = np.zeros((len(rows), len(label_ids)))
    with torch.no_grad():
        for i, ids in enumerate(rows):
            out = model(input_ids=torch.as_tensor([ids], device=model.device), logits_to_keep=1, use_cache=False)
            logits[i] = out.logits[0, -1, label_ids].float().cpu().numpy()
    if was_training:
        model.train()
    return probabilities_from_label_logits(logits, allowed)


def curve_callback(run, renderer, train_frame, val_frame, label_ids: list[int], every: int, seed: int,
                   max_tokens: int):
    """A ``TrainerCallback`` recording a curve point at step 0 and every ``every`` optimizer steps (LM path)."""
    from transformers import TrainerCallback

    sample = train_sample(len(train_frame), seed)
    train_rows = [renderer.render(train_frame["prompt"].iloc[i], max_tokens) for i in sample]
    val_rows = [renderer.render(p, max_tokens) for p in val_frame["prompt"]]
    train_gold = [int(train_frame["score"].iloc[i]) for i in sample]
    val_gold = [int(s) for s in val_frame["score"]]
    recorder = CurveRecorder(run, every)

    class CurveCallback(TrainerCallback):
        """Scores the fixed train sample and the validation rows through the label tokens every ``every`` steps."""

        last_loss = None
        pending = None  # a due point waits for this step's loss when the step also logs (on_log follows on_step_end)

        def _point(self, state, model):
            train_probs = label_probabilities(model, [r.input_ids for r in train_rows], [r.allowed for r in train_rows],
                                              label_ids)
            val_probs = label_probabilities(model, [r.input_ids for r in val_rows], [r.allowed for r in val_rows],
                                            label_ids)
            recorder.record(state.global_step, self.last_loss, train_gold, train_probs, val_gold, val_probs)

        def on_train_begin(self, args, state, control, model=None, **kwargs):
            if state.is_world_process_zero and state.global_step == 0:
                self._point(state, model)

        def on_log(self, args, state, control, logs=None, model=None, **kwargs):
            if logs and "loss" in logs:
                self.last_loss = float(logs["loss"])
            if self.pending is not None:
                self.pending, pending_model = None, self.pending
                self._point(state, pending_model)

        def on_step_end(self, args, state, control, model=None, **kwargs):
            if state.is_world_process_zero and (recorder.due(state.global_step) or state.global_step == state.max_steps):
                if state.global_step % args.logging_steps == 0 or state.global_step == state.max_steps:
                    self.pending = model
                else:
                    self._point(state, model)

    return CurveCallback()
