"""Score a run's merged weights with the runtime's own code and write ``validation_report.json`` plus plots.

    python -m trainer evaluate runs/demo --data data/synth/train.csv

Rows: when the CSV holds every id of the run's ``val_ids.csv`` only those rows are scored (the shared validation
split); otherwise every row is. Scoring is the runtime's own (:func:`submission.scoring.scorer.score_prompts`: renderer,
engine, chunks, fallbacks; ``--engine hf`` by default, ``vllm`` or ``auto`` as the runtime chooses), then
``decide``; thresholds are fitted here, on these rows, for the configured metric (argmax unless beaten).

The report also carries the calibration and bias checks of trainer/evaluation/judge_checks.py (ECE, answer-length quartiles,
reference present/absent, score distribution, per-criterion agreement, most confident errors) on the same rows.

When the run used ``augment_not_applicable``, the same augmentation is applied to these rows (never to train or test
rows) and the P(-1) cut is fitted for the metric on them plus these rows (argmax for -1 unless beaten);
the report's ``not_applicable`` block gives -1 precision and recall on those rows. The other metrics stay on the
original rows.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from submission.choice.metrics import HEADLINE_METRICS
from trainer.training.rundir import RunDir

log = logging.getLogger("trainer.evaluation.evaluate")


def select_rows(frame, run: RunDir):
    """The run's validation rows when ``frame`` holds every saved validation id, else all of ``frame``."""
    if run.val_ids_path.is_file():
        val_ids = run.read_val_ids()
        if val_ids and val_ids <= set(frame["id"]):
            return frame[frame["id"].isin(val_ids)].reset_index(drop=True)
        log.warning("%s: %d of the run's %d validation ids are not in this data; scoring all %d rows", run.name,
                    len(val_ids - set(frame["id"])), len(val_ids), len(frame))
    return frame


def score_rows(model_dir: Path, prompts, max_tokens: int, device: str | None = None, engine: str = "hf",
               tensor_parallel_size: int = 1, prefix_sharing: bool = True, usage: dict | None = None):
    """(probabilities [N,5], allowed labels per row, families) from the runtime's scorer
    (:func:`submission.scoring.scorer.score_prompts`: renderer, ``engine`` auto/vllm/hf with its fallbacks, chunks).

    ``usage``, when given, is filled with what the scoring cost (:func:`scoring_usage`)."""
    from submission.scoring.scorer import ScoringSettings, score_prompts

    scored = score_prompts(model_dir, prompts, ScoringSettings(engine=engine, device=device, max_tokens=max_tokens,
                                                               tensor_parallel_size=tensor_parallel_size,
                                                               prefix_sharing=prefix_sharing))
    if usage is not None:
        usage.update(scoring_usage(scored, prefix_sharing))
    sections = scored.rendered.sections
    return scored.probs, [s.allowed for s in sections], [s.family for s in sections]


def scoring_usage(scored, prefix_sharing: bool) -> dict:
    """The report's ``scoring`` block: engine, prompt tokens submitted (every scored row's prompt) and computed (those
    the model really ran: fewer where rows share a prefix, submission/engines/prefix_sharing.py), seconds."""
    submitted, computed = int(scored.tokens_scored), int(scored.tokens_computed)
    return {"engine": scored.engine.name, "prefix_sharing": bool(prefix_sharing), "tokens_submitted": submitted,
            "tokens_computed": computed, "computed_share": round(computed / submitted, 4) if submitted else None,
            "seconds": round(float(scored.seconds), 3)}


def metric_objective(metric: str):
    """objective(y_true, y_pred) -> float to MAXIMISE (error metrics negated; undefined -> -inf)."""
    from trainer.evaluation.metrics import compute_metrics, higher_is_better, metric_value

    sign = 1.0 if higher_is_better(metric) else -1.0

    def objective(y_true, y_pred) -> float:
        value = metric_value(compute_metrics(y_true, y_pred), metric)
        return -np.inf if value is None else sign * value

    return objective


def minus_one_scores(y_true, y_pred) -> dict:
    """-1 precision and recall (None when undefined), how many rows said -1 and how many are gold -1."""
    truth = np.asarray(y_true) == -1
    said = np.asarray(y_pred) == -1
    hits = int((truth & said).sum())
    return {"precision": hits / int(said.sum()) if said.any() else None,
            "recall": hits / int(truth.sum()) if truth.any() else None,
            "predicted": int(said.sum()), "support": int(truth.sum())}


