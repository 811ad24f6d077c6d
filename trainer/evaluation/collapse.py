"""Did the judge learn? A collapse verdict on validation predictions, shown everywhere a user looks.

A judge that puts (almost) every row in one class, whose QWK is ~0, or that is no better than always answering the
majority class has learnt nothing usable, even when training exited 0. The verdict goes into the validation report
(``collapsed`` + ``collapse_reasons``), the terminal and HTML reports, the last line of ``trainer train``, and
autopick/ensembles skip such a model whenever another candidate did not collapse (submission/choice/autopick.py).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

ONE_CLASS_SHARE = 0.90  # >= this share of predictions in one class
MIN_QWK = 0.05  # QWK at or below this


def collapse_reasons(y_true: Sequence[int], y_pred: Sequence[int], qwk: float | None = None,
                     accuracy: float | None = None) -> list[str]:
    """Why these predictions count as collapsed ([] = they do not). ``qwk``/``accuracy``: computed when None."""
    y_true, y_pred = [int(v) for v in y_true], [int(v) for v in y_pred]
    if not y_pred:
        return []
    reasons = []
    label, count = Counter(y_pred).most_common(1)[0]
    share = count / len(y_pred)
    if share >= ONE_CLASS_SHARE:
        reasons.append(f"{share:.0%} of validation predictions are {label}")
    if qwk is None or accuracy is None:
        # computed here, not through metrics.py (which prints this verdict: one-way imports)
        from sklearn.metrics import cohen_kappa_score

        values = set(y_true) | set(y_pred)
        if qwk is None and len(values) >= 2:
            qwk = float(cohen_kappa_score(y_true, y_pred, weights="quadratic",
                                          labels=list(range(min(values), max(values) + 1))))
        if accuracy is None:
            accuracy = sum(t == p for t, p in zip(y_true, y_pred, strict=True)) / len(y_pred)
    if qwk is None or qwk != qwk or qwk <= MIN_QWK:
        reasons.append(f"QWK {qwk if qwk is None else round(qwk, 3)} <= {MIN_QWK}")
    majority = Counter(y_true).most_common(1)[0][1] / len(y_true) if y_true else 0.0
    if accuracy is not None and accuracy <= majority + 1e-12:
        reasons.append(f"accuracy {accuracy:.3f} not above the majority-class rate {majority:.3f}")
    return reasons


def collapse_fields(y_true, y_pred, qwk=None, accuracy=None) -> dict:
    """The report fields: ``collapsed`` (bool), ``collapse_reasons`` (list of one-line strings)."""
    reasons = collapse_reasons(y_true, y_pred, qwk, accuracy)
    return {"collapsed": bool(reasons), "collapse_reasons": reasons}


def collapse_line(report: dict) -> str | None:
    """One warning line for a collapsed report (None when it did not collapse or says nothing)."""
    if not report.get("collapsed"):
        return None
    reasons = "; ".join(report.get("collapse_reasons") or []) or "no reason recorded"
    return f"COLLAPSED: this judge did not learn ({reasons}); it is no better than a constant answer"
