"""The CSV contract: train ``id,prompt,score``, test ``id,prompt``, predictions ``id,score``.

Every problem a user can cause raises :class:`DataError` with one line naming the file, the row and the fix.
Row numbers are 1-based data rows (the header is row 0), as a spreadsheet would show them minus one.
Parsing and every check use the standard library (the runtime's path: :func:`read_test_rows`,
:func:`write_predictions`); the train/gold/predictions readers hand the checked columns to the training and grading
tools as pandas DataFrames, importing pandas only when called.
"""

from __future__ import annotations

import csv
import io
import math
import os
import sys
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from submission.sections import LABELS

# A prompt cell can be far longer than the csv module's default 128 KiB field cap.
csv.field_size_limit(min(sys.maxsize, 2**31 - 1))


class DataError(ValueError):
    """A user-fixable problem with an input or output file; the message is one line."""


@dataclass
class Table:
    """A CSV read as strings: stripped column names and one list per column (all the same length)."""

    path: Path
    columns: dict[str, list[str]]

    def __len__(self) -> int:
        return len(next(iter(self.columns.values()), []))


@dataclass
class PromptRows:
    """The runtime's view of a test CSV: ids (stripped strings, unique, non-empty) and prompts, in file order."""

    ids: list[str]
    prompts: list[str]

    def __getitem__(self, column: str) -> list[str]:
        """``rows["id"]`` / ``rows["prompt"]``: the same access a DataFrame of the file gives."""
        return {"id": self.ids, "prompt": self.prompts}[column]

    def __len__(self) -> int:
        return len(self.ids)


