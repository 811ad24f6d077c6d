"""Score decoding: label probabilities from one next-token distribution, decisions, and a free-text fallback.

Qwen tokenizers write each digit as its own token, so the first generated token decides the score: '0'..'3', or
'-' which stands for -1 (whose text is '-' then '1'). Probabilities are renormalised over the labels the prompt's
rubric allows, so a 0..2 scale can never yield 3 and a scale without a -1 line can never yield -1.

Every array of class probabilities here has one column per label in :data:`LABELS` order; a 0-4 judge's
(judge.json ``"max_score": 4``) one per label of :data:`LABELS_0_4`: the functions take that ``labels`` tuple.
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from submission.prompts.sections import LABELS, LABELS_0_4  # noqa: F401 - importable from here

LABEL_TOKENS: dict[int, str] = {-1: "-", 0: "0", 1: "1", 2: "2", 3: "3", 4: "4"}
_IMPOSSIBLE_LOGPROB = -1e4  # stands in for -inf: exp() is 0 next to any real logprob, yet never NaN on its own


def labels_of(probs) -> tuple[int, ...]:
    """The label set an array of probabilities is over, by its width: 6 columns a 0-4 judge's, else LABELS."""
    shape = np.shape(probs)
    return LABELS_0_4 if len(shape) == 2 and shape[1] == len(LABELS_0_4) else LABELS


def label_token_ids(tokenizer, labels: Sequence[int] = LABELS) -> list[int]:
    """Token id of each label's first token, in ``labels`` order; raises if any is not a single distinct token."""
    ids = []
    for label in labels:
        text = LABEL_TOKENS[label]
        encoded = tokenizer(text, add_special_tokens=False)["input_ids"]
        if len(encoded) != 1:
            raise ValueError(f"label {label}: {text!r} is {len(encoded)} tokens for this tokenizer, expected exactly 1")
        ids.append(int(encoded[0]))
    if len(set(ids)) != len(ids):
        raise ValueError(f"label tokens are not distinct: {dict(zip(labels, ids, strict=True))}")
    return ids


def allowed_mask(allowed: Iterable[int], labels: Sequence[int] = LABELS) -> np.ndarray:
    """Boolean row over ``labels``: True where the rubric allows the label (all True when it names none)."""
    allowed = set(allowed)
    mask = np.array([label in allowed for label in labels])
    return mask if mask.any() else np.ones(len(labels), dtype=bool)


def _masked_softmax(label_logits: np.ndarray, masks: np.ndarray) -> np.ndarray:
    logits = np.where(masks, label_logits, -np.inf)
    logits = logits - logits.max(axis=1, keepdims=True)
    weights = np.exp(logits)
    return weights / weights.sum(axis=1, keepdims=True)


def _masks(allowed: Sequence[Iterable[int]], labels: Sequence[int] = LABELS) -> np.ndarray:
    return np.stack([allowed_mask(a, labels) for a in allowed]) if len(allowed) else np.ones((0, len(labels)), bool)


def finite_rows(label_logits, allowed: Sequence[Iterable[int]], labels: Sequence[int] = LABELS) -> np.ndarray:
    """[N] bool: the row's logits of its allowed labels are all finite (NaN/inf come from a broken model, e.g. an
    fp16 overflow, and must never become a score)."""
    logits = np.asarray(label_logits, dtype=np.float64).reshape(-1, len(labels))
    return (np.isfinite(logits) | ~_masks(allowed, labels)).all(axis=1)


def probabilities_from_label_logits(label_logits, allowed: Sequence[Iterable[int]],
                                    labels: Sequence[int] = LABELS) -> np.ndarray:
    """[N, 5] logits of the label tokens (LABELS order) -> [N, 5] probabilities renormalised over allowed labels.

    A row with a NaN or infinite logit on an allowed label (:func:`finite_rows`) comes back as zeros, never as a
    distribution; callers treat it as unscored.
    """
    logits = np.asarray(label_logits, dtype=np.float64).reshape(-1, len(labels))
    good = finite_rows(logits, allowed, labels)
    probs = np.zeros_like(logits)
    if good.any():
        probs[good] = _masked_softmax(np.where(np.isfinite(logits[good]), logits[good], 0.0),
                                      _masks(allowed, labels)[good])
    return probs


