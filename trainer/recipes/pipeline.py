"""train -> merge -> evaluate, the one sequence every command runs (`train`, `advanced`, hard-example rounds).

    python -m trainer train --experiment demo --train-path data/synth/train.csv --base-model runs/tiny
    python -m trainer advanced kfold 5 --experiment 1 --train-path train.csv --base-model Qwen/Qwen3-0.6B

Training runs on every rank; merging and evaluating only on the main process (a DDP launch's other ranks return
after training).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from trainer.training.config import TrainConfig


@dataclass(frozen=True)
class TrainedRun:
    """A run folder and, when it was evaluated, its ``validation_report.json`` content."""

    path: Path
    report: dict | None = None


def train_merge_evaluate(config: TrainConfig, *, resume: bool = False, validation_ids=None,
                         row_weights: dict[str, float] | None = None, callbacks: Iterable = (), merge: bool = True,
                         evaluate: bool = True, proceed: Callable[[], bool] | None = None) -> TrainedRun:
    """Train ``config`` (:func:`trainer.training.train.train_run`), merge ``merged/``, evaluate on the validation split.

    ``merge=False`` stops after training, ``evaluate=False`` after merging (an ensemble scores its members itself).
    ``proceed`` is asked after training: False (a pruned search trial, say) stops there too. ``resume``,
    ``validation_ids``, ``row_weights`` and ``callbacks`` go to ``train_run``.
    """
    from trainer.training.train import is_main_process, train_run

    run_dir = train_run(config, resume=resume, callbacks=callbacks, validation_ids=validation_ids,
                        row_weights=row_weights)
    if not (merge and is_main_process()) or (proceed is not None and not proceed()):
        return TrainedRun(run_dir)
    from trainer.training.merge import merge_run

    merge_run(run_dir)
    if not evaluate:
        return TrainedRun(run_dir)
    from trainer.evaluation.evaluate import evaluate_run

    return TrainedRun(run_dir, evaluate_run(run_dir))
