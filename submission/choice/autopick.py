"""Which model(s) to run: candidate model folders ranked by their validation reports, and ensemble.json.

A model folder is a ``config.json`` with ``*.safetensors`` (+ tokenizer); its ``validation_report.json`` gives the
score used for ranking. Folders without a report rank last; ties go to the newer report (then the newer folder).
"""

from __future__ import annotations

import json
import logging
import math
import numbers
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from submission.choice.metrics import higher_is_better, metric_value

log = logging.getLogger(__name__)

VALIDATION_REPORT_NAME = "validation_report.json"  # a model's validation metrics and its decision rule
MERGED_DIR = "merged"  # a training run's model folder (runs/<name>/merged); trainer/training/rundir.py reuses both names
ENSEMBLE_NAME = "ensemble.json"
JUDGE_NAME = "judge.json"
MODES = ("score", "generate")
_NO_JUDGE = object()  # Candidate._judge of a folder without judge.json (a judge.json may hold null)


@dataclass
class Candidate:
    """One model folder with what its report says about it."""

    path: Path
    report: dict = field(default_factory=dict)
    value: float | None = None
    created: str = ""

    @property
    def mode(self) -> str:
        """``score`` (one forward, label logits) or ``generate`` (free-text judge, score extracted from text).

        ValueError (one line) for a judge.json that is not JSON or names another mode (:func:`artefact_problem`).
        """
        judge, data = self.path / JUDGE_NAME, self._judge
        if data is not _NO_JUDGE:
            mode = data.get("mode", "score") if isinstance(data, dict) else None
            if mode not in MODES:
                raise ValueError(f"{judge}: mode {mode!r} is not one of {', '.join(MODES)}")
            return mode
        mode = self.report.get("mode", "score")
        if mode not in MODES:
            raise ValueError(f"{self.path / VALIDATION_REPORT_NAME}: mode {mode!r} is not one of {', '.join(MODES)}")
        return mode

    @property
    def labels(self) -> tuple[int, ...]:
        """The judge's label set: -1..3 (LABELS), or -1..4 when its judge.json declares ``"max_score": 4`` (a judge
        trained on POLLUX's 0-4 criteria, ``trainer import-pollux --keep-0-4``). ValueError (one line) for another
        value (:func:`artefact_problem`)."""
        from submission.prompts.sections import labels_for

        judge, data = self.path / JUDGE_NAME, self._judge
        max_score = data.get("max_score", 3) if isinstance(data, dict) else 3
        if isinstance(max_score, bool) or not isinstance(max_score, int):
            raise ValueError(f"{judge}: max_score {max_score!r} is not 3 or 4")
        try:
            return labels_for(max_score)
        except ValueError as error:
            raise ValueError(f"{judge}: {error}") from None

    @cached_property
    def _judge(self):
        """The folder's judge.json as read (:data:`_NO_JUDGE` without one), read once: ``mode`` and ``labels`` are
        asked per chunk while scoring. A file that is not JSON raises ValueError on every ask (nothing is cached)."""
        judge = self.path / JUDGE_NAME
        return _read_json(judge) if judge.is_file() else _NO_JUDGE


@dataclass
class Member:
    """An ensemble member: a model folder and its weight."""

    path: Path
    weight: float


@dataclass
class Ensemble:
    """Members with weights and the decision rule for their averaged probabilities: from ensemble.json (``path``)
    or formed from candidates whose reports are about equally good (``path`` None, equal weights)."""

    path: Path | None
    members: list[Member]
    decision: dict | None
    metric: str | None = None
    value: float | None = None
    reason: str = ""


def read_report(model_dir: Path) -> dict:
    """The folder's validation report, or {} when absent or unreadable (a warning, never a crash)."""
    path = Path(model_dir) / VALIDATION_REPORT_NAME
    if not path.is_file():
        return {}
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        log.warning("%s: unreadable report (%s); ranking it last", path, error)
        return {}
    return report if isinstance(report, dict) else {}


