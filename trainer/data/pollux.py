"""POLLUX (``ai-forever/POLLUX``) in the contest's CSV format: one row per answer x criterion, scores from annotators.

    python -m trainer import-pollux pollux_test.parquet data/pollux --split 0.1
    python -m trainer import-pollux ai-forever/POLLUX data/pollux        # where the network allows

Source: a parquet or JSONL file, a folder of them, or a hub dataset id (read with ``datasets``). Each row becomes
``id,prompt,score`` plus the metadata columns :data:`META_COLUMNS` (``human_mean``: the annotators' raw mean).

The prompt is :func:`submission.prompts.sections.compose_prompt` (the contest's headers, in order; no reference
section when the reference is empty): task = ``instruction``, answer = ``answer``, criterion = ``criteria_name`` and
``criteria_description`` on the next line, scale = ``rubrics`` as written under the project's not-applicable line
``-1: критерий неприменим`` (trainer/data/augment.py): POLLUX's annotators could call any criterion not applicable,
and the runtime predicts -1 only where the scale lists it. Without that line (``not_applicable_line=False``) the
gold -1 rows are dropped instead. ``rubrics_example`` is left out: its sample verdicts would read as score lines.

The score (:func:`consensus_score`): -1 when a strict majority of annotators said -1 (not applicable); else the
median of the applicable scores, and when that median falls between two scores (an even split) the one nearer the
mean, the lower on a tie. Without annotations the rounded ``criteria_score`` (ties down). ``human_mean`` is
``criteria_score`` as published, except where an annotator gave -1 (or nothing is published): then the mean of the
applicable scores, since whether the published mean counts a -1 as the value -1 is not documented.

Rows that cannot be used are dropped and counted per reason (:data:`DROP_REASONS`). The contest scores -1..3 and the
runtime reads a 0-4 scale as 0..3, so POLLUX's 0-4 criteria are dropped; a 1-3 scale is kept as it is. With
``keep_0_4`` (``--keep-0-4``: a judge trained on POLLUX's own range) they are kept, scored 0..4 by the same
consensus, and every row gets a ``max_score`` column (its rubric's highest score): the file's record that it holds
0-4 rows, which ``submission.data.read_train_csv`` reads (a 4 only where ``max_score`` is 4) and training turns into
the judge's ``"max_score": 4`` (merged/judge.json), so the runtime and its predictions check then accept 4 on
those rows (docs/ARCHITECTURE.md §2).

Ids are the first 16 hex digits of sha1(instruction, answer, criterion): stable across runs and sources. With
``split`` the instructions (not rows) are held out, so no answer's criteria straddle train and validation.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import statistics
import sys
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from submission.data import MAX_SCORE_COLUMN
from submission.prompts.sections import LABELS, LABELS_0_4, compose_prompt
from trainer.data.augment import NOT_APPLICABLE_LINE

log = logging.getLogger("trainer.data.pollux")

META_COLUMNS: tuple[str, ...] = ("task_type", "domain", "criteria_name", "difficulty", "model_id", "human_mean")
DROP_REASONS: dict[str, str] = {
    "missing_text": "no instruction, answer, criterion or rubric",
    "unreadable_rubric": "the rubric names no score lines",
    "scale_0_4": "a 0-4 scale (the contest scores -1..3; see --keep-0-4)",
    "scale_outside_contest": "a scale with scores outside -1..3 (-1..4 with --keep-0-4)",
    "no_scores": "no annotator scores and no criteria_score",
    "score_outside_rubric": "the consensus score is not on the rubric's scale",
    "duplicate": "the same instruction, answer and criterion again",
    "not_applicable_without_line": "gold -1 but the scale has no -1 line (--no-not-applicable-line)",
}
# POLLUX writes each scale line "N: text" (markup and a bullet tolerated); only ':' separates, so numbered items in a
# description ("1. ...", "2) ...") are not mistaken for scores.
_RUBRIC_LINE_RE = re.compile(r"^[ \t]*(?:[-*•][ \t]+)?(?:\*\*)?(?P<score>-?\d+)(?:\*\*)?[ \t]*:", re.MULTILINE)
_HUB_ID_RE = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_PROGRESS_EVERY = 20_000


class PolluxError(ValueError):
    """The source cannot be read as POLLUX (missing file or columns); the message is one line with the fix."""


@dataclass
class ImportResult:
    """The converted rows, and how many rows were dropped for each reason of :data:`DROP_REASONS`."""

    frame: pd.DataFrame
    dropped: Counter = field(default_factory=Counter)
    read: int = 0
    groups: list[str] = field(default_factory=list)  # per kept row: its instruction's hash (the split's unit)


def rubric_scale(rubrics: str) -> tuple[int, ...]:
    """The scores the rubric's lines name (``0: ...``), sorted and unique; () when none."""
    return tuple(sorted({int(m.group("score")) for m in _RUBRIC_LINE_RE.finditer(str(rubrics or ""))}))


