"""POLLUX's metrics on POLLUX's slices: Spearman and MAE against the annotators' mean, overall, per task type and
per criterion, beside accuracy and QWK against the integer score.

    python -m trainer pollux-report data/pollux/val.csv predictions.csv

The data is an ``import-pollux`` CSV (trainer/data/pollux.py): ``id,score`` plus ``human_mean``, ``task_type`` and
``criteria_name``. What is done with -1 and with fractional scores (also in every block's ``notes``):

- Spearman and MAE compare the prediction with ``human_mean`` (the annotators' fractional mean, as POLLUX's authors
  do) where the row has one, else with the integer score. Rows whose gold score is -1 (most annotators: not
  applicable) have no point on the scale and are left out of these two; a predicted -1 on an applicable row counts
  as the value -1.
- Accuracy and QWK compare the prediction with the integer score (the rounded consensus), -1 included as the
  ordinal -1, as everywhere else in the project (trainer/evaluation/metrics.py).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import spearmanr
from sklearn.metrics import mean_absolute_error

from trainer.evaluation.metrics import scalar_metrics

SLICES: tuple[tuple[str, str], ...] = (("task_type", "per_task_type"), ("criteria_name", "per_criterion_name"))
NOTES: tuple[str, ...] = (
    "spearman, mae: prediction vs human_mean (annotators' fractional mean) where present, else the integer score",
    "spearman, mae: rows with gold -1 (not applicable) left out; a predicted -1 counts as -1",
    "accuracy, qwk: prediction vs the integer score (rounded consensus), -1 included as the ordinal -1",
)
_COLUMNS = ("human_mean", "task_type", "criteria_name")
_TABLE_CRITERIA = 25


def has_pollux_columns(columns) -> bool:
    """Whether a CSV with these columns carries POLLUX's metadata (any of human_mean, task_type, criteria_name)."""
    return any(c in columns for c in _COLUMNS)


def _clean(value) -> float | None:
    value = float(value)
    return None if math.isnan(value) or math.isinf(value) else value


def slice_metrics(score: np.ndarray, target: np.ndarray, y_pred: np.ndarray) -> dict:
    """n, Spearman and MAE vs ``target`` on the applicable rows (gold != -1), accuracy and QWK vs ``score``."""
    scalars = scalar_metrics(score, y_pred)
    applicable = score != -1
    truth, pred = target[applicable], y_pred[applicable].astype(float)
    spearman = None
    if len(truth) >= 2 and np.ptp(truth) > 0 and np.ptp(pred) > 0:
        spearman = _clean(spearmanr(truth, pred)[0])
    return {"n": int(len(score)), "n_applicable": int(applicable.sum()), "spearman": spearman,
            "mae": _clean(mean_absolute_error(truth, pred)) if len(truth) else None,
            "accuracy": scalars["accuracy"], "qwk": scalars["qwk"]}


def pollux_metrics(data: pd.DataFrame, y_pred) -> dict:
    """The POLLUX block for ``data`` (``score`` and any of ``human_mean``, ``task_type``, ``criteria_name``) and
    one integer prediction per row: overall, then one entry per task type and per criterion (name -> metrics)."""
    score = data["score"].astype(int).to_numpy()
    y_pred = np.asarray([int(v) for v in y_pred])
    if len(y_pred) != len(score):
        raise ValueError(f"{len(y_pred)} predictions for {len(score)} rows")
    mean = pd.to_numeric(data["human_mean"], errors="coerce") if "human_mean" in data else pd.Series(np.nan, data.index)
    target = mean.fillna(pd.Series(score, index=data.index, dtype=float)).to_numpy(dtype=float)
    block = {"target": "human_mean" if mean.notna().any() else "score", "notes": list(NOTES),
             "overall": slice_metrics(score, target, y_pred)}
    for column, key in SLICES:
        if column not in data:
            continue
        names = data[column].fillna("").astype(str).to_numpy()
        block[key] = {name: slice_metrics(score[names == name], target[names == name], y_pred[names == name])
                      for name in sorted(set(names.tolist()), key=lambda n: (-(names == n).sum(), n))}
    return block