def _logprob_value(value) -> float:
    # vLLM gives {token_id: Logprob(logprob=..., rank=..., decoded_token=...)}; plain floats are accepted too.
    return float(getattr(value, "logprob", value))


def label_logprobs(
    top_logprobs: Sequence[Mapping[int, object]], label_ids: Sequence[int], floor_margin: float = 1.0
) -> np.ndarray:
    """Top-k logprob dicts (one per prompt) -> [N, 5] label logprobs (LABELS order).

    A label missing from the top-k has a logprob below the smallest one shown; it gets that value minus
    ``floor_margin`` (so it is never impossible, never favoured). They act as label logits:
    :func:`probabilities_from_label_logits` renormalises them over the allowed labels (uniform over them when no
    allowed label is in the top-k).
    """
    rows = []
    for entry in top_logprobs:
        values = {int(k): _logprob_value(v) for k, v in (entry or {}).items()}
        finite = [v for v in values.values() if math.isfinite(v)]
        floor = (min(finite) if finite else 0.0) - floor_margin
        rows.append([values.get(t, floor) if math.isfinite(values.get(t, floor)) else floor for t in label_ids])
    return np.array(rows, dtype=np.float64).reshape(-1, len(label_ids))


def exact_label_logprobs(entries: Sequence[Mapping[int, object]], label_ids: Sequence[int]) -> np.ndarray:
    """Logprob dicts that hold every label id (vLLM ``logprob_token_ids``) -> [N, 5] label logprobs, LABELS order.

    No guessing: a label id missing from an entry raises ValueError (the engine did not honour the request). A
    logprob of -inf (a masked token) becomes a finite value far below any real one so that a row whose allowed
    labels are all -inf comes out uniform instead of NaN.
    """
    rows = []
    for entry in entries:
        values = {int(k): _logprob_value(v) for k, v in (entry or {}).items()}
        missing = [t for t in label_ids if t not in values]
        if missing:
            raise ValueError(f"no logprob returned for label token id(s) {missing}")
        rows.append([values[t] if math.isfinite(values[t]) else _IMPOSSIBLE_LOGPROB for t in label_ids])
    return np.array(rows, dtype=np.float64).reshape(-1, len(label_ids))


def ordinal_values(width: int) -> list[float]:
    """Each label's ordinal value, one per probability column: 0 for -1 (it is "not applicable", not "below 0"; the
    expected score masks it out), then 0, 1, 2, ... (width 5: -1..3; a 0-4 judge's 6: -1..4)."""
    return [0.0, *map(float, range(width - 1))]


def expected_score(probs: np.ndarray) -> np.ndarray:
    """Expected score over 0..3 (0..4 for a 0-4 judge's six columns) with the -1 mass left out (renormalised);
    NaN-free."""
    probs = np.asarray(probs, dtype=np.float64)
    ordinal = probs[:, 1:]
    total = ordinal.sum(axis=1)
    safe = np.where(total > 0, total, 1.0)
    return (ordinal * ordinal_values(probs.shape[1])[1:]).sum(axis=1) / safe