def _read_json(path: Path):
    """The file's JSON value; ValueError (one line) when it cannot be read or is not JSON."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: unreadable ({error})") from None
    except ValueError as error:
        raise ValueError(f"{path}: not JSON ({error})") from None


def model_dir_problem(path: Path) -> str | None:
    """Why ``path`` cannot be loaded as a model folder (missing, a file, no config.json, no safetensors), or None."""
    path = Path(path)
    if not path.exists():
        return f"{path}: no such folder"
    if not path.is_dir():
        return f"{path}: is a file, not a model folder (config.json + *.safetensors + tokenizer)"
    if not (path / "config.json").is_file():
        return f"{path}: not a model folder (no config.json)"
    if not any(path.glob("*.safetensors")):
        return f"{path}: no *.safetensors weights (pickled weights are not loaded)"
    return None


def artefact_problem(path: Path, metric: str) -> str | None:
    """What is malformed in the folder's JSON artefacts, or None: a validation_report.json that is not a JSON
    object, its ``decision``, ``class_prior``, ``mode`` or ``metric`` value; a judge.json that is not JSON or names
    an unknown mode. The runtime skips such a model with this reason (it would fail after scoring otherwise)."""
    from submission.scoring.decoding import Decision
    from submission.scoring.priors import ClassPrior

    path = Path(path)
    report_path = path / VALIDATION_REPORT_NAME
    try:
        report = _read_json(report_path) if report_path.is_file() else {}
        if not isinstance(report, dict):
            raise ValueError(f"{report_path}: not a JSON object")
        candidate = Candidate(path, report)
        candidate.mode  # noqa: B018 - raises for a bad judge.json or report mode
        candidate.labels  # noqa: B018 - raises for a judge.json max_score other than 3 or 4
        for read in (lambda: Decision.from_dict(report.get("decision")),
                     lambda: ClassPrior(report.get("class_prior")), lambda: metric_value(report, metric)):
            try:
                read()
            except KeyError:
                pass  # no such metric: ranks last, as documented
            except (TypeError, ValueError) as error:
                raise ValueError(f"{report_path}: {error}") from None
    except ValueError as error:
        return str(error)
    return None


def is_model_dir(path: Path) -> bool:
    return (path / "config.json").is_file() and any(path.glob("*.safetensors"))


def candidate_model_dirs(roots: list[Path]) -> list[Path]:
    """Model folders found at each root: the root itself, ``root/*`` and ``root/*/merged``; de-duplicated, in order.

    Hidden folders below a root are not candidates: ``.NAME.next`` is a training in progress or left by a failure
    (trainer/training/rundir.py), whose half-written report must not win the pick."""
    found: list[Path] = []
    seen: set[Path] = set()
    for root in roots:
        root = Path(root)
        if not root.is_dir():
            continue
        subdirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        options = [root, *subdirs, *(p / MERGED_DIR for p in subdirs if (p / MERGED_DIR).is_dir())]
        for path in options:
            resolved = path.resolve()
            if resolved not in seen and is_model_dir(path):
                seen.add(resolved)
                found.append(path)
    return found


def is_collapsed(report: dict) -> bool:
    """True when a validation report says the judge learnt nothing (``"collapsed": true``)."""
    return isinstance(report, dict) and report.get("collapsed") is True


def collapse_note(candidate: Candidate) -> str:
    """"name (collapsed: reasons)" for the runtime's log."""
    reasons = candidate.report.get("collapse_reasons") or []
    return f"{display_name(candidate.path)} (collapsed: {'; '.join(map(str, reasons)) or 'no reason recorded'})"


