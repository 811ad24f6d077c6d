"""Advanced recipes built from the one train -> merge -> evaluate sequence (trainer/recipes/pipeline.py): k-fold, ensembles,
hyper-parameter search.

    python -m trainer advanced kfold 5 --experiment 1 --train-path train.csv --base-model Qwen/Qwen3-0.6B
    python -m trainer advanced ensemble 1 4 --train-path train.csv --base-model Qwen/Qwen3-0.6B
    python -m trainer advanced hpo 20 --experiment 1 --train-path train.csv --base-model Qwen/Qwen3-0.6B

(README's flag forms ``advanced --kfold 5 ...``, ``--ensemble 1 --ensemble 4``, ``--hpo 20`` run the same recipes.)

Every model emits predictions keyed by id in one format (trainer/evaluation/evaluate.py:save_predictions), and ensembles are
fitted on those.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from trainer.data.split import read_id_csv
from trainer.training.config import TrainConfig
from trainer.training.rundir import RunDir

log = logging.getLogger("trainer.recipes.advanced")


class EnsembleError(ValueError):
    """The members cannot be blended as given (they were validated on different splits)."""


def kfold(config: TrainConfig, k: int) -> Path:
    """K stratified folds; fold i trains on the other folds and holds fold i out as its validation split.

    Each fold is scored once, by ``evaluate_run`` on its held-out rows; ``oof_predictions.csv`` (by id) is the
    concatenation of the folds' ``val_predictions.csv`` files that scoring wrote. With ``split_by``
    (criterion/family) the folds are grouped too: no group is on both sides of a fold.
    """
    from submission.data import read_train_csv
    from trainer.data.split import fold_indices
    from trainer.recipes.pipeline import train_merge_evaluate

    frame = read_train_csv(config.train_path)
    base_dir = config.run_dir().with_name(f"{config.resolved_run_name()}_kfold{k}")
    base_dir.mkdir(parents=True, exist_ok=True)
    parts = []
    for i, (_, held) in enumerate(fold_indices(frame, k, config.seed, config.split_by)):
        log.info("fold %d/%d: training on %d rows, validating on the %d held-out rows", i + 1, k,
                 len(frame) - len(held), len(held))
        fold_config = config.model_copy(update={"output_dir": str(base_dir), "run_name": f"fold{i}"})
        fold = RunDir(train_merge_evaluate(fold_config, validation_ids=frame["id"].iloc[held]).path)
        parts.append(read_id_csv(fold.val_predictions_path))
    oof = pd.concat(parts, ignore_index=True)
    path = base_dir / "oof_predictions.csv"
    oof.to_csv(path, index=False)
    log.info("%s: out-of-fold predictions for %d ids (each fold's validation predictions, scored once)", path,
             len(oof))
    return base_dir


def fit_blend_weights(prob_sets: list[np.ndarray], y_true, allowed, metric: str, steps: int = 10):
    """Simplex grid (step 1/steps) over member weights maximising ``metric`` under argmax; returns (weights, value)."""
    from itertools import product

    from submission.scoring.decoding import decide
    from trainer.evaluation.evaluate import metric_objective

    objective = metric_objective(metric)
    best, best_value = None, -np.inf
    for combo in product(range(steps + 1), repeat=len(prob_sets)):
        if sum(combo) != steps:
            continue
        weights = np.asarray(combo, dtype=float) / steps
        blended = sum(w * p for w, p in zip(weights, prob_sets, strict=True))
        value = objective(y_true, decide(blended, allowed))
        if value > best_value:
            best, best_value = weights, value
    return best, best_value


def ensemble(configs: list[TrainConfig], out_dir: Path) -> Path:
    """Train each config on the same validation split, fit blend weights + thresholds there, write ensemble.json."""
    from submission.choice.autopick import ENSEMBLE_NAME
    from submission.data import read_train_csv
    from submission.scoring.decoding import decide
    from trainer.data.augment import not_applicable_rows
    from trainer.data.split import split_by_ids
    from trainer.evaluation.evaluate import fit_decision, metric_objective, score_rows
    from trainer.recipes.pipeline import train_merge_evaluate

    out_dir.mkdir(parents=True, exist_ok=True)
    # the members are scored below on one shared validation split, not evaluated one by one
    runs = [RunDir(train_merge_evaluate(config, evaluate=False).path) for config in configs]
    frame = read_train_csv(configs[0].train_path)
    val = split_by_ids(frame, runs[0].val_ids_path)[1]
    for run in runs[1:]:
        if run.read_val_ids() != set(val["id"]):
            raise EnsembleError(f"{run.path}: a different validation split; give every member the same seed/val_fraction")
    # With augment_not_applicable (first member's share and seed) the blend also gets a P(-1) cut, fitted as
    # evaluate_run fits a single run's: on the validation rows plus not-applicable rows made from them.
    augmented = not_applicable_rows(val, configs[0].augment_not_applicable, configs[0].seed)
    prompts, n = [*val["prompt"], *augmented["prompt"]], len(val)
    prob_sets, allowed = [], None
    for run, config in zip(runs, configs, strict=True):
        probs, allowed, _ = score_rows(run.merged, prompts, config.max_tokens)
        prob_sets.append(probs)
    y_true = val["score"].astype(int).tolist()
    metric = configs[0].metric
    weights, _ = fit_blend_weights([p[:n] for p in prob_sets], y_true, allowed[:n], metric)
    blended = sum(w * p for w, p in zip(weights, prob_sets, strict=True))
    decision, minus_one = fit_decision(blended[:n], allowed[:n], y_true, metric,
                                       (blended[n:], allowed[n:]) if len(augmented) else None)
    value = metric_objective(metric)(y_true, decide(blended[:n], allowed[:n], decision))
    from submission.choice.metrics import higher_is_better

    record = {
        "members": [{"model": _relative(run.merged, out_dir), "weight": float(w)}
                    for run, w in zip(runs, weights, strict=True)],
        "decision": decision.to_dict(),
        "metric": metric,
        "value": float(value if higher_is_better(metric) else -value),
        **({"not_applicable": minus_one} if minus_one else {}),
    }
    path = out_dir / ENSEMBLE_NAME
    path.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return path


def _relative(target: Path, start: Path) -> str:
    import os

    return os.path.relpath(target.resolve(), start.resolve())


def hpo(config: TrainConfig, trials: int) -> Path:
    """Optuna TPE over LoRA rank/alpha, lr, epochs and balancing on the saved validation split (one fold).

    Pruning: every logged training loss is reported to the trial; a trial the median pruner stops ends training at
    once (no merge, no evaluation). A trial whose training diverges (non-finite loss) is pruned too.
    """
    import optuna
    from transformers import TrainerCallback

    from submission.choice.metrics import higher_is_better
    from trainer.recipes.pipeline import train_merge_evaluate
    from trainer.training.hf_trainer import TrainingDiverged

    out_dir = config.run_dir().with_name(f"{config.resolved_run_name()}_hpo")
    out_dir.mkdir(parents=True, exist_ok=True)
    sign = 1.0 if higher_is_better(config.metric) else -1.0

    class PruneOnLoss(TrainerCallback):
        def __init__(self, trial):
            self.trial, self.pruned = trial, False

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                self.trial.report(-float(logs["loss"]), state.global_step)
                if self.trial.should_prune():
                    self.pruned, control.should_training_stop = True, True

    def objective(trial: optuna.Trial) -> float:
        r = trial.suggest_categorical("lora_r", [8, 16, 32, 64])
        update = {
            "lora_r": r,
            "lora_alpha": r * trial.suggest_categorical("alpha_over_r", [1, 2]),
            "learning_rate": trial.suggest_float("learning_rate", 1e-5, 5e-3, log=True),
            "epochs": float(trial.suggest_int("epochs", 1, 4)),
            "balance": trial.suggest_categorical("balance", ["none", "oversample", "class_weights"]),
            "output_dir": str(out_dir), "run_name": f"trial{trial.number}",
        }
        pruner = PruneOnLoss(trial)
        try:
            trained = train_merge_evaluate(config.model_copy(update=update), callbacks=[pruner],
                                           proceed=lambda: not pruner.pruned)
        except TrainingDiverged as err:  # a learning rate the search should leave, not the end of the search
            log.warning("trial %d: %s", trial.number, err)
            raise optuna.TrialPruned() from None
        if pruner.pruned:
            raise optuna.TrialPruned()
        value = trained.report.get(config.metric)
        return float("-inf") if value is None else sign * float(value)

    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=config.seed),
                                pruner=optuna.pruners.MedianPruner(n_startup_trials=2))
    study.optimize(objective, n_trials=trials)
    best = {"params": study.best_params, "value": sign * study.best_value, "trial": study.best_trial.number,
            "metric": config.metric}
    (out_dir / "hpo_best.json").write_text(json.dumps(best, indent=2) + "\n", encoding="utf-8")
    return out_dir
