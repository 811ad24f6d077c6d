"""The CSV contract: train ``id,prompt,score``, test ``id,prompt``, predictions ``id,score``.

Every problem a user can cause raises :class:`DataError` with one line naming the file, the row and the fix.
Row numbers are 1-based data rows (the header is row 0), as a spreadsheet would show them minus one.
Parsing and every check use the standard library (the runtime's path: :func:`read_test_rows`,
:func:`write_predictions`); the train/gold/predictions readers hand the checked columns to the training and grading
tools as pandas DataFrames, importing pandas only when called.
"""

from __future__ import annotations

import csv
import errno
import io
import math
import os
import stat
import sys
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from submission.prompts.sections import LABELS, LABELS_0_4

MAX_SCORE_COLUMN = "max_score"  # a train row's highest score when it is 4 (import-pollux --keep-0-4): 4 allowed there

# A prompt cell can be far longer than the csv module's default 128 KiB field cap.
csv.field_size_limit(min(sys.maxsize, 2**31 - 1))


class DataError(ValueError):
    """A user-fixable problem with an input or output file; the message is one line."""


class OutputError(OSError):
    """An output file could not be written (read-only folder, a folder in the way, disk full); one line."""


@dataclass
class Table:
    """A CSV read as strings: stripped column names and one list per column (all the same length)."""

    path: Path
    columns: dict[str, list[str]]

    def __len__(self) -> int:
        return len(next(iter(self.columns.values()), []))


@dataclass
class PromptRows:
    """The runtime's view of a test CSV: ids (exactly as in the file, unique, non-blank) and prompts, in file order."""

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
    _check_readable_file(path)
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
            raise DataError(f"{path}: not a readable CSV (row {line}: expected {width} fields, saw {len(record)})"
                            + _delimiter_hint(header))
    rows = [r + [""] * (width - len(r)) for r in records[1:]]
    columns: dict[str, list[str]] = {}
    for k, name in enumerate(header):
        columns.setdefault(name, [r[k] for r in rows])  # a repeated column name: the first one counts
    return Table(path, columns)


def _check_readable_file(path: Path) -> None:
    """DataError naming what ``path`` is when it is not a file to read (a pipe is fine: ``<(cat test.csv)``)."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except OSError as err:
        raise DataError(f"{path}: cannot be read ({err.strerror or err})") from None
    if stat.S_ISDIR(mode):
        raise DataError(f"{path}: is a folder, not a CSV file; pass the CSV file inside it")
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISSOCK(mode):
        raise DataError(f"{path}: is a device or socket, not a CSV file")
    if not os.access(path, os.R_OK):
        raise DataError(f"{path}: permission denied (not readable by this user)")


def _delimiter_hint(header: list[str]) -> str:
    """'; the header looks tab-separated ...' when a one-column header holds a tab or ';' (a TSV or an Excel CSV)."""
    if len(header) != 1:
        return ""
    for char, name in (("\t", "tab"), (";", "semicolon")):
        if char in header[0]:
            return f"; the header {header[0]!r} looks {name}-separated: save the file comma-separated"
    return ""


def _require_columns(table: Table, columns: Sequence[str]) -> None:
    missing = [c for c in columns if c not in table.columns]
    if missing:
        have = ",".join(table.columns) or "(none)"
        raise DataError(f"{table.path}: missing column(s) {','.join(missing)}; found {have}; expected "
                        f"{','.join(columns)}" + _delimiter_hint(list(table.columns)))


def _check_ids(table: Table) -> list[str]:
    """The ids exactly as in the file (surrounding spaces kept: the grader matches them as written); DataError on
    the first blank or repeated one."""
    ids = list(table.columns["id"])
    first: dict[str, int] = {}
    for row, value in enumerate(ids):
        if not value.strip():
            raise DataError(f"{table.path}: row {row + 1}: empty id")
        if value in first:
            raise DataError(f"{table.path}: row {row + 1}: duplicate id {value!r} (first seen at row {first[value] + 1})")
        first[value] = row
    return ids


def _check_prompts(table: Table, ids: list[str]) -> None:
    for row, prompt in enumerate(table.columns["prompt"]):
        if not prompt.strip():
            raise DataError(f"{table.path}: row {row + 1}: empty prompt (id {ids[row]!r})")


def _row_max_scores(table: Table) -> list[int] | None:
    """Per row, 4 where the ``max_score`` column says 4 (a 0-4 row kept by ``import-pollux --keep-0-4``), else 3;
    None when the file has no such column (every row -1..3, the contest's files)."""
    if MAX_SCORE_COLUMN not in table.columns:
        return None
    out = []
    for row, raw in enumerate(table.columns[MAX_SCORE_COLUMN]):
        value = parse_score(raw) if raw.strip() else 3
        if value is None or not -1 <= value <= 4:
            raise DataError(f"{table.path}: row {row + 1}: {MAX_SCORE_COLUMN} {raw!r} is not a score up to 4")
        out.append(4 if value == 4 else 3)
    return out


def _check_scores(table: Table, ids: list[str], with_id: bool, allow_empty: bool = False) -> list[int | None]:
    """Scores as ints; with ``allow_empty`` an empty cell is None (an unlabelled row). A 4 only on rows whose
    ``max_score`` column says 4."""
    scores = []
    maxima = _row_max_scores(table)
    for row, raw in enumerate(table.columns["score"]):
        if allow_empty and not raw.strip():
            scores.append(None)
            continue
        score = parse_score(raw)
        if score not in (LABELS_0_4 if maxima and maxima[row] == 4 else LABELS):
            where = f" (id {ids[row]!r})" if with_id else ""
            allowed = "-1,0,1,2,3 or empty" if allow_empty else "-1,0,1,2,3"
            allowed += " (4 only where max_score is 4)" if maxima else ""
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
    return _frame({"id": ids, "prompt": table.columns["prompt"], "score": scores, **_max_score_column(table)})


def _max_score_column(table: Table) -> dict:
    """``{"max_score": [...]}`` when the file has the column (a 0-4 judge's data), else {} (the frame as ever)."""
    maxima = _row_max_scores(table)
    return {} if maxima is None else {MAX_SCORE_COLUMN: maxima}


def max_score_of(frame) -> int:
    """4 when a train frame holds 0-4 rows (its ``max_score`` column says 4 anywhere), else 3: the judge's range."""
    return 4 if MAX_SCORE_COLUMN in frame.columns and (frame[MAX_SCORE_COLUMN] == 4).any() else 3


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
    return _frame({"id": ids, "prompt": table.columns["prompt"], "score": scores, **_max_score_column(table)})


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
    labels: Sequence[int] = LABELS,
) -> None:
    """Raise DataError unless there is one int score per id, each in ``labels`` (-1..3; -1..4 for a 0-4 judge) and
    (if given) in its row's rubric (read with the same labels: a 4 only where the rubric states 4)."""
    if len(ids) != len(scores):
        raise DataError(f"predictions: {len(scores)} scores for {len(ids)} ids")
    if len(set(ids)) != len(ids):
        raise DataError("predictions: duplicate ids")
    for row, score in enumerate(scores):
        if not isinstance(score, int) or isinstance(score, bool) or score not in labels:
            raise DataError(f"predictions: row {row + 1}: score {score!r} is not an int in -1..{max(labels)} "
                            f"(id {ids[row]!r})")
        if allowed is not None and score not in set(allowed[row]):
            raise DataError(f"predictions: row {row + 1}: score {score} is outside the rubric {sorted(allowed[row])}")


