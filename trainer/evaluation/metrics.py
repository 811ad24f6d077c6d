"""Every metric we report, from one function with one JSON-serialisable result (evaluation side: scipy/sklearn).

The contest metric is unknown (docs/ARCHITECTURE.md §6), so reports carry all of them and model selection names one.
Numeric metrics (MAE, RMSE, correlations, QWK) treat -1 as the ordinal value -1: predicting -1 for a 3 costs 4.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import (
    accuracy_score,
    cohen_kappa_score,
    confusion_matrix,
    f1_score,
    mean_absolute_error,
    mean_squared_error,
    precision_recall_fscore_support,
)

from submission.choice.metrics import (  # noqa: F401 - one import for callers
    HEADLINE_METRICS,
    METRIC_NAMES,
    higher_is_better,
    metric_value,
)
from submission.scoring.decoding import LABELS


def _clean(value) -> float | None:
    value = float(value)
    return None if math.isnan(value) or math.isinf(value) else value


def _correlation(fn, y_true: np.ndarray, y_pred: np.ndarray) -> float | None:
    if len(y_true) < 2 or np.all(y_true == y_true[0]) or np.all(y_pred == y_pred[0]):
        return None
    return _clean(fn(y_true, y_pred)[0])


def _qwk(y_true: np.ndarray, y_pred: np.ndarray) -> float | None:
    values = set(y_true.tolist()) | set(y_pred.tolist())
    if len(values) < 2:
        return None
    # sklearn weights by a label's position in `labels`: a contiguous range makes position distance = score distance.
    labels = list(range(min(values), max(values) + 1))
    return _clean(cohen_kappa_score(y_true, y_pred, weights="quadratic", labels=labels))


def scalar_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict:
    """Accuracy, F1s, MAE, RMSE, correlations and QWK of integer arrays (undefined -> None); for sub-groups too."""
    present = sorted(set(y_true.tolist()) | set(y_pred.tolist()))
    return {
        "accuracy": _clean(accuracy_score(y_true, y_pred)),
        "macro_f1": _clean(f1_score(y_true, y_pred, labels=present, average="macro", zero_division=0)),
        "weighted_f1": _clean(f1_score(y_true, y_pred, labels=present, average="weighted", zero_division=0)),
        "mae": _clean(mean_absolute_error(y_true, y_pred)),
        "rmse": _clean(math.sqrt(mean_squared_error(y_true, y_pred))),
        "spearman": _correlation(spearmanr, y_true, y_pred),
        "pearson": _correlation(pearsonr, y_true, y_pred),
        "qwk": _qwk(y_true, y_pred),
    }


def compute_metrics(
    y_true: Sequence[int],
    y_pred: Sequence[int],
    families: Sequence[str] | None = None,
    labels: Sequence[int] = LABELS,
) -> dict:
    """All metrics for integer scores; ``families`` (one per row) adds a per-family breakdown.

    Undefined values (a correlation of constant predictions, say) are None, never NaN, so the result always
    survives ``json.dumps``. F1 averages run over the labels present in truth or predictions.
    """
    y_true = np.asarray([int(v) for v in y_true])
    y_pred = np.asarray([int(v) for v in y_pred])
    if y_true.shape != y_pred.shape:
        raise ValueError(f"{len(y_true)} true labels but {len(y_pred)} predictions")
    if len(y_true) == 0:
        raise ValueError("no rows to score")
    labels = list(labels)
    report: dict = {"n": int(len(y_true)), **scalar_metrics(y_true, y_pred)}
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=0
    )
    report["per_class"] = {
        str(label): {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
        for label, p, r, f, s in zip(labels, precision, recall, f1, support, strict=True)
    }
    report["confusion_matrix"] = {
        "labels": labels,
        "matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
    }
    if families is not None:
        families = np.asarray(list(families))
        if families.shape != y_true.shape:
            raise ValueError(f"{len(families)} families for {len(y_true)} rows")
        report["per_family"] = {}
        for family in sorted(set(families.tolist())):
            rows = families == family
            scalars = scalar_metrics(y_true[rows], y_pred[rows])
            report["per_family"][family] = {"n": int(rows.sum())} | {
                k: scalars[k] for k in HEADLINE_METRICS
            }
    return report


def format_table(report: dict) -> str:
    """A short text table of the main metrics, then one line per task family."""
    def fmt(value):
        return "  n/a" if value is None else f"{value:6.3f}"

    lines = [f"{'metric':<12} value", *(f"{name:<12} {fmt(report.get(name))}" for name in METRIC_NAMES)]
    lines.append(f"{'rows':<12} {report['n']}")
    from trainer.evaluation.collapse import collapse_line

    collapsed = collapse_line(report)
    families = report.get("per_family") or {}
    if families:
        lines.append("")
        lines.append(f"{'family':<18} {'n':>5} {'acc':>6} {'macroF1':>7} {'mae':>6} {'qwk':>6}")
        for family, row in families.items():
            lines.append(
                f"{family:<18} {row['n']:>5} {fmt(row['accuracy'])} {fmt(row['macro_f1']):>7} "
                f"{fmt(row['mae'])} {fmt(row['qwk'])}"
            )
    if collapsed:
        lines += ["", collapsed]
    return "\n".join(lines)


def plot_confusion_matrix(report: dict, path) -> None:
    """Write the report's confusion matrix as a PNG (matplotlib is imported here, off the runtime path)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = report["confusion_matrix"]["labels"]
    matrix = np.asarray(report["confusion_matrix"]["matrix"])
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels)
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for (i, j), value in np.ndenumerate(matrix):
        ax.text(j, i, str(value), ha="center", va="center", color="black" if value < matrix.max() / 2 else "white")
    acc = report.get("accuracy")
    ax.set_title(f"n={report['n']}  accuracy={acc:.3f}" if acc is not None else f"n={report['n']}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