def fit_decision(probs, allowed, y_true, metric: str, not_applicable: tuple | None = None):
    """(decision, its -1 block or None): ordinal thresholds fitted for ``metric`` on the rows, then, with
    ``not_applicable`` = (probabilities, allowed) of augmented rows (all gold -1), the P(-1) cut fitted on both
    together (a false -1 costs as much as a missed one); the block gives -1 precision/recall on both."""
    from submission.scoring.decoding import decide, fit_minus_one_threshold, fit_thresholds

    decision, _ = fit_thresholds(probs, list(y_true), allowed, metric_objective(metric))
    if not_applicable is None or not len(not_applicable[0]):
        return decision, None
    all_probs = np.concatenate([np.asarray(probs), np.asarray(not_applicable[0])])
    all_allowed = [*allowed, *not_applicable[1]]
    all_true = [*map(int, y_true), *[-1] * len(not_applicable[0])]
    before = decision
    decision, _ = fit_minus_one_threshold(all_probs, all_true, all_allowed, metric_objective(metric), decision)
    return decision, {
        "rows": len(all_true), "augmented_rows": len(not_applicable[0]),
        "decision": minus_one_scores(all_true, decide(all_probs, all_allowed, decision)),
        "argmax": minus_one_scores(all_true, decide(all_probs, all_allowed, before)),
    }


def build_report(probs, allowed, families, y_true, metric: str, class_prior: dict | None, model_dir: Path,
                 not_applicable: tuple | None = None, prompts=None, ids=None) -> dict:
    """compute_metrics output + decision (fitted for ``metric``, :func:`fit_decision`), metric, class_prior, rows,
    created, model_dir; ``not_applicable`` (augmented validation rows) adds the P(-1) cut and the -1 block;
    ``prompts`` (and ``ids``) add calibration and the bias checks (trainer/evaluation/judge_checks.py)."""
    from submission.scoring.decoding import decide
    from trainer.evaluation.collapse import collapse_fields
    from trainer.evaluation.judge_checks import judge_checks
    from trainer.evaluation.metrics import compute_metrics

    decision, minus_one_block = fit_decision(probs, allowed, y_true, metric, not_applicable)
    y_pred = decide(probs, allowed, decision)
    report = compute_metrics(list(y_true), y_pred, families=families)
    argmax = compute_metrics(list(y_true), decide(probs, allowed), families=None)
    report.update({
        "metric": metric,
        "decision": decision.to_dict(),
        "argmax_metrics": {k: argmax[k] for k in HEADLINE_METRICS},
        "class_prior": class_prior or {},
        "rows": len(y_pred),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "model_dir": str(model_dir),
    })
    report.update(collapse_fields(list(y_true), y_pred, report.get("qwk"), report.get("accuracy")))
    if minus_one_block is not None:
        report["not_applicable"] = minus_one_block
    if prompts is not None:
        report.update(judge_checks(list(prompts), probs, list(y_true), y_pred, ids))
    return report


def seen_unseen_metrics(prompts, y_true, y_pred, split: dict) -> dict:
    """Metrics on rows whose group (criterion or family) the run trained on vs rows of groups it never saw.

    ``split`` is ``training_config.json``'s ``split`` record (``split_by``, ``train_groups``); per group too.
    """
    from trainer.data.split import row_groups
    from trainer.evaluation.metrics import compute_metrics

    keys = HEADLINE_METRICS
    groups = np.asarray(row_groups(prompts, split["split_by"]))
    y_true, y_pred = np.asarray(list(y_true)), np.asarray(list(y_pred))
    seen = np.isin(groups, list(split["train_groups"]))

    def metrics(mask) -> dict | None:
        if not mask.any():
            return None
        found = compute_metrics(y_true[mask], y_pred[mask])
        return {"n": int(mask.sum()), **{k: found[k] for k in keys}}

    return {
        "split_by": split["split_by"],
        "seen": metrics(seen),
        "unseen": metrics(~seen),
        "unseen_groups": sorted(set(groups[~seen].tolist())),
        "per_group": {g: {"seen": bool(g in split["train_groups"]), **metrics(groups == g)}
                      for g in sorted(set(groups.tolist()))},
    }