def rank_order(reports: list[dict], metric: str, report_mtimes: list[float] | None = None) -> list[int]:
    """Indices of ``reports`` best first: THE "best model" rule (runtime, build/bundle.py and `trainer report`).

    A report that says the judge collapsed (``"collapsed": true``, trainer/evaluation/collapse.py: one class, QWK ~0 or no
    better than the majority class) ranks after every other, whatever its metric. Then by ``metric`` in its
    direction (mae/rmse lower); a report without the metric, or with it undefined (None), ranks last; ties go to the
    newer report (``created``, then the file's mtime), then to input order. An unknown metric name raises
    :class:`submission.choice.metrics.UnknownMetric`.
    """
    higher = higher_is_better(metric)
    mtimes = report_mtimes or [0.0] * len(reports)

    def key(i: int):
        try:
            value = metric_value(reports[i], metric) if reports[i] else None
        except (KeyError, ValueError):  # absent or not a number: ranks last
            value = None
        signed = 0.0 if value is None else (value if higher else -value)
        return (not is_collapsed(reports[i]), value is not None, signed, str(reports[i].get("created", "")), mtimes[i])

    return sorted(range(len(reports)), key=lambda i: (key(i), -i), reverse=True)


def label_range(labels: tuple[int, ...]) -> str:
    return f"{labels[0]}..{labels[-1]}"


def one_label_set(ranked: list[Candidate], ensemble: Ensemble | None) -> tuple[tuple[int, ...], list[tuple[str, str]]]:
    """The run's label set, the best-ranked judge's (:attr:`Candidate.labels`), with ``ranked`` and the ensemble's
    members cut to the judges of that set in place; returns it and (path, reason) per judge left out, each logged
    (probabilities over -1..3 and over -1..4 are not blended, nor is one a fallback for the other)."""
    from submission.prompts.sections import LABELS

    if not ranked:
        return LABELS, []
    labels, kept, dropped = ranked[0].labels, [], []
    for candidate in ranked:
        if candidate.labels == labels:
            kept.append(candidate)
        else:
            dropped.append((str(candidate.path), f"scores {label_range(candidate.labels)} (judge.json max_score); "
                            f"the best-ranked judge scores {label_range(labels)}"))
            log.warning("skipping %s: %s", *dropped[-1])
    ranked[:] = kept
    if ensemble is not None:
        ensemble.members = [m for m in ensemble.members if Candidate(m.path).labels == labels]
    return labels, dropped


def log_collapsed(ranked: list[Candidate]) -> None:
    """One warning per candidate left out because its report says it collapsed (or for the pick, when all did)."""
    if ranked and is_collapsed(ranked[0].report):
        log.warning("every candidate's report says it collapsed; using %s", collapse_note(ranked[0]))
        return
    for candidate in ranked[1:]:
        if is_collapsed(candidate.report):
            log.warning("skipping %s", collapse_note(candidate))


def rank_candidates(dirs: list[Path], metric: str) -> list[Candidate]:
    """Model folders best first by their validation reports, through :func:`rank_order`."""
    reports = [read_report(path) for path in dirs]
    files = [Path(d) / VALIDATION_REPORT_NAME for d in dirs]
    mtimes = [file.stat().st_mtime if file.is_file() else 0.0 for file in files]
    ranked = []
    for i in rank_order(reports, metric, mtimes):
        try:
            value = metric_value(reports[i], metric) if reports[i] else None
        except (KeyError, ValueError):
            value = None
        ranked.append(Candidate(Path(dirs[i]), reports[i], value, str(reports[i].get("created", ""))))
    return ranked


def display_name(path: Path) -> str:
    """``runs/exp1/merged`` -> ``exp1``; ``models/a`` -> ``a``."""
    return path.parent.name if path.name == MERGED_DIR else path.name


def pick_reason(ranked: list[Candidate], metric: str) -> str:
    """One line saying why the first candidate won."""
    best = ranked[0]
    if best.value is None:
        return f"no candidate has {metric} in a {VALIDATION_REPORT_NAME}; took the first of {len(ranked)} found"
    others = ", ".join(f"{display_name(c.path)}={c.value:.4g}" if c.value is not None else f"{display_name(c.path)}=no report"
                       for c in ranked[1:])
    direction = "highest" if higher_is_better(metric) else "lowest"
    reason = f"{direction} {metric}: {display_name(best.path)}={best.value:.4g}" + (f" (vs {others})" if others else "")
    skipped = [collapse_note(c) for c in ranked[1:] if is_collapsed(c.report)]
    if is_collapsed(best.report):
        reason += f"; WARNING every candidate collapsed, {collapse_note(best)}"
    elif skipped:
        reason += f"; skipped {', '.join(skipped)}"
    return reason