def annotator_scores(annotations) -> list[int]:
    """Integer scores out of POLLUX's ``annotations`` (a list of ``{"comment", "score"}``, a numpy array of them
    from parquet, or their JSON text); entries without a score are skipped."""
    if annotations is None or (isinstance(annotations, float) and math.isnan(annotations)):
        return []
    if isinstance(annotations, str):
        annotations = json.loads(annotations) if annotations.strip() else []
    scores = []
    for item in annotations:
        value = item.get("score") if isinstance(item, dict) else item
        if value is not None and not (isinstance(value, float) and math.isnan(value)):
            scores.append(int(round(float(value))))
    return scores


def _round_between(low: int, high: int, target: float) -> int:
    """``low`` or ``high``, whichever is nearer ``target``; ``low`` on a tie."""
    return high if abs(high - target) < abs(target - low) else low


def consensus_score(scores: list[int], published_mean: float | None = None) -> int | None:
    """The row's integer score (module docstring): -1 on a strict not-applicable majority, else the median of the
    applicable scores (an even split resolved toward the mean, then down); None when there is nothing to go on."""
    applicable = [s for s in scores if s != -1]
    if scores and len(scores) - len(applicable) > len(scores) / 2:
        return -1
    if applicable:
        median = statistics.median(applicable)
        if median == int(median):
            return int(median)
        return _round_between(math.floor(median), math.ceil(median), statistics.fmean(applicable))
    if published_mean is None or math.isnan(published_mean):
        return None
    return _round_between(math.floor(published_mean), math.ceil(published_mean), published_mean)


def pollux_id(instruction: str, answer: str, criterion: str) -> str:
    """Stable row id: 16 hex digits of sha1 over the three texts (separated by a byte none of them contains)."""
    digest = hashlib.sha1("\x1f".join((instruction, answer, criterion)).encode("utf-8"))
    return digest.hexdigest()[:16]


def _text(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value)


