"""The CSV contract: train ``id,prompt,score``, test ``id,prompt``, predictions ``id,score``.

Every problem a user can cause raises :class:`DataError` with one line naming the file, the row and the fix.
Row numbers are 1-based data rows (the header is row 0), as a spreadsheet would show them minus one.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

import pandas as pd

from submission.sections import ALL_LABELS


class DataError(ValueError):
    """A user-fixable problem with an input or output file; the message is one line."""


def _read_csv(path: str | os.PathLike) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        # utf-8-sig strips a BOM when present; the C parser handles quoted multi-line fields; ids stay strings.
        frame = pd.read_csv(path, encoding="utf-8-sig", dtype=str, keep_default_na=False, na_filter=False)
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not valid UTF-8 (byte {err.start}); save the file as UTF-8") from None
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: the file is empty; expected a header line") from None
    except pd.errors.ParserError as err:
        raise DataError(f"{path}: not a readable CSV ({str(err).splitlines()[0]})") from None
    frame.columns = [str(c).strip() for c in frame.columns]
    return frame


def _require_columns(frame: pd.DataFrame, path: Path, columns: Sequence[str]) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        have = ",".join(frame.columns) or "(none)"
        raise DataError(f"{path}: missing column(s) {','.join(missing)}; found {have}; expected {','.join(columns)}")


def _check_ids(frame: pd.DataFrame, path: Path) -> None:
    ids = frame["id"].str.strip()
    empty = ids.eq("")
    if empty.any():
        raise DataError(f"{path}: row {int(empty.to_numpy().argmax()) + 1}: empty id")
    dup = ids.duplicated()
    if dup.any():
        row = int(dup.to_numpy().argmax())
        first = int(ids.eq(ids.iloc[row]).to_numpy().argmax())
        raise DataError(f"{path}: row {row + 1}: duplicate id {ids.iloc[row]!r} (first seen at row {first + 1})")
    frame["id"] = ids


def _check_prompts(frame: pd.DataFrame, path: Path) -> None:
    empty = frame["prompt"].str.strip().eq("")
    if empty.any():
        row = int(empty.to_numpy().argmax())
        raise DataError(f"{path}: row {row + 1}: empty prompt (id {frame['id'].iloc[row]!r})")


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


def read_train_csv(path: str | os.PathLike) -> pd.DataFrame:
    """Train CSV -> DataFrame[id:str, prompt:str, score:int]; raises DataError on any contract breach."""
    path = Path(path)
    frame = _read_csv(path)
    _require_columns(frame, path, ("id", "prompt", "score"))
    _check_ids(frame, path)
    _check_prompts(frame, path)
    scores = frame["score"].map(parse_score)
    bad = scores.map(lambda s: s not in ALL_LABELS)
    if bad.any():
        row = int(bad.to_numpy().argmax())
        raise DataError(
            f"{path}: row {row + 1}: score {frame['score'].iloc[row]!r} is not one of -1,0,1,2,3 (id {frame['id'].iloc[row]!r})"
        )
    frame["score"] = scores.astype(int)
    return frame[["id", "prompt", "score"]].reset_index(drop=True)


def read_test_csv(path: str | os.PathLike) -> pd.DataFrame:
    """Test CSV -> DataFrame[id:str, prompt:str]. Extra columns (a score, say) are ignored.

    Empty prompts are a row-level problem, not a file-level one: they are kept (the runtime scores them by
    fallback and counts them) unless ``strict`` checks are wanted, see :func:`check_test_prompts`.
    """
    path = Path(path)
    frame = _read_csv(path)
    _require_columns(frame, path, ("id", "prompt"))
    _check_ids(frame, path)
    return frame[["id", "prompt"]].reset_index(drop=True)


def check_test_prompts(frame: pd.DataFrame, path: str | os.PathLike) -> None:
    """Raise DataError on the first empty prompt (for tools that cannot fall back, e.g. training)."""
    _check_prompts(frame, Path(path))


def read_gold_csv(path: str | os.PathLike) -> pd.DataFrame:
    """Gold labels ``id,score`` (a train-format file works too)."""
    path = Path(path)
    frame = _read_csv(path)
    _require_columns(frame, path, ("id", "score"))
    _check_ids(frame, path)
    scores = frame["score"].map(parse_score)
    bad = scores.map(lambda s: s not in ALL_LABELS)
    if bad.any():
        row = int(bad.to_numpy().argmax())
        raise DataError(f"{path}: row {row + 1}: score {frame['score'].iloc[row]!r} is not one of -1,0,1,2,3")
    frame["score"] = scores.astype(int)
    return frame[["id", "score"]].reset_index(drop=True)


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
        if not isinstance(score, int) or isinstance(score, bool) or score not in ALL_LABELS:
            raise DataError(f"predictions: row {row + 1}: score {score!r} is not an int in -1..3 (id {ids[row]!r})")
        if allowed is not None and score not in set(allowed[row]):
            raise DataError(f"predictions: row {row + 1}: score {score} is outside the rubric {sorted(allowed[row])}")


def write_predictions(path: str | os.PathLike, ids: Sequence[str], scores: Sequence[int]) -> None:
    """Write ``id,score`` atomically: a temp file in the same folder, then a rename. Never leaves a partial file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame({"id": list(ids), "score": [int(s) for s in scores]})
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            frame.to_csv(handle, index=False)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_predictions_csv(path: str | os.PathLike) -> pd.DataFrame:
    """Predictions ``id,score`` as written by :func:`write_predictions` (strictly ints)."""
    path = Path(path)
    frame = _read_csv(path)
    _require_columns(frame, path, ("id", "score"))
    bad = frame["score"].map(lambda v: not str(v).strip().lstrip("-").isdigit())
    if bad.any():
        row = int(bad.to_numpy().argmax())
        raise DataError(f"{path}: row {row + 1}: score {frame['score'].iloc[row]!r} is not an integer")
    frame["score"] = frame["score"].astype(int)
    frame["id"] = frame["id"].str.strip()
    return frame[["id", "score"]]