@dataclass(frozen=True)
class Decision:
    """How probabilities become scores: ``argmax``, or ``thresholds`` on the expected score, plus an optional P(-1) cut.

    With thresholds ``[t1, t2, t3]`` the expected score e maps to 0 below t1, 1 below t2, 2 below t3, else 3.
    Without ``minus_one_threshold`` -1 wins when its probability is the largest. With it, a row whose rubric allows
    -1 gets -1 exactly when P(-1) >= the threshold, and every other row its best 0..3 score by the rule. The result is
    then moved to the nearest label the rubric allows.
    """

    rule: str = "argmax"
    thresholds: tuple[float, ...] = field(default_factory=tuple)
    minus_one_threshold: float | None = None

    def to_dict(self) -> dict:
        out = {"rule": self.rule, "thresholds": [float(t) for t in self.thresholds]}
        if self.minus_one_threshold is not None:  # absent from a report: argmax decides -1 too
            out["minus_one_threshold"] = float(self.minus_one_threshold)
        return out

    @classmethod
    def from_dict(cls, data: Mapping | None) -> Decision:
        """A report's or ensemble.json's ``decision``; ValueError (one line) on anything malformed."""
        if data is None or (isinstance(data, Mapping) and not data):
            return cls()
        if not isinstance(data, Mapping):
            raise ValueError(f"decision must be an object such as {{\"rule\": \"argmax\"}}, got {data!r}")
        rule = data.get("rule", "argmax")
        if rule not in ("argmax", "thresholds"):
            raise ValueError(f"unknown decision rule {rule!r}; expected argmax or thresholds")
        try:
            thresholds = tuple(_finite(t) for t in (data.get("thresholds") or ()))
            minus_one = data.get("minus_one_threshold")
            minus_one = None if minus_one is None else _finite(minus_one)
        except (TypeError, ValueError):
            raise ValueError(f"decision {dict(data)!r}: thresholds must be numbers") from None
        if rule == "thresholds" and (len(thresholds) != 3 or list(thresholds) != sorted(thresholds)):
            raise ValueError(f"thresholds must be 3 increasing numbers, got {thresholds}")
        if minus_one is not None and not 0.0 <= minus_one <= 1.0:
            raise ValueError(f"minus_one_threshold must be a probability in 0..1, got {minus_one}")
        return cls(rule, thresholds, minus_one)


def _finite(value) -> float:
    """A JSON number as float; ValueError for text, booleans, NaN and infinities."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"{value!r} is not a finite number")
    return float(value)


def decide(probs: np.ndarray, allowed: Sequence[Iterable[int]], decision: Decision = Decision(),
           labels: Sequence[int] | None = None) -> list[int]:
    """Probabilities [N, len(labels)] -> one allowed int score per row (4 only where a row allows it: a 0-4 judge's
    rows whose rubric states 4; the thresholds rule maps to 0..3, so only argmax gives 4). ``labels`` None: by the
    array's width (:func:`labels_of`)."""
    probs = np.asarray(probs, dtype=np.float64)
    labels = labels_of(probs) if labels is None else labels
    if decision.minus_one_threshold is None:
        minus = probs.argmax(axis=1) == 0
    else:
        minus = _masks(allowed, labels)[:, 0] & (probs[:, 0] >= decision.minus_one_threshold)
    if decision.rule == "argmax":
        ordinal = [labels[1 + i] for i in probs[:, 1:].argmax(axis=1)]
    else:
        ordinal = np.searchsorted(np.asarray(decision.thresholds), expected_score(probs), side="right").tolist()
    raw = [-1 if m else int(s) for m, s in zip(minus, ordinal, strict=True)]
    return [_nearest_allowed(s, a, labels) for s, a in zip(raw, allowed, strict=True)]


def _nearest_allowed(score: int, allowed: Iterable[int], labels: Sequence[int] = LABELS) -> int:
    allowed = sorted(set(allowed)) or list(labels)
    if score in allowed:
        return int(score)
    ordinal = [a for a in allowed if a >= 0] or allowed
    return int(min(ordinal, key=lambda a: (abs(a - score), a)))


def fit_thresholds(
    probs: np.ndarray,
    y_true: Sequence[int],
    allowed: Sequence[Iterable[int]],
    objective: Callable[[Sequence[int], Sequence[int]], float],
    grid: Sequence[float] | None = None,
    rounds: int = 3,
) -> tuple[Decision, float]:
    """Coordinate search for thresholds maximising ``objective(y_true, y_pred)``; argmax wins unless beaten.

    Returns the best decision and its objective value. Use on validation data only.
    """
    grid = np.asarray(grid if grid is not None else np.linspace(0.0, 3.0, 61))
    best = Decision()
    best_value = objective(y_true, decide(probs, allowed, best))
    thresholds = [0.5, 1.5, 2.5]
    current = objective(y_true, decide(probs, allowed, Decision("thresholds", tuple(thresholds))))
    for _ in range(rounds):
        for i in range(3):
            low = thresholds[i - 1] if i else -np.inf
            high = thresholds[i + 1] if i < 2 else np.inf
            for value in grid[(grid > low) & (grid < high)]:
                trial = thresholds.copy()
                trial[i] = float(value)
                score = objective(y_true, decide(probs, allowed, Decision("thresholds", tuple(trial))))
                if score > current:
                    current, thresholds = score, trial
    if current > best_value:
        return Decision("thresholds", tuple(thresholds)), float(current)
    return best, float(best_value)