def pollux_block_for(data_path: str | Path, ids, y_pred) -> dict | None:
    """:func:`pollux_metrics` for the rows ``ids`` of an ``import-pollux`` CSV; None when it has no POLLUX columns."""
    data = pd.read_csv(data_path, dtype={"id": str}, encoding="utf-8-sig")
    if not has_pollux_columns(data.columns):
        return None
    data = data.drop_duplicates("id").set_index("id").loc[[str(i) for i in ids]].reset_index()
    return pollux_metrics(data, y_pred)


def format_pollux_table(block: dict, max_criteria: int = _TABLE_CRITERIA) -> str:
    """Overall, then each task type, then the largest ``max_criteria`` criteria: n, Spearman, MAE, accuracy, QWK."""
    def fmt(value):
        return "   n/a" if value is None else f"{value:6.3f}"

    def line(name: str, row: dict) -> str:
        return (f"{name[:44]:<44} {row['n']:>6} {fmt(row['spearman'])} {fmt(row['mae'])} {fmt(row['accuracy'])} "
                f"{fmt(row['qwk'])}")

    lines = [f"POLLUX metrics (Spearman/MAE vs {block['target']})",
             f"{'slice':<44} {'n':>6} {'spear':>6} {'mae':>6} {'acc':>6} {'qwk':>6}",
             line("all", block["overall"])]
    for name, row in (block.get("per_task_type") or {}).items():
        lines.append(line(f"task_type: {name}", row))
    criteria = list((block.get("per_criterion_name") or {}).items())
    for name, row in criteria[:max_criteria]:
        lines.append(line(f"criterion: {name}", row))
    if len(criteria) > max_criteria:
        lines.append(f"... {len(criteria) - max_criteria} more criteria in the JSON report")
    lines.extend(f"note: {note}" for note in block["notes"])
    return "\n".join(lines)


def table_rows(block: dict) -> tuple[list[str], list[list]]:
    """(header, rows) of the per-slice table with every slice (the judge report's HTML table)."""
    def fmt(value):
        return "n/a" if value is None else f"{value:.3f}"

    slices = [("all", block["overall"]),
              *((f"task_type: {k}", v) for k, v in (block.get("per_task_type") or {}).items()),
              *((f"criterion: {k}", v) for k, v in (block.get("per_criterion_name") or {}).items())]
    rows = [[name, row["n"], fmt(row["spearman"]), fmt(row["mae"]), fmt(row["accuracy"]), fmt(row["qwk"])]
            for name, row in slices]
    return ["slice", "n", f"Spearman vs {block['target']}", f"MAE vs {block['target']}", "accuracy", "QWK"], rows


def read_predicted_scores(path: str | Path, ids) -> list[int]:
    """The runtime's predictions (``id,score``) or a probabilities file (``id,p_-1..p_3``: the argmax), in ``ids``'
    order; a missing id is a DataError."""
    from submission.data import DataError
    from submission.scoring.decoding import LABELS, LABELS_0_4
    from submission.scoring.probabilities import PROBABILITY_COLUMNS, probability_columns

    frame = pd.read_csv(path, dtype={"id": str}, encoding="utf-8-sig").drop_duplicates("id").set_index("id")
    missing = [i for i in map(str, ids) if i not in frame.index]
    if missing:
        raise DataError(f"{path}: no prediction for {len(missing)} id(s), e.g. {missing[0]!r}")
    frame = frame.loc[[str(i) for i in ids]]
    columns, labels = list(PROBABILITY_COLUMNS), LABELS
    if all(c in frame for c in probability_columns(LABELS_0_4)):  # a 0-4 judge's (judge.json max_score 4)
        columns, labels = list(probability_columns(LABELS_0_4)), LABELS_0_4
    if all(c in frame for c in columns):  # before `score`: a val_predictions.csv's score column is the gold one
        return [labels[k] for k in frame[columns].to_numpy(dtype=float).argmax(axis=1)]
    if "score" not in frame:
        raise DataError(f"{path}: expected a score column or {','.join(columns)}")
    return [int(v) for v in frame["score"]]
