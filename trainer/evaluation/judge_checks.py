"""Can the judge's P(score) be trusted, and does it lean the known ways? Calibration and bias checks for a report.

    python -m trainer evaluate runs/demo --data labelled.csv    # validation_report.json gets every block below
    python -m trainer report runs --html report.html            # and this page shows them

Blocks (keys of ``validation_report.json``, from :func:`judge_checks`):

- ``calibration``: top-label expected calibration error over ``ECE_BINS`` equal-width bins of the confidence
  max_k P(k) (bins [0, 0.1), [0.1, 0.2), ..., [0.9, 1.0]; the argmax label is the one judged right or wrong, so the
  number does not depend on fitted thresholds) and the reliability table (per non-empty bin: rows, mean confidence,
  accuracy). ECE = sum over bins of rows/N * |accuracy - mean confidence|.
- ``by_answer_length``: the rows in four equal-count groups by the answer section's length in characters (ties
  broken by row order), each with accuracy, QWK and the mean signed error (predicted - gold): a judge that lets
  the longer answer win has a mean error that rises from the first quartile to the fourth (``mean_error_gap``).
- ``by_reference``: the same numbers for rows with a reference answer and rows without one (a judge leaning on the
  reference does much better with it).
- ``score_distribution``: gold and predicted counts per score; ``mid_scale_excess`` is the predicted share of 1 and
  2 minus the gold share (mid-scale bias: a judge that "tends to assign a mediocre score" has it well above 0).
- ``per_criterion``: rows, accuracy, QWK, Spearman per criterion text, worst first (accuracy, then QWK).
- ``confident_errors``: the ``CONFIDENT_ERRORS`` wrong rows (decided score != gold) with the highest P(decided score).

Numbers use the decided scores (the report's decision rule) except ``calibration``. Rows whose layout was not
recognised have no answer or reference section: they are left out of the length and reference splits (counted in
``unparsed_rows``) and grouped as one criterion. Metrics come from trainer/evaluation/metrics.py (scipy/sklearn), so -1 is the
ordinal value -1 here too.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from submission.prompts.sections import parse_prompt
from submission.scoring.decoding import LABELS, labels_of
from trainer.evaluation.metrics import scalar_metrics

ECE_BINS = 10
LENGTH_GROUPS = 4
CONFIDENT_ERRORS = 20
EXCERPT_CHARS = 240
UNPARSED_CRITERION = "(layout not recognised)"


def calibration(probs, y_true, bins: int = ECE_BINS) -> dict:
    """Top-label ECE over ``bins`` equal-width confidence bins and the reliability table (see the module docstring)."""
    probs = np.asarray(probs, dtype=np.float64)
    y_true = np.asarray([int(v) for v in y_true])
    if len(probs) == 0:
        raise ValueError("no rows to calibrate")
    confidence = probs.max(axis=1)
    correct = np.asarray(labels_of(probs))[probs.argmax(axis=1)] == y_true
    which = np.minimum((confidence * bins).astype(int), bins - 1)  # [k/bins, (k+1)/bins); 1.0 joins the last bin
    table, ece = [], 0.0
    for k in range(bins):
        rows = which == k
        if not rows.any():
            continue
        accuracy, mean_confidence = float(correct[rows].mean()), float(confidence[rows].mean())
        ece += rows.sum() / len(probs) * abs(accuracy - mean_confidence)
        table.append({"low": k / bins, "high": (k + 1) / bins, "n": int(rows.sum()), "confidence": mean_confidence,
                      "accuracy": accuracy})
    return {"ece": float(ece), "bins": bins, "label": "argmax", "n": int(len(probs)),
            "mean_confidence": float(confidence.mean()), "accuracy": float(correct.mean()), "reliability": table}


def _group(y_true: np.ndarray, y_pred: np.ndarray) -> dict | None:
    if not len(y_true):
        return None
    found = scalar_metrics(y_true, y_pred)
    return {"n": int(len(y_true)), "accuracy": found["accuracy"], "qwk": found["qwk"],
            "mean_gold": float(y_true.mean()), "mean_predicted": float(y_pred.mean()),
            "mean_error": float((y_pred - y_true).mean())}


def by_answer_length(lengths, y_true, y_pred, groups: int = LENGTH_GROUPS) -> dict:
    """Rows in ``groups`` equal-count groups by answer length (shortest first), each with :func:`_group`'s numbers."""
    lengths, y_true, y_pred = (np.asarray(list(v)) for v in (lengths, y_true, y_pred))
    quartiles = []
    for number, rows in enumerate(np.array_split(np.argsort(lengths, kind="stable"), groups), start=1):
        if len(rows):
            quartiles.append({"quartile": number, "min_chars": int(lengths[rows].min()),
                              "max_chars": int(lengths[rows].max()), **_group(y_true[rows], y_pred[rows])})
    gap = quartiles[-1]["mean_error"] - quartiles[0]["mean_error"] if len(quartiles) > 1 else None
    return {"unit": "characters of the answer section", "groups": quartiles, "mean_error_gap": gap}


