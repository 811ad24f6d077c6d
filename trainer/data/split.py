"""Train/validation split, data provenance and class priors: pure functions over the train frame.

The validation split is saved by id (trainer/training/rundir.py: ``RunDir.write_val_ids``) so every run, merge and evaluation
compares on the same rows.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from submission.scoring.decoding import LABELS


def read_id_csv(path: str | Path, **kwargs) -> pd.DataFrame:
    """``pd.read_csv`` with the ``id`` column read as the text in the file (every trainer-side CSV read of ids).

    pandas reads ``NA``, ``None``, ``nan``, ``null``... as missing by default; an id is a string, so those stay
    themselves there (other columns keep pandas' missing-value rule: an empty probability is still NaN).
    """
    from pandas._libs.parsers import STR_NA_VALUES

    columns = pd.read_csv(path, nrows=0, encoding=kwargs.get("encoding")).columns
    na_values = {c: sorted(STR_NA_VALUES) for c in columns if c != "id"}
    return pd.read_csv(path, dtype={"id": str}, keep_default_na=False, na_values=na_values, **kwargs)


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
    """The split a run saved: rows whose id is in the ``id`` column of ``val_ids_path`` are validation."""
    ids = set(read_id_csv(val_ids_path)["id"])
    mask = frame["id"].isin(ids)
    return frame[~mask].reset_index(drop=True), frame[mask].reset_index(drop=True)


def _prior(scores) -> dict[str, float]:
    counts = Counter(int(s) for s in scores)
    total = sum(counts.values()) or 1
    labels = (*LABELS, 4) if counts.get(4) else LABELS  # 0-4 rows (import-pollux --keep-0-4): their share too
    return {str(label): counts.get(label, 0) / total for label in labels}


def class_prior(train: pd.DataFrame) -> dict:
    """Score shares overall and per criterion text (the runtime's fallback when a row cannot be scored)."""
    from submission.prompts.sections import parse_prompt

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


# -- unseen-group validation (arXiv 2403.02839: fine-tuned judges generalise poorly to unseen criteria) -----------
SPLIT_BY = ("none", "criterion", "family")


def row_groups(prompts, split_by: str) -> list[str]:
    """Each prompt's group: its criterion text or its task family (submission.prompts.sections.parse_prompt)."""
    from submission.prompts.sections import parse_prompt

    if split_by not in SPLIT_BY[1:]:
        raise ValueError(f"unknown split_by {split_by!r}; choose criterion or family")
    sections = [parse_prompt(p) for p in prompts]
    return [s.criterion if split_by == "criterion" else s.family for s in sections]


def _check_group_count(groups, needed: int, split_by: str) -> None:
    from submission.data import DataError

    found = len(set(groups))
    if found < needed:
        raise DataError(f"split_by {split_by}: the data has {found} distinct {split_by} value(s), {needed} needed; "
                        "use split_by none or more varied data")


def group_split(frame: pd.DataFrame, val_fraction: float, seed: int, split_by: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Seeded split where every ``split_by`` group is wholly train or wholly validation.

    ``val_fraction`` is the share of GROUPS held out (at least one, never all), so the validation rows are exactly
    the rows of groups training never saw.
    """
    from sklearn.model_selection import GroupShuffleSplit

    groups = row_groups(frame["prompt"], split_by)
    _check_group_count(groups, 2, split_by)
    count = len(set(groups))
    held = min(max(1, round(val_fraction * count)), count - 1)
    splitter = GroupShuffleSplit(n_splits=1, test_size=held, random_state=seed)
    train_index, val_index = next(splitter.split(frame, groups=groups))
    return frame.iloc[train_index].reset_index(drop=True), frame.iloc[val_index].reset_index(drop=True)


def fold_indices(frame: pd.DataFrame, k: int, seed: int, split_by: str = "none") -> list[tuple[np.ndarray, np.ndarray]]:
    """(train, held-out) row positions of ``k`` folds: stratified by score, and with ``split_by`` also grouped, so
    no group is on both sides of any fold (sklearn StratifiedGroupKFold)."""
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    scores = frame["score"].astype(int).to_numpy()
    if split_by == "none":
        return list(StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(frame, scores))
    groups = row_groups(frame["prompt"], split_by)
    _check_group_count(groups, k, split_by)
    return list(StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed).split(frame, scores, groups))
