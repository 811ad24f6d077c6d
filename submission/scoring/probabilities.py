"""Per-row label probabilities as a CSV: ``id,p_-1,p_0,p_1,p_2,p_3``, one format for the runtime and distillation.

    python run.py --test_path test.csv --pred_path predictions.csv --probabilities probabilities.csv
    python -m trainer distill --teacher runs/big/merged --data train.csv --out soft.csv

The runtime writes the probabilities its decision rule read (the ensemble's blend; the prior for rows that got the
prior), ``trainer distill`` writes a teacher's; either file can be read back as soft labels
(``train --soft-labels``). Zero outside each row's rubric. Floats are written as Python's ``repr`` (the shortest text
that reads back to the same double), which is also what pandas' ``to_csv`` writes. Standard library only: this is
on the runtime's import path.
"""

from __future__ import annotations

import csv
import math
import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

from submission.prompts.sections import LABELS


# The column of each label's probability, LABELS order: the one spelling of the prediction format (the runtime's
# --probabilities, `trainer distill`, soft labels, validation/k-fold/ensemble predictions all read and write it).
def probability_columns(labels: Sequence[int] = LABELS) -> tuple[str, ...]:
    """``p_-1..p_3`` (a 0-4 judge's run: ``p_-1..p_4``)."""
    return tuple(f"p_{label}" for label in labels)


PROBABILITY_COLUMNS: tuple[str, ...] = probability_columns(LABELS)


def format_probability(value: float) -> str:
    """The text of one probability: the shortest round-tripping decimal (``0.0``, ``0.25``, ``0.3333333333333333``)."""
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"probability {value!r} is not finite")
    return repr(value)


def write_probabilities(path: str | os.PathLike, ids: Sequence[str], probabilities: Iterable[Sequence[float]],
                        labels: Sequence[int] = LABELS) -> Path:
    """Write ``id,p_-1..p_3`` atomically (temp file in the same folder, then a rename); returns the path.

    ``probabilities`` has one row of ``len(labels)`` values per id, columns in ``labels`` order (numpy arrays work).
    """
    path = Path(path)
    columns = probability_columns(labels)
    rows = [[str(i), *map(format_probability, row)] for i, row in zip(ids, probabilities, strict=True)]
    for row in rows:
        if len(row) != len(columns) + 1:
            raise ValueError(f"id {row[0]!r}: {len(row) - 1} probabilities, expected {len(columns)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(["id", *columns])
            writer.writerows(rows)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