def _float(value) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def convert_row(row: dict, not_applicable_line: bool = True, keep_0_4: bool = False) -> tuple[dict | None, str | None]:
    """(contest row, None) or (None, drop reason) for one POLLUX record (module docstring); with ``keep_0_4`` a 0-4
    criterion is kept (score 0..4) and the row carries ``max_score``."""
    instruction, answer = _text(row.get("instruction")), _text(row.get("answer"))
    name, rubrics = _text(row.get("criteria_name")).strip(), _text(row.get("rubrics"))
    if not (instruction.strip() and answer.strip() and name and rubrics.strip()):
        return None, "missing_text"
    scale = rubric_scale(rubrics)
    if not scale:
        return None, "unreadable_rubric"
    if scale == (0, 1, 2, 3, 4) and not keep_0_4:
        return None, "scale_0_4"
    if any(s not in (LABELS_0_4 if keep_0_4 else LABELS) for s in scale):
        return None, "scale_outside_contest"
    scores = annotator_scores(row.get("annotations"))
    published = _float(row.get("criteria_score"))
    score = consensus_score(scores, published)
    if score is None:
        return None, "no_scores"
    if score != -1 and score not in scale:
        return None, "score_outside_rubric"
    if score == -1 and not not_applicable_line and -1 not in scale:
        return None, "not_applicable_without_line"
    applicable = [s for s in scores if s != -1]
    human_mean = published
    if applicable and (published is None or len(applicable) < len(scores)):
        human_mean = statistics.fmean(applicable)  # whether the published mean counted a -1 as -1 is not documented
    reference = _text(row.get("reference_answer")).strip()
    description = _text(row.get("criteria_description")).strip()
    criterion = f"{name}\n{description}" if description else name
    rubric = rubrics.strip()
    if not_applicable_line and -1 not in scale:  # a rubric with its own -1 line keeps that one
        rubric = f"{NOT_APPLICABLE_LINE}\n\n{rubric}"
    prompt = compose_prompt(instruction.strip(), answer.strip(), criterion, rubric, reference or None)
    out = {"id": pollux_id(instruction, answer, name), "prompt": prompt, "score": score}
    out.update({key: _text(row.get(key)) for key in META_COLUMNS[:-1]})
    out["human_mean"] = human_mean
    if keep_0_4:
        out[MAX_SCORE_COLUMN] = max(scale)
    out["group"] = hashlib.sha1(instruction.encode("utf-8")).hexdigest()[:16]
    return out, None


def _progress(rows: Iterable, total: int):
    """A tqdm bar on a TTY; elsewhere a log line every 20,000 rows (STYLE: one honest progress line)."""
    from tqdm.auto import tqdm

    if sys.stderr.isatty():
        yield from tqdm(rows, total=total, desc="pollux", unit="row", file=sys.stderr, dynamic_ncols=True)
        return
    for i, row in enumerate(rows, start=1):
        yield row
        if i % _PROGRESS_EVERY == 0:
            log.info("pollux: %d/%d rows", i, total)


def convert_frame(source: pd.DataFrame, not_applicable_line: bool = True, keep_0_4: bool = False) -> ImportResult:
    """POLLUX records -> :class:`ImportResult` (rows in source order, the first of any duplicate id kept)."""
    rows, groups, dropped, seen = [], [], Counter(), set()
    for record in _progress(source.to_dict("records"), len(source)):
        row, reason = convert_row(record, not_applicable_line, keep_0_4)
        if row is not None and row["id"] in seen:
            row, reason = None, "duplicate"
        if row is None:
            dropped[reason] += 1
            continue
        seen.add(row["id"])
        groups.append(row.pop("group"))
        rows.append(row)
    columns = ["id", "prompt", "score", *META_COLUMNS, *([MAX_SCORE_COLUMN] if keep_0_4 else [])]
    frame = pd.DataFrame(rows, columns=columns)
    return ImportResult(frame.astype({"score": int}), dropped, len(source), groups)


def _read_file(path: Path) -> pd.DataFrame:
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    if path.suffix in (".jsonl", ".json"):
        try:
            return pd.read_json(path, lines=True, dtype=False, precise_float=True)
        except ValueError:  # a .json holding one array rather than JSON lines
            return pd.read_json(path, dtype=False, precise_float=True)
    raise PolluxError(f"{path}: not a parquet or JSONL file (.parquet, .jsonl, .json)")


