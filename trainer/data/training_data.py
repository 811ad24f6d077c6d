"""The rows one training run fits on: read, split into train/validation, then augmented (pure pandas, no model).

Order: read (with soft labels: unlabelled rows allowed) -> split the gold-labelled rows (stratified, or by unseen
criterion/family) -> train split + augmentations (paraphrase/noise/hard negatives, reference dropout) + unlabelled
rows -> oversampling. Validation rows are never augmented and always carry a gold score.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from trainer.training.config import TrainConfig

log = logging.getLogger("trainer.data.training_data")


@dataclass
class SplitRows:
    """Gold-labelled train and validation rows, plus rows that only have a teacher's soft label."""

    train: pd.DataFrame
    val: pd.DataFrame
    unlabelled: pd.DataFrame
    soft: pd.DataFrame | None = None
    max_score: int = 3  # 4: the CSV holds 0-4 rows (its max_score column, import-pollux --keep-0-4): a -1..4 judge


def load_and_split(config: TrainConfig, saved_val_ids: Path | None = None, validation_ids=None) -> SplitRows:
    """Read the train CSV (joined with ``soft_labels`` when set) and split its gold-labelled rows.

    Validation rows: ``validation_ids`` when given (k-fold, hard rounds), else the ids saved in ``saved_val_ids``
    when that file exists (a resumed run), else a seeded split (stratified, or by unseen ``split_by`` groups).
    """
    from submission.data import DataError, max_score_of, read_train_csv
    from trainer.data import split

    soft = None
    if config.soft_labels:
        from submission.scoring.probabilities import PROBABILITY_COLUMNS
        from trainer.recipes.distill import read_rows_with_soft_labels, read_soft_labels

        frame = read_rows_with_soft_labels(config.train_path, config.soft_labels)
        soft = read_soft_labels(config.soft_labels)
        labelled = frame[frame["score"].notna()].drop(columns=list(PROBABILITY_COLUMNS)).reset_index(drop=True)
        labelled["score"] = labelled["score"].astype(int)
        unlabelled = frame[frame["score"].isna()].drop(columns=list(PROBABILITY_COLUMNS)).reset_index(drop=True)
        log.info("soft labels %s: %d gold rows, %d rows with soft labels only", config.soft_labels, len(labelled),
                 len(unlabelled))
    else:
        labelled = read_train_csv(config.train_path)
        unlabelled = labelled.iloc[0:0]
    max_score = max_score_of(labelled)
    if max_score == 4 and (config.soft_labels or config.judge_head):
        raise DataError(f"{config.train_path}: 0-4 rows (max_score 4) train the LM path with gold labels only; soft "
                        "labels (p_-1..p_3) and the judge head score -1..3")
    if validation_ids is not None:
        ids = set(map(str, validation_ids))
        log.info("validation split: the %d given ids (the other %d rows train)", len(ids), len(labelled) - len(ids))
        mask = labelled["id"].isin(ids)
        train, val = labelled[~mask].reset_index(drop=True), labelled[mask].reset_index(drop=True)
    elif saved_val_ids is not None and Path(saved_val_ids).is_file():
        log.info("validation split: reusing %s (resumed run)", saved_val_ids)
        train, val = split.split_by_ids(labelled, saved_val_ids)
    elif config.split_by != "none":
        train, val = split.group_split(labelled, config.val_fraction, config.seed, config.split_by)
        log.info("validation split: %d rows of %s groups training never sees", len(val), config.split_by)
    else:
        train, val = split.stratified_split(labelled, config.val_fraction, config.seed)
    return SplitRows(train, val, unlabelled, soft, max_score)


def split_record(config: TrainConfig, rows: SplitRows) -> dict | None:
    """Which groups each side holds (``training_config.json``), so evaluation can tell unseen groups apart."""
    if config.split_by == "none":
        return None
    from trainer.data.split import row_groups

    train_groups = sorted(set(row_groups(pd.concat([rows.train, rows.unlabelled])["prompt"], config.split_by)))
    val_groups = sorted(set(row_groups(rows.val["prompt"], config.split_by)))
    return {"split_by": config.split_by, "train_groups": train_groups, "val_groups": val_groups}


def fit_rows(config: TrainConfig, rows: SplitRows, row_weights: dict[str, float] | None = None) -> pd.DataFrame:
    """The rows to tokenise: train split + augmentations + unlabelled rows (+ soft labels, + ``row_weight``).

    ``row_weights`` (by id; hard-example rounds) multiply each row's loss weight; augmented copies inherit their
    source row's weight.
    """
    from trainer.data import split

    fit = rows.train
    if config.augment:
        from trainer.data.augment import augment_frame

        fit = augment_frame(fit, config.seed, config.augment_copies, config.hard_negatives)
    if config.augment_not_applicable > 0:
        from trainer.data.augment import not_applicable_rows

        # Built from the train split only: validation makes its own (trainer/evaluation/evaluate.py), test never.
        extra = not_applicable_rows(rows.train, config.augment_not_applicable, config.seed)
        fit = pd.concat([fit, extra], ignore_index=True)
        log.info("not-applicable augmentation: %d rows labelled -1 added to %d train rows", len(extra), len(rows.train))
    fit = pd.concat([fit, rows.unlabelled], ignore_index=True)
    if config.reference_dropout > 0:
        from trainer.data.augment import reference_dropout_frame

        before = len(fit)
        fit = reference_dropout_frame(fit, config.reference_dropout, config.seed)
        log.info("reference dropout: %d copies without the reference section", len(fit) - before)
    if config.balance == "oversample":
        labelled = fit[fit["score"].notna()]
        fit = pd.concat([split.oversample(labelled, config.seed), fit[fit["score"].isna()]], ignore_index=True)
    if rows.soft is not None:
        from trainer.recipes.distill import attach_soft_labels

        fit = attach_soft_labels(fit, rows.soft)
    if row_weights:
        from trainer.data.augment import source_id

        fit = fit.assign(row_weight=[row_weights.get(source_id(i), 1.0) for i in fit["id"]])
    return fit.reset_index(drop=True)