def by_reference(has_reference, y_true, y_pred) -> dict:
    """:func:`_group`'s numbers for rows with a reference answer (``present``) and without (``absent``)."""
    has, y_true, y_pred = (np.asarray(list(v)) for v in (has_reference, y_true, y_pred))
    has = has.astype(bool)
    present, absent = _group(y_true[has], y_pred[has]), _group(y_true[~has], y_pred[~has])
    gap = None if present is None or absent is None else present["accuracy"] - absent["accuracy"]
    return {"present": present, "absent": absent, "accuracy_gap": gap}


def score_distribution(y_true, y_pred) -> dict:
    """Gold and predicted counts per score (every label, zeros included) and the predicted excess on 1-2."""
    y_true, y_pred = np.asarray(list(y_true)), np.asarray(list(y_pred))
    gold = {str(label): int((y_true == label).sum()) for label in LABELS}
    predicted = {str(label): int((y_pred == label).sum()) for label in LABELS}
    middle = lambda counts: (counts["1"] + counts["2"]) / max(sum(counts.values()), 1)  # noqa: E731
    return {"labels": list(LABELS), "gold": gold, "predicted": predicted,
            "mid_scale_excess": float(middle(predicted) - middle(gold))}


def per_criterion(criteria, y_true, y_pred) -> list[dict]:
    """Rows, accuracy, QWK and Spearman per criterion, worst first: lowest accuracy, then lowest QWK (undefined
    QWK after defined ones), then more rows."""
    criteria, y_true, y_pred = (np.asarray(list(v)) for v in (criteria, y_true, y_pred))
    out = []
    for criterion in sorted(set(criteria.tolist())):
        rows = criteria == criterion
        found = scalar_metrics(y_true[rows], y_pred[rows])
        out.append({"criterion": criterion, "n": int(rows.sum()), "accuracy": found["accuracy"], "qwk": found["qwk"],
                    "spearman": found["spearman"]})
    out.sort(key=lambda r: (r["accuracy"], r["qwk"] is None, r["qwk"] or 0.0, -r["n"]))
    return out


def _excerpt(text: str, limit: int = EXCERPT_CHARS) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def confident_errors(ids, sections, probs, y_true, y_pred, top: int = CONFIDENT_ERRORS) -> list[dict]:
    """The ``top`` rows whose decided score is wrong, most confident first: id, gold, predicted, P(predicted),
    P(gold), criterion and answer excerpts (the prompt's start when its layout was not recognised)."""
    probs = np.asarray(probs, dtype=np.float64)
    y_true, y_pred = np.asarray([int(v) for v in y_true]), np.asarray([int(v) for v in y_pred])
    column = {label: i for i, label in enumerate(labels_of(probs))}
    p_pred = np.array([probs[i, column[int(s)]] for i, s in enumerate(y_pred)])
    wrong = np.flatnonzero(y_pred != y_true)
    wrong = wrong[np.argsort(-p_pred[wrong], kind="stable")][:top]
    return [{"id": str(ids[i]), "gold": int(y_true[i]), "predicted": int(y_pred[i]), "p": float(p_pred[i]),
             "p_gold": float(probs[i, column[int(y_true[i])]]),
             "criterion": _excerpt(sections[i].criterion, 120) if sections[i].parsed else UNPARSED_CRITERION,
             "answer": _excerpt(sections[i].answer if sections[i].parsed else sections[i].task)} for i in wrong]