def plot_loss_curve(run: RunDir, out: Path) -> Path | None:
    """Training loss (per labelled token) and learning rate against step, from the run's metrics log (None when
    nothing was logged)."""
    records = run.read_metrics()
    points = [(r["step"], r["loss"]) for r in records if "loss" in r]
    if not points:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(*zip(*points, strict=True), marker=".", label="train loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (score + end tokens)")
    rates = [(r["step"], r["learning_rate"]) for r in records if "learning_rate" in r]
    if rates:
        twin = ax.twinx()
        twin.plot(*zip(*rates, strict=True), color="tab:orange", alpha=0.6, label="lr")
        twin.set_ylabel("learning rate")
    ax.set_title(run.name)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def evaluate_run(run_dir: str | Path, data_path: str | Path | None = None, device: str | None = None,
                 engine: str = "hf", tensor_parallel_size: int = 1, prefix_sharing: bool = True) -> dict:
    """Evaluate ``RUN_DIR/merged`` on ``data_path`` (default: the run's train CSV, validation ids only) with
    ``engine`` (hf, vllm or auto: :func:`submission.scoring.scorer.choose_engine`); ``prefix_sharing`` False scores
    every row on its own (comparisons, debugging: the probabilities are the same)."""
    from submission.data import read_train_csv
    from trainer.data.augment import not_applicable_rows
    from trainer.evaluation.judge_checks import plot_reliability_diagram, plot_score_distribution
    from trainer.evaluation.metrics import plot_confusion_matrix
    from trainer.training.merge import write_model_card

    run = RunDir(run_dir)
    config = run.config()
    if not run.has_merged_weights():
        raise FileNotFoundError(f"{run.merged}: no merged model; run `python -m trainer merge {run.path}` first")
    if config.get("soft_labels"):  # its train CSV may hold rows without a score: they are not evaluated
        from trainer.recipes.distill import read_gold_rows

        frame = select_rows(read_gold_rows(data_path or config["train_path"]), run)
    else:
        frame = select_rows(read_train_csv(data_path or config["train_path"]), run)
    augmented = not_applicable_rows(frame, config.get("augment_not_applicable", 0.0), config["seed"])
    split_over = {"tensor_parallel_size": tensor_parallel_size} if tensor_parallel_size > 1 else {}  # vLLM only
    usage: dict = {}
    probs, allowed, families = score_rows(run.merged, [*frame["prompt"], *augmented["prompt"]], config["max_tokens"],
                                          device, engine, prefix_sharing=prefix_sharing, usage=usage, **split_over)
    n = len(frame)
    report = build_report(probs[:n], allowed[:n], families[:n], frame["score"].astype(int).tolist(), config["metric"],
                          run.read_prior(), run.merged, (probs[n:], allowed[n:]) if len(augmented) else None,
                          prompts=frame["prompt"].tolist(), ids=frame["id"].tolist())
    split = run.read_record().get("split")
    if split:
        from submission.scoring.decoding import Decision, decide

        y_pred = decide(probs[:n], allowed[:n], Decision.from_dict(report["decision"]))
        report["groups"] = seen_unseen_metrics(frame["prompt"], frame["score"].astype(int), y_pred, split)
    pollux = pollux_block(data_path or config["train_path"], frame["id"], probs[:n], allowed[:n], report["decision"])
    if pollux:
        report["pollux"] = pollux
    if usage:
        report["scoring"] = usage
    run.write_report(report)
    save_predictions(run.val_predictions_path, frame["id"].tolist(), probs[:n], frame["score"].astype(int).tolist())
    run.plots.mkdir(exist_ok=True)
    plot_confusion_matrix(report, run.plots / "confusion_matrix.png")
    plot_reliability_diagram(report, run.plots / "reliability_diagram.png")
    plot_score_distribution(report, run.plots / "score_distribution.png")
    plot_loss_curve(run, run.plots / "loss_curve.png")
    from trainer.evaluation.learning_curve import curve_records, plot_learning_curve

    plot_learning_curve(curve_records(run), run.plots / "learning_curve.png", run.name)
    write_model_card(run)
    return report


def pollux_block(data_path, ids, probs, allowed, decision: dict) -> dict | None:
    """POLLUX's metrics per slice (trainer/evaluation/pollux_metrics.py) on the decided scores, when the CSV has
    POLLUX's columns (an ``import-pollux`` file); else None."""
    from submission.scoring.decoding import Decision, decide
    from trainer.evaluation.pollux_metrics import pollux_block_for

    return pollux_block_for(data_path, list(ids), decide(probs, allowed, Decision.from_dict(decision)))


def save_predictions(path: Path, ids, probs, y_true=None) -> Path:
    """One prediction format everywhere (validation, k-fold, ensembles): id, p(-1..3), [score]."""
    import pandas as pd

    from submission.scoring.decoding import labels_of
    from submission.scoring.probabilities import probability_columns

    columns = probability_columns(labels_of(probs))  # p_-1..p_3 (a 0-4 judge's: ..p_4)
    frame = pd.DataFrame(np.asarray(probs), columns=list(columns))
    frame.insert(0, "id", list(ids))
    if y_true is not None:
        frame["score"] = list(y_true)
    frame.to_csv(path, index=False)
    return path