def _read_table(path: str | os.PathLike) -> Table:
    """Parse with the stdlib csv module: BOM stripped, quoted multi-line cells kept, blank lines skipped."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not valid UTF-8 (byte {err.start}); save the file as UTF-8") from None
    try:
        records = [r for r in csv.reader(io.StringIO(text, newline="")) if r]
    except csv.Error as err:
        raise DataError(f"{path}: not a readable CSV ({str(err).splitlines()[0]})") from None
    if not records:
        raise DataError(f"{path}: the file is empty; expected a header line")
    header = [name.strip() for name in records[0]]
    width = len(header)
    for line, record in enumerate(records[1:], start=1):
        if len(record) > width:
            raise DataError(f"{path}: not a readable CSV (row {line}: expected {width} fields, saw {len(record)})")
    rows = [r + [""] * (width - len(r)) for r in records[1:]]
    columns: dict[str, list[str]] = {}
    for k, name in enumerate(header):
        columns.setdefault(name, [r[k] for r in rows])  # a repeated column name: the first one counts
    return Table(path, columns)


def _require_columns(table: Table, columns: Sequence[str]) -> None:
    missing = [c for c in columns if c not in table.columns]
    if missing:
        have = ",".join(table.columns) or "(none)"
        raise DataError(f"{table.path}: missing column(s) {','.join(missing)}; found {have}; expected {','.join(columns)}")


def _check_ids(table: Table) -> list[str]:
    """Stripped ids; DataError on the first empty or repeated one."""
    ids = [i.strip() for i in table.columns["id"]]
    first: dict[str, int] = {}
    for row, value in enumerate(ids):
        if not value:
            raise DataError(f"{table.path}: row {row + 1}: empty id")
        if value in first:
            raise DataError(f"{table.path}: row {row + 1}: duplicate id {value!r} (first seen at row {first[value] + 1})")
        first[value] = row
    return ids


def _check_prompts(table: Table, ids: list[str]) -> None:
    for row, prompt in enumerate(table.columns["prompt"]):
        if not prompt.strip():
            raise DataError(f"{table.path}: row {row + 1}: empty prompt (id {ids[row]!r})")


def _check_scores(table: Table, ids: list[str], with_id: bool, allow_empty: bool = False) -> list[int | None]:
    """Scores as ints; with ``allow_empty`` an empty cell is None (an unlabelled row)."""
    scores = []
    for row, raw in enumerate(table.columns["score"]):
        if allow_empty and not raw.strip():
            scores.append(None)
            continue
        score = parse_score(raw)
        if score not in LABELS:
            where = f" (id {ids[row]!r})" if with_id else ""
            allowed = "-1,0,1,2,3 or empty" if allow_empty else "-1,0,1,2,3"
            raise DataError(f"{table.path}: row {row + 1}: score {raw!r} is not one of {allowed}{where}")
        scores.append(score)
    return scores


def _frame(columns: dict):
    """A pandas DataFrame of checked columns, for the training and grading tools (never the runtime's path)."""
    import pandas as pd

    return pd.DataFrame(columns)


def parse_score(value: str) -> int | None:
    """'3', ' 2 ', '1.0' -> int; anything else -> None."""
    text = str(value).strip()
    try:
        number = float(text)
    except ValueError:
        return None
    if not number.is_integer():
        return None
    return int(number)


def read_train_csv(path: str | os.PathLike):
    """Train CSV -> DataFrame[id:str, prompt:str, score:int]; raises DataError on any contract breach."""
    table = _read_table(path)
    _require_columns(table, ("id", "prompt", "score"))
    ids = _check_ids(table)
    _check_prompts(table, ids)
    scores = _check_scores(table, ids, with_id=True)
    return _frame({"id": ids, "prompt": table.columns["prompt"], "score": scores})


def read_train_csv_maybe_unlabelled(path: str | os.PathLike):
    """Train CSV whose ``score`` may be empty (or absent) -> DataFrame[id:str, prompt:str, score:float], NaN where a
    row is unlabelled (soft-label-only rows of ``trainer distill``); the other checks as :func:`read_train_csv`."""
    table = _read_table(path)
    _require_columns(table, ("id", "prompt"))
    ids = _check_ids(table)
    _check_prompts(table, ids)
    if "score" in table.columns:
        scores = [math.nan if s is None else float(s) for s in _check_scores(table, ids, True, allow_empty=True)]
    else:
        scores = [math.nan] * len(ids)
    return _frame({"id": ids, "prompt": table.columns["prompt"], "score": scores})


def read_test_rows(path: str | os.PathLike) -> PromptRows:
    """Test CSV -> :class:`PromptRows` with the standard library only (the runtime's reader). Extra columns are ignored.

    Empty prompts are a row-level problem, not a file-level one: they are kept (the runtime scores them by
    fallback and counts them).
    """
    table = _read_table(path)
    _require_columns(table, ("id", "prompt"))
    return PromptRows(_check_ids(table), table.columns["prompt"])


def read_test_csv(path: str | os.PathLike):
    """Test CSV -> DataFrame[id:str, prompt:str] (the same checks as :func:`read_test_rows`), for tools and tests."""
    rows = read_test_rows(path)
    return _frame({"id": rows.ids, "prompt": rows.prompts})


def read_prompt_csv(path: str | os.PathLike):
    """``id,prompt`` -> DataFrame like :func:`read_test_csv`, but an empty prompt is a DataError (tools that cannot
    fall back to a prior, e.g. ``trainer distill``)."""
    table = _read_table(path)
    _require_columns(table, ("id", "prompt"))
    ids = _check_ids(table)
    _check_prompts(table, ids)
    return _frame({"id": ids, "prompt": table.columns["prompt"]})


def read_gold_csv(path: str | os.PathLike):
    """Gold labels ``id,score`` (a train-format file works too) -> DataFrame[id:str, score:int]."""
    table = _read_table(path)
    _require_columns(table, ("id", "score"))
    ids = _check_ids(table)
    return _frame({"id": ids, "score": _check_scores(table, ids, with_id=False)})


def validate_predictions(
    ids: Sequence[str],
    scores: Sequence[int],
    allowed: Sequence[Iterable[int]] | None = None,
) -> None:
    """Raise DataError unless there is one int score per id, each in -1..3 and (if given) in its row's rubric."""
    if len(ids) != len(scores):
        raise DataError(f"predictions: {len(scores)} scores for {len(ids)} ids")
    if len(set(ids)) != len(ids):
        raise DataError("predictions: duplicate ids")
    for row, score in enumerate(scores):
        if not isinstance(score, int) or isinstance(score, bool) or score not in LABELS:
            raise DataError(f"predictions: row {row + 1}: score {score!r} is not an int in -1..3 (id {ids[row]!r})")
        if allowed is not None and score not in set(allowed[row]):
            raise DataError(f"predictions: row {row + 1}: score {score} is outside the rubric {sorted(allowed[row])}")


def write_predictions(path: str | os.PathLike, ids: Sequence[str], scores: Sequence[int]) -> None:
    """Write ``id,score`` atomically: a temp file in the same folder, then a rename. Never leaves a partial file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(["id", "score"])
            writer.writerows([i, int(s)] for i, s in zip(ids, scores, strict=True))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_predictions_csv(path: str | os.PathLike):
    """Predictions ``id,score`` as written by :func:`write_predictions` (strictly ints) -> DataFrame."""
    table = _read_table(path)
    _require_columns(table, ("id", "score"))
    for row, value in enumerate(table.columns["score"]):
        if not value.strip().lstrip("-").isdigit():
            raise DataError(f"{table.path}: row {row + 1}: score {value!r} is not an integer")
    return _frame({"id": [i.strip() for i in table.columns["id"]],
                   "score": [int(v) for v in table.columns["score"]]})