def read_pollux(source: str | Path, split: str = "test") -> pd.DataFrame:
    """POLLUX records from a parquet/JSONL file, a folder of them (every such file below it, sorted; parquet first)
    or a hub id (``split`` of it)."""
    path = Path(source)
    if path.is_file():
        return _read_file(path)
    if path.is_dir():
        # A hub snapshot also holds metadata JSON: parquet when there is any, else JSONL, else JSON.
        found = [p for p in path.rglob("*") if p.is_file() and not any(part.startswith(".") for part in p.parts)]
        files = next((sorted(f for f in found if f.suffix == s) for s in (".parquet", ".jsonl", ".json")
                      if any(f.suffix == s for f in found)), [])
        if not files:
            raise PolluxError(f"{path}: no .parquet, .jsonl or .json files in this folder")
        return pd.concat([_read_file(p) for p in files], ignore_index=True)
    if not _HUB_ID_RE.match(str(source)):
        raise PolluxError(f"{source}: no such file or folder (pass a parquet/JSONL file, a folder or a hub id)")
    import datasets

    try:
        return datasets.load_dataset(str(source), split=split).to_pandas()
    except Exception as error:  # noqa: BLE001 - offline, unknown id, no such split: all the user's to fix
        raise PolluxError(f"{source}: could not load the hub dataset ({type(error).__name__}: "
                          f"{str(error).splitlines()[0] if str(error) else ''}); download it where the network "
                          "allows and pass the file") from None


_REQUIRED = ("instruction", "answer", "criteria_name", "rubrics")


def check_columns(source: pd.DataFrame, origin: str) -> None:
    """PolluxError naming the missing POLLUX columns (an annotation or a criteria_score column is needed too)."""
    missing = [c for c in _REQUIRED if c not in source.columns]
    if not {"annotations", "criteria_score"} & set(source.columns):
        missing.append("annotations or criteria_score")
    if missing:
        raise PolluxError(f"{origin}: missing POLLUX column(s) {', '.join(missing)}; is this ai-forever/POLLUX?")


def split_by_instruction(frame: pd.DataFrame, groups: list[str], val_fraction: float,
                         seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, validation): a seeded ``val_fraction`` of the distinct groups (instructions), all their rows, to
    validation; at least one group when the fraction is above 0."""
    keys = sorted(set(groups), key=lambda g: hashlib.sha1(f"{seed}\x1f{g}".encode()).hexdigest())
    held = set(keys[: max(1, round(len(keys) * val_fraction))]) if keys and val_fraction > 0 else set()
    mask = pd.Series(groups, dtype=object).isin(held).to_numpy()
    return frame[~mask].reset_index(drop=True), frame[mask].reset_index(drop=True)


def import_pollux(source: str | Path, out_dir: str | Path, val_fraction: float | None = None, seed: int = 0,
                  split: str = "test", not_applicable_line: bool = True,
                  keep_0_4: bool = False) -> tuple[ImportResult, list[Path]]:
    """Read ``source``, convert, write ``pollux.csv`` (or ``train.csv`` + ``val.csv`` with ``val_fraction``)."""
    records = read_pollux(source, split)
    check_columns(records, str(source))
    result = convert_frame(records, not_applicable_line, keep_0_4)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if val_fraction is None:
        path = out_dir / "pollux.csv"
        result.frame.to_csv(path, index=False)
        return result, [path]
    train, val = split_by_instruction(result.frame, result.groups, val_fraction, seed)
    paths = [out_dir / "train.csv", out_dir / "val.csv"]
    train.to_csv(paths[0], index=False)
    val.to_csv(paths[1], index=False)
    return result, paths


def drop_summary(result: ImportResult) -> list[str]:
    """One line per drop reason with its count (reasons with none left out), then the kept total."""
    lines = [f"dropped {result.dropped[k]:>7} rows: {DROP_REASONS[k]}" for k in DROP_REASONS if result.dropped[k]]
    lines.append(f"kept    {len(result.frame):>7} of {result.read} rows")
    if MAX_SCORE_COLUMN in result.frame.columns:
        four = int((result.frame[MAX_SCORE_COLUMN] == 4).sum())
        lines.append(f"kept    {four:>7} rows of 0-4 criteria (--keep-0-4; column {MAX_SCORE_COLUMN}): a judge "
                     "trained on them scores -1..4 (judge.json max_score 4)")
    return lines