def fit_minus_one_threshold(
    probs: np.ndarray,
    y_true: Sequence[int],
    allowed: Sequence[Iterable[int]],
    objective: Callable[[Sequence[int], Sequence[int]], float],
    decision: Decision = Decision(),
) -> tuple[Decision, float]:
    """``decision`` with the P(-1) cut that maximises ``objective(y_true, y_pred)`` over all rows, or unchanged.

    The rows must hold gold -1 examples (on the contest's data: validation rows made by the not-applicable
    augmentation, never test rows) beside ordinary ones, so a cut pays for the -1 rows it finds with the ordinary
    rows it turns into -1. Candidate cuts lie between the P(-1) values of rows whose rubric allows -1. The current
    rule for -1 (argmax, or ``decision``'s own cut) wins unless a cut beats it; among equally good cuts the middle
    one is taken. Returns (decision, objective value).
    """
    probs = np.asarray(probs, dtype=np.float64)
    y_true = [int(y) for y in y_true]
    current = objective(y_true, decide(probs, allowed, decision))
    values = np.unique(probs[_masks(allowed)[:, 0], 0])
    cuts = (values[:-1] + values[1:]) / 2.0
    if -1 not in y_true or not len(cuts):
        return decision, float(current)
    scores = np.array([objective(y_true, decide(probs, allowed, Decision(decision.rule, decision.thresholds, c)))
                       for c in cuts])
    if scores.max() <= current:
        return decision, float(current)
    best = np.flatnonzero(scores == scores.max())
    cut = float(cuts[best[len(best) // 2]])
    return Decision(decision.rule, decision.thresholds, cut), float(scores.max())


def probabilities_from_texts(texts: Sequence[Sequence[str]], allowed: Sequence[Iterable[int]],
                             labels: Sequence[int] = LABELS) -> np.ndarray:
    """Sampled free-text verdicts (several per row) -> [N, 5] empirical score distribution over the allowed labels.

    A sample with no allowed score (:func:`extract_score_from_text`) is left out; a row where every sample is left
    out comes back as zeros, so the caller can tell it apart.
    """
    out = np.zeros((len(texts), len(labels)))
    for i, (row, rubric) in enumerate(zip(texts, allowed, strict=True)):
        rubric = tuple(rubric)
        for text in row:
            score = extract_score_from_text(text, rubric)
            if score is not None:
                out[i, list(labels).index(score)] += 1.0
        total = out[i].sum()
        if total:
            out[i] /= total
    return out


_RESULT_RE = [
    re.compile(r"\[RESULT\]\s*(-?\d+)", re.IGNORECASE),
    re.compile(r"(?:оценка|балл|score|итог)\w*\s*[:=\-–—]?\s*(-?\d+)", re.IGNORECASE),
    re.compile(r"^\s*(-?\d+)\b"),
    re.compile(r"(?<![\d.])(-?\d)(?![\d.])"),
]


def extract_score_from_text(text: str, allowed: Iterable[int] = LABELS) -> int | None:
    """The score a free-text judge wrote: ``[RESULT] n``, ``Оценка: n``, a leading number, else the first digit.

    Returns None when no allowed score is found (the caller falls back to a prior).
    """
    if not isinstance(text, str):
        return None
    allowed = set(allowed)
    for pattern in _RESULT_RE:
        for match in pattern.finditer(text):
            value = int(match.group(1))
            if value in allowed:
                return value
    return None
