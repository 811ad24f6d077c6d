"""Train/validation split, data provenance and class priors: pure functions over the train frame.

The validation split is saved by id (``val_ids.csv``) so every run, merge and evaluation compares on the same rows.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from submission.hashing import file_sha256
from submission.scoring import LABELS

VAL_IDS = "val_ids.csv"


def data_hash(path: str | Path) -> str:
    """sha256 of the file's bytes (provenance for training_config.json and the model card)."""
    return file_sha256(path)


def stratified_split(frame: pd.DataFrame, val_fraction: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Seeded split that keeps each score's share in both parts (every class with >= 2 rows gets a validation row)."""
    rng = np.random.default_rng(seed)
    val_index: list[int] = []
    for _, group in frame.groupby("score", sort=True):
        index = group.index.to_numpy().copy()
        rng.shuffle(index)
        take = int(round(len(index) * val_fraction))
        if len(index) >= 2:
            take = min(max(take, 1), len(index) - 1)
        val_index.extend(index[:take].tolist())
    val_mask = frame.index.isin(val_index)
    return frame[~val_mask].reset_index(drop=True), frame[val_mask].reset_index(drop=True)


def split_by_ids(frame: pd.DataFrame, val_ids_path: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The split a run saved: rows whose id is in ``val_ids.csv`` are validation."""
    ids = set(pd.read_csv(val_ids_path, dtype=str)["id"])
    mask = frame["id"].isin(ids)
    return frame[~mask].reset_index(drop=True), frame[mask].reset_index(drop=True)


def save_val_ids(val: pd.DataFrame, path: str | Path) -> None:
    val[["id"]].to_csv(path, index=False)


def _prior(scores) -> dict[str, float]:
    counts = Counter(int(s) for s in scores)
    total = sum(counts.values()) or 1
    return {str(label): counts.get(label, 0) / total for label in LABELS}


def class_prior(train: pd.DataFrame) -> dict:
    """Score shares overall and per criterion text (the runtime's fallback when a row cannot be scored)."""
    from submission.sections import parse_prompt

    criteria = [parse_prompt(p).criterion for p in train["prompt"]]
    by_criterion = {}
    for criterion in sorted(set(criteria)):
        by_criterion[criterion] = _prior(s for s, c in zip(train["score"], criteria, strict=True) if c == criterion)
    return {"overall": _prior(train["score"]), "by_criterion": by_criterion}


def oversample(frame: pd.DataFrame, seed: int) -> pd.DataFrame:
    """Repeat rows of minority scores (sampled with a seed) until every score has the majority's count."""
    rng = np.random.default_rng(seed)
    target = frame["score"].value_counts().max()
    parts = [frame]
    for _, group in frame.groupby("score", sort=True):
        extra = target - len(group)
        if extra > 0:
            parts.append(group.iloc[rng.integers(0, len(group), size=extra)])
    return pd.concat(parts, ignore_index=True)


def class_weights(scores) -> dict[int, float]:
    """Inverse-frequency weights, mean 1 over the rows (so the loss scale stays comparable)."""
    counts = Counter(int(s) for s in scores)
    n, k = sum(counts.values()), len(counts)
    return {label: n / (k * count) for label, count in counts.items()}