def write_predictions(path: str | os.PathLike, ids: Sequence[str], scores: Sequence[int]) -> None:
    """Write ``id,score`` atomically (:func:`write_text_atomic`): never a partial file; OutputError on failure."""
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["id", "score"])
    writer.writerows([i, int(s)] for i, s in zip(ids, scores, strict=True))
    write_text_atomic(path, buffer.getvalue())


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _fallback_in_place(error: OSError) -> bool:
    """Errors where a rename cannot replace the destination but writing into it may work (a bind-mounted file:
    EBUSY; another file system: EXDEV; a folder we may not create files in: EACCES/EPERM/EROFS)."""
    return error.errno in (errno.EBUSY, errno.EXDEV, errno.EACCES, errno.EPERM, errno.EROFS)


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path``; returns the file written (the link's target when ``path`` is a link).

    A temp file in the destination folder, fsync, then ``os.replace``, with the mode a new file gets under the umask
    (not mkstemp's 0600: a grader may read as another user). A symlink is written through: its target is replaced,
    the link stays. Where the rename cannot work (a bind-mounted file, EBUSY) the existing file is overwritten in
    place. Any failure (read-only folder, a folder in the way, disk full) raises :class:`OutputError` with one line;
    the old file is then left as it was, except after a failed in-place write.
    """
    target = Path(os.path.realpath(path))
    if target.is_dir():
        raise OutputError(f"{path}: is a folder; pass a file path")
    data = text.encode("utf-8")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as error:
        if target.is_file() and _fallback_in_place(error):
            return _write_in_place(path, target, data)
        raise OutputError(f"{path}: cannot write there ({error.strerror or error})") from None
    try:
        try:
            os.fchmod(fd, 0o666 & ~_umask())
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
        except OSError as error:
            raise OutputError(f"{path}: write failed ({error.strerror or error})") from None
        try:
            os.replace(tmp, target)
        except OSError as error:
            if not (target.is_file() and _fallback_in_place(error)):
                raise OutputError(f"{path}: cannot replace the file ({error.strerror or error})") from None
            return _write_in_place(path, target, data)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return target


def _write_in_place(path, target: Path, data: bytes) -> Path:
    try:
        with open(target, "r+b") as handle:
            handle.write(data)
            handle.truncate()
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as error:
        raise OutputError(f"{path}: write failed ({error.strerror or error})") from None
    return target


def check_output_path(path: str | os.PathLike, *inputs: str | os.PathLike) -> None:
    """Before any work: DataError when ``path`` is (after resolving links) one of ``inputs`` (writing would destroy
    it); OutputError when it is a folder or its folder cannot take a new file (probed with a temp file)."""
    target = Path(os.path.realpath(path))
    for source in inputs:
        if target == Path(os.path.realpath(source)) or (target.exists() and Path(source).exists()
                                                         and os.path.samefile(target, source)):
            raise DataError(f"{path}: is the input file {source} (after resolving links); writing there would "
                            "destroy it, choose another path")
    if target.is_dir():
        raise OutputError(f"{path}: is a folder; pass a file path")
    folder = target.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".probe", dir=folder)
    except OSError as error:
        if target.is_file() and os.access(target, os.W_OK):
            return  # a writable file in a folder we cannot add to (a bind mount): written in place
        raise OutputError(f"{path}: cannot write in {folder} ({error.strerror or error})") from None
    os.close(fd)
    Path(probe).unlink(missing_ok=True)


def read_predictions_csv(path: str | os.PathLike):
    """Predictions ``id,score`` as written by :func:`write_predictions` (strictly ints) -> DataFrame."""
    table = _read_table(path)
    _require_columns(table, ("id", "score"))
    for row, value in enumerate(table.columns["score"]):
        if not value.strip().lstrip("-").isdigit():
            raise DataError(f"{table.path}: row {row + 1}: score {value!r} is not an integer")
    return _frame({"id": list(table.columns["id"]), "score": [int(v) for v in table.columns["score"]]})