def judge_checks(prompts: Sequence[str], probs, y_true, y_pred, ids: Sequence[str] | None = None) -> dict:
    """Every block of the module docstring for one set of scored rows (``y_pred``: the decided scores)."""
    sections = [parse_prompt(p) for p in prompts]
    y_true, y_pred = np.asarray([int(v) for v in y_true]), np.asarray([int(v) for v in y_pred])
    if not (len(sections) == len(y_true) == len(y_pred) == len(probs)):
        raise ValueError(f"{len(sections)} prompts, {len(probs)} probability rows, {len(y_true)} gold, "
                         f"{len(y_pred)} predicted")
    parsed = np.array([s.parsed for s in sections])
    lengths = [len(s.answer) for s in sections]
    has_reference = [bool(s.reference and s.reference.strip()) for s in sections]
    criteria = [s.criterion if s.parsed else UNPARSED_CRITERION for s in sections]
    checks = {
        "calibration": calibration(probs, y_true),
        "by_answer_length": None,
        "by_reference": None,
        "score_distribution": score_distribution(y_true, y_pred),
        "per_criterion": per_criterion(criteria, y_true, y_pred),
        "confident_errors": confident_errors(ids if ids is not None else [str(i) for i in range(len(y_true))],
                                             sections, probs, y_true, y_pred),
        "unparsed_rows": int((~parsed).sum()),
    }
    if parsed.any():
        keep = np.flatnonzero(parsed)
        checks["by_answer_length"] = by_answer_length(np.asarray(lengths)[keep], y_true[keep], y_pred[keep])
        checks["by_reference"] = by_reference(np.asarray(has_reference)[keep], y_true[keep], y_pred[keep])
    return checks


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_reliability_diagram(report: dict, out) -> None:
    """Accuracy per confidence bin against the diagonal, rows per bin on the bars; ``out`` a path or a binary file."""
    plt = _pyplot()
    block = report["calibration"]
    width = 1.0 / block["bins"]
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfect calibration")
    for b in block["reliability"]:
        ax.bar(b["low"], b["accuracy"], width=width, align="edge", color="tab:blue", edgecolor="white", alpha=0.8)
        ax.plot(b["low"] + width / 2, b["confidence"], marker="o", color="tab:orange")
        ax.text(b["low"] + width / 2, min(b["accuracy"] + 0.02, 0.95), str(b["n"]), ha="center", fontsize=7)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence (top-label P)")
    ax.set_ylabel("accuracy (bars); mean confidence (dots)")
    ax.set_title(f"ECE {block['ece']:.3f} ({block['bins']} bins, n={block['n']})")
    ax.legend(loc="upper left", fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=100, format="png")
    plt.close(fig)


def plot_score_distribution(report: dict, out) -> None:
    """Gold vs predicted count per score, side by side; ``out`` a path or a binary file."""
    plt = _pyplot()
    block = report["score_distribution"]
    labels = [str(label) for label in block["labels"]]
    x = np.arange(len(labels))
    fig, ax = plt.subplots(figsize=(4.5, 3.2))
    ax.bar(x - 0.2, [block["gold"][k] for k in labels], width=0.4, label="gold")
    ax.bar(x + 0.2, [block["predicted"][k] for k in labels], width=0.4, label="predicted")
    ax.set_xticks(x, labels)
    ax.set_xlabel("score")
    ax.set_ylabel("rows")
    ax.set_title(f"mid-scale excess (share of 1-2) {block['mid_scale_excess']:+.3f}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=100, format="png")
    plt.close(fig)
