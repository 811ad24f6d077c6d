"""The fallback score when a row cannot be scored in time (or at all): a class prior, never a crash.

Order of preference: the chosen model's validation-report prior for the row's criterion, its overall prior, then
the middle of the row's rubric. The prior is restricted to the labels the rubric allows.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from submission.scoring.decoding import LABELS, LABELS_0_4, allowed_mask


class ClassPrior:
    """Label probabilities per criterion with an overall default, from a report's ``class_prior`` (may be None)."""

    def __init__(self, class_prior: Mapping | None):
        """ValueError (one line) when ``class_prior`` is not shaped like a report's: {overall: {label: p},
        by_criterion: {criterion: {label: p}}} with finite non-negative numbers."""
        class_prior = class_prior or {}
        if not isinstance(class_prior, Mapping):
            raise ValueError(f"class_prior must be an object {{overall, by_criterion}}, got {class_prior!r:.80}")
        by_criterion = class_prior.get("by_criterion") or {}
        if not isinstance(by_criterion, Mapping):
            raise ValueError(f"class_prior.by_criterion must be an object, got {by_criterion!r:.80}")
        self.overall = _vector(class_prior.get("overall"))
        self.by_criterion = {str(k): _vector(v) for k, v in by_criterion.items()}
        self.by_criterion = {k: v for k, v in self.by_criterion.items() if v is not None}
        self.source = "report" if self.overall is not None or self.by_criterion else "rubric_middle"

    def probabilities(self, criterion: str | None, allowed: Iterable[int], labels: Sequence[int] = LABELS) -> np.ndarray:
        """[5] probabilities over ``labels`` (LABELS; a 0-4 judge's six), zero outside the rubric; uniform-middle when
        nothing is known."""
        mask = allowed_mask(allowed, labels)
        vector = self.by_criterion.get(criterion or "") if criterion else None
        for candidate in (vector, self.overall):
            candidate = None if candidate is None else candidate[: len(labels)]  # LABELS is LABELS_0_4 less the 4
            if candidate is not None and (candidate * mask).sum() > 0:
                masked = candidate * mask
                return masked / masked.sum()
        return _middle(mask, labels)

    def score(self, criterion: str | None, allowed: Iterable[int], labels: Sequence[int] = LABELS) -> int:
        """The most likely allowed label under the prior (the rubric's middle when no prior is known)."""
        return labels[int(np.argmax(self.probabilities(criterion, allowed, labels)))]


def _vector(distribution: Mapping | None) -> np.ndarray | None:
    if not distribution:
        return None
    if not isinstance(distribution, Mapping):
        raise ValueError(f"class_prior: a distribution must be an object {{label: probability}}, got {distribution!r:.80}")
    values = [distribution.get(str(label), 0.0) for label in LABELS_0_4]  # "4": a 0-4 judge's report
    if any(isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v) or v < 0 for v in values):
        raise ValueError(f"class_prior: probabilities must be finite numbers >= 0, got {dict(distribution)!r:.80}")
    vector = np.array(values, dtype=np.float64)
    return vector if vector.sum() > 0 else None


def _middle(mask: np.ndarray, labels: Sequence[int] = LABELS) -> np.ndarray:
    """All mass on the middle ordinal label the rubric allows (0..3 -> 1, 0..2 -> 1, 0..1 -> 0, 0..4 -> 2)."""
    ordinal = [i for i, label in enumerate(labels) if mask[i] and label >= 0] or [i for i in range(len(labels)) if mask[i]]
    out = np.zeros(len(labels))
    out[ordinal[(len(ordinal) - 1) // 2]] = 1.0
    return out
