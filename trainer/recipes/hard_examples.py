"""Hard-example rounds: train, find the train rows the model gets most wrong out of fold, up-weight them, retrain.

    python -m trainer advanced --hard-rounds 2 --experiment demo --train-path data/synth/train.csv --base-model runs/tiny

Round 1 is an ordinary training run. Before each next round, K models trained on K-1 folds of the TRAIN split
(never the validation rows) score their held-out fold; a row's difficulty is its out-of-fold loss
-log p(gold). The ``share`` hardest rows get weight ``boost`` in the next round's loss (the others 1). Every round
trains from the base model on the same rows and is evaluated on the same validation split, so the rounds compare
like with like; ``hard_rounds.json`` holds each round's metrics and the rows it up-weighted.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from trainer.data.split import read_id_csv
from trainer.training.config import TrainConfig

log = logging.getLogger("trainer.recipes.hard_examples")

HARD_ROUNDS_NAME = "hard_rounds.json"  # the rounds' record in the recipe's folder: each round's validation metrics
_SHOWN = ("accuracy", "qwk", "mae", "macro_f1")


def out_of_fold_losses(probs: np.ndarray, gold) -> np.ndarray:
    """Per-row -log p(gold) from [N, 5] probabilities (LABELS order); a zero probability counts as 1e-9."""
    from submission.scoring.decoding import LABELS

    columns = [LABELS.index(int(g)) for g in gold]
    picked = np.asarray(probs, dtype=np.float64)[np.arange(len(columns)), columns]
    return -np.log(np.clip(picked, 1e-9, 1.0))


def hard_row_weights(ids, losses: np.ndarray, share: float, boost: float) -> dict[str, float]:
    """``boost`` for the ``share`` of rows with the highest loss (at least one row), 1 for the rest, by id."""
    ids = [str(i) for i in ids]
    count = max(1, int(round(share * len(ids))))
    hardest = set(np.argsort(-np.asarray(losses), kind="stable")[:count].tolist())
    return {row_id: (boost if i in hardest else 1.0) for i, row_id in enumerate(ids)}


def _train_merge_evaluate(config: TrainConfig, run_dir: Path, val_rows: pd.DataFrame, weights) -> dict:
    """One round's (or fold's) run in ``run_dir`` on these validation rows; returns its validation report."""
    from trainer.recipes.pipeline import train_merge_evaluate

    return train_merge_evaluate(config.model_copy(update={"output_dir": str(run_dir.parent), "run_name": run_dir.name}),
                                validation_ids=val_rows["id"], row_weights=weights).report


def oof_losses(config: TrainConfig, train: pd.DataFrame, folds: int, weights, work_dir: Path) -> np.ndarray:
    """Out-of-fold -log p(gold) for every row of ``train`` (k-fold over those rows only)."""
    from submission.scoring.probabilities import PROBABILITY_COLUMNS
    from trainer.data.split import fold_indices
    from trainer.training.rundir import RunDir

    work_dir.mkdir(parents=True, exist_ok=True)
    train_csv = work_dir / "train.csv"
    train[["id", "prompt", "score"]].to_csv(train_csv, index=False)
    fold_config = config.model_copy(update={"train_path": str(train_csv)})
    losses = np.zeros(len(train))
    for i, (_, held) in enumerate(fold_indices(train, folds, config.seed, config.split_by)):
        rows = train.iloc[held]
        fold_dir = work_dir / f"fold{i}"
        _train_merge_evaluate(fold_config, fold_dir, rows, weights)
        # evaluate_run scored the held-out fold (its validation split) once: reuse those probabilities.
        scored = read_id_csv(RunDir(fold_dir).val_predictions_path).set_index("id")
        probs = scored.loc[rows["id"], list(PROBABILITY_COLUMNS)].to_numpy()
        losses[held] = out_of_fold_losses(probs, rows["score"])
    return losses


def hard_rounds(config: TrainConfig, rounds: int, folds: int = 2, share: float = 0.25, boost: float = 2.0) -> Path:
    """``rounds`` trainings, each after the first with the previous round's hardest rows up-weighted."""
    from trainer.data.training_data import load_and_split

    out_dir = config.run_dir().with_name(f"{config.resolved_run_name()}_hard{rounds}")
    out_dir.mkdir(parents=True, exist_ok=True)
    split = load_and_split(config)
    train, val = split.train, split.val
    record = {"rounds": [], "folds": folds, "share": share, "boost": boost, "metric": config.metric}
    weights: dict[str, float] | None = None
    for number in range(1, rounds + 1):
        report = _train_merge_evaluate(config, out_dir / f"round{number}", val, weights)
        hard = sorted(i for i, w in (weights or {}).items() if w != 1.0)
        record["rounds"].append({"round": number, "run_dir": str(out_dir / f"round{number}"),
                                 "up_weighted_rows": len(hard), **{k: report.get(k) for k in _SHOWN}})
        log.info("hard round %d: %s", number, ", ".join(f"{k} {report.get(k)}" for k in _SHOWN))
        (out_dir / HARD_ROUNDS_NAME).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        if number < rounds:
            losses = oof_losses(config, train, folds, weights, out_dir / f"round{number}_oof")
            weights = hard_row_weights(train["id"], losses, share, boost)
            pd.DataFrame({"id": train["id"], "oof_loss": losses, "weight": [weights[str(i)] for i in train["id"]]}
                         ).to_csv(out_dir / f"round{number + 1}_weights.csv", index=False)
    return out_dir


def format_rounds(record: dict) -> str:
    """One line per round: metrics of the round's model on the shared validation split."""
    lines = ["round | up-weighted rows | " + " | ".join(_SHOWN)]
    for r in record["rounds"]:
        values = " | ".join("-" if r.get(k) is None else f"{r[k]:.4f}" for k in _SHOWN)
        lines.append(f"{r['round']} | {r['up_weighted_rows']} | {values}")
    return "\n".join(lines)