def ensemble_path(roots: list[Path]) -> Path | None:
    """ensemble.json given directly, inside a root, or beside it (the bundle root holds models/ and ensemble.json)."""
    for root in roots:
        root = Path(root)
        for path in (root, root / ENSEMBLE_NAME, root.parent / ENSEMBLE_NAME):
            if path.is_file() and path.name.endswith(".json") and path.name != VALIDATION_REPORT_NAME:
                return path
    return None


def read_ensemble(path: Path) -> Ensemble:
    """Parse ensemble.json; member paths are relative to the file. ValueError (one line) on a malformed file: not
    JSON, no members, a member without a ``model`` path, a weight that is not a finite number, a bad ``decision``.
    A weight of 0 or below is kept here; the runtime leaves such a member out and says so."""
    from submission.scoring.decoding import Decision

    path = Path(path)
    data = _read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("members"), list) or not data["members"]:
        raise ValueError(f"{path}: expected {{\"members\": [{{\"model\": PATH, \"weight\": W}}, ...]}}")
    members = []
    for k, entry in enumerate(data["members"]):
        model = entry.get("model") if isinstance(entry, dict) else None
        if not isinstance(model, str) or not model.strip():
            raise ValueError(f"{path}: member {k + 1} has no \"model\" path")
        weight = entry.get("weight", 1.0)
        if isinstance(weight, bool) or not isinstance(weight, numbers.Real) or not math.isfinite(weight):
            raise ValueError(f"{path}: member {k + 1} ({model}): weight {weight!r} is not a finite number")
        members.append(Member((path.parent / model).resolve(), float(weight)))
    try:
        Decision.from_dict(data.get("decision"))
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None
    return Ensemble(path, members, data.get("decision"), data.get("metric"), data.get("value"),
                    f"{path} ({len(members)} members, stored weights)")


def auto_ensemble(ranked: list[Candidate], metric: str, tolerance: float, max_members: int) -> Ensemble | None:
    """Equal-weight ensemble of the scoring models whose ``metric`` is within ``tolerance`` of the best, or None.

    None unless at least two qualify; at most ``max_members`` (best first). The decision rule: the mean of the
    members' thresholds when every member has thresholds (the expected score of averaged probabilities is the
    average of the members' expected scores), else argmax; likewise the mean P(-1) threshold when every member has one.
    """
    scored = [c for c in ranked if c.value is not None and c.mode == "score"]
    if any(not is_collapsed(c.report) for c in scored):  # a collapsed judge only adds noise to the average
        scored = [c for c in scored if not is_collapsed(c.report)]
    if len(scored) < 2 or max_members < 2:
        return None
    best = scored[0].value
    close = [c for c in scored if abs(c.value - best) <= tolerance][:max_members]
    if len(close) < 2:
        return None
    decisions = [c.report.get("decision") or {} for c in close]
    if all(d.get("rule") == "thresholds" and len(d.get("thresholds", ())) == 3 for d in decisions):
        mean = [sum(float(d["thresholds"][k]) for d in decisions) / len(decisions) for k in range(3)]
        decision = {"rule": "thresholds", "thresholds": mean}
    else:
        decision = {"rule": "argmax", "thresholds": []}
    cuts = [d.get("minus_one_threshold") for d in decisions]
    if all(c is not None for c in cuts):  # P(-1) of averaged probabilities is the members' mean P(-1)
        decision["minus_one_threshold"] = sum(float(c) for c in cuts) / len(cuts)
    names = ", ".join(f"{display_name(c.path)}={c.value:.4g}" for c in close)
    reason = (f"{len(close)} models within {tolerance:g} {metric} of the best ({names}; at most {max_members}), "
              f"equal weights, {decision['rule']}")
    members = [Member(c.path, 1.0 / len(close)) for c in close]
    return Ensemble(None, members, decision, metric, None, reason)
