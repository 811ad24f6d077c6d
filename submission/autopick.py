"""Which model(s) to run: candidate model folders ranked by their validation reports, and ensemble.json.

A model folder is a ``config.json`` with ``*.safetensors`` (+ tokenizer); its ``validation_report.json`` gives the
score used for ranking. Folders without a report rank last; ties go to the newer report (then the newer folder).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from submission.metrics import higher_is_better, metric_value

log = logging.getLogger(__name__)

REPORT_NAME = "validation_report.json"
MERGED_DIR = "merged"  # a training run's model folder (runs/<name>/merged); trainer/rundir.py reuses both names
ENSEMBLE_NAME = "ensemble.json"
JUDGE_NAME = "judge.json"


@dataclass
class Candidate:
    """One model folder with what its report says about it."""

    path: Path
    report: dict = field(default_factory=dict)
    value: float | None = None
    created: str = ""

    @property
    def mode(self) -> str:
        """``score`` (one forward, label logits) or ``generate`` (free-text judge, score extracted from text)."""
        judge = self.path / JUDGE_NAME
        if judge.is_file():
            return json.loads(judge.read_text(encoding="utf-8")).get("mode", "score")
        return self.report.get("mode", "score")


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
    path = Path(model_dir) / REPORT_NAME
    if not path.is_file():
        return {}
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        log.warning("%s: unreadable report (%s); ranking it last", path, error)
        return {}
    return report if isinstance(report, dict) else {}


def is_model_dir(path: Path) -> bool:
    return (path / "config.json").is_file() and any(path.glob("*.safetensors"))


def candidate_model_dirs(roots: list[Path]) -> list[Path]:
    """Model folders found at each root: the root itself, ``root/*`` and ``root/*/merged``; de-duplicated, in order."""
    found: list[Path] = []
    seen: set[Path] = set()
    for root in roots:
        root = Path(root)
        if not root.is_dir():
            continue
        options = [root, *sorted(p for p in root.iterdir() if p.is_dir())]
        options += sorted(p for p in root.glob(f"*/{MERGED_DIR}") if p.is_dir())
        for path in options:
            resolved = path.resolve()
            if resolved not in seen and is_model_dir(path):
                seen.add(resolved)
                found.append(path)
    return found


def rank_candidates(dirs: list[Path], metric: str) -> list[Candidate]:
    """Best first by ``metric`` (direction from submission.metrics); no report or no value ranks last; tie -> newer."""
    higher = higher_is_better(metric)
    candidates = []
    for path in dirs:
        report = read_report(path)
        try:
            value = metric_value(report, metric) if report else None
        except KeyError:
            value = None
        created = str(report.get("created", ""))
        candidates.append(Candidate(path, report, value, created))

    def key(c: Candidate):
        has = c.value is not None
        signed = (c.value if higher else -c.value) if has else 0.0
        mtime = (c.path / REPORT_NAME).stat().st_mtime if (c.path / REPORT_NAME).is_file() else 0.0
        return (has, signed, c.created, mtime)

    return sorted(candidates, key=key, reverse=True)


def display_name(path: Path) -> str:
    """``runs/exp1/merged`` -> ``exp1``; ``models/a`` -> ``a``."""
    return path.parent.name if path.name == MERGED_DIR else path.name


def pick_reason(ranked: list[Candidate], metric: str) -> str:
    """One line saying why the first candidate won."""
    best = ranked[0]
    if best.value is None:
        return f"no candidate has {metric} in a {REPORT_NAME}; took the first of {len(ranked)} found"
    others = ", ".join(f"{display_name(c.path)}={c.value:.4g}" if c.value is not None else f"{display_name(c.path)}=no report"
                       for c in ranked[1:])
    direction = "highest" if higher_is_better(metric) else "lowest"
    return f"{direction} {metric}: {display_name(best.path)}={best.value:.4g}" + (f" (vs {others})" if others else "")


def find_ensemble(roots: list[Path]) -> Ensemble | None:
    """ensemble.json given directly, inside a root, or beside it (the bundle root holds models/ and ensemble.json)."""
    for root in roots:
        root = Path(root)
        for path in (root, root / ENSEMBLE_NAME, root.parent / ENSEMBLE_NAME):
            if path.is_file() and path.name.endswith(".json") and path.name != REPORT_NAME:
                return read_ensemble(path)
    return None


def read_ensemble(path: Path) -> Ensemble:
    """Parse ensemble.json; member paths are relative to the file. Raises ValueError on a malformed file."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    members = [Member((path.parent / m["model"]).resolve(), float(m.get("weight", 1.0))) for m in data.get("members", [])]
    if not members:
        raise ValueError(f"{path}: no members")
    return Ensemble(Path(path), members, data.get("decision"), data.get("metric"), data.get("value"),
                    f"{path} ({len(members)} members, stored weights)")


def auto_ensemble(ranked: list[Candidate], metric: str, tolerance: float, max_members: int) -> Ensemble | None:
    """Equal-weight ensemble of the scoring models whose ``metric`` is within ``tolerance`` of the best, or None.

    None unless at least two qualify; at most ``max_members`` (best first). The decision rule: the mean of the
    members' thresholds when every member has thresholds (the expected score of averaged probabilities is the
    average of the members' expected scores), else argmax.
    """
    scored = [c for c in ranked if c.value is not None and c.mode == "score"]
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
    names = ", ".join(f"{display_name(c.path)}={c.value:.4g}" for c in close)
    reason = (f"{len(close)} models within {tolerance:g} {metric} of the best ({names}; at most {max_members}), "
              f"equal weights, {decision['rule']}")
    members = [Member(c.path, 1.0 / len(close)) for c in close]
    return Ensemble(None, members, decision, metric, None, reason)
