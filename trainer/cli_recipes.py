"""``python -m trainer advanced ...``: recipes over train -> merge -> evaluate (k-fold, ensembles, HPO, hard rounds).

    python -m trainer advanced kfold 5 --train-path data/train.csv --base-model runs/tiny --set max_steps=40

The flag forms README spells (``--kfold 5``, ``--ensemble A --ensemble B``, ``--augment``...) are read as the
subcommands they name; trainer/cli.py mounts :data:`advanced_app` on the app.
"""

from __future__ import annotations

import typer
from typer.core import TyperGroup

from trainer.cli_options import (  # noqa: F401
    TrainingOptions,
    UserError,
    _checked,
    _device_option,
    _engine_option,
    _require_run,
    _training_options,
    _unsloth_calls,
)
from trainer.training.config import presets_help  # the --experiment help is made from the preset list

_MODE_FLAGS = {"--kfold": "kfold", "--hpo": "hpo", "--hard-rounds": "hard-rounds", "--ensemble": "ensemble"}
_MODE_SWITCHES = {"--augment": "augment", "--curriculum": "curriculum"}
_HARD_ROUND_FLAGS = ("--hard-folds", "--hard-share", "--hard-boost")
_ONE_MODE = "choose exactly one of --augment, --curriculum, --hpo N, --ensemble CONFIG..., --kfold K, --hard-rounds N"


def advanced_args(args: list[str]) -> list[str]:
    """``advanced``'s arguments in subcommand form: ``--kfold 5 REST`` -> ``kfold 5 REST``, ``--ensemble A
    --ensemble B REST`` -> ``ensemble A B REST``, ``--augment REST`` -> ``augment REST``; already a subcommand (or
    ``--help``): unchanged. The flag forms take exactly one mode; ``--hard-*`` flags only with ``--hard-rounds``."""
    if not args or not args[0].startswith("-") or "--help" in args:
        return args
    modes: dict[str, list[str]] = {}
    rest: list[str] = []
    tokens = iter(args)
    for token in tokens:
        name, has_value, value = token.partition("=")
        if name in _MODE_FLAGS:
            modes.setdefault(_MODE_FLAGS[name], []).append(value if has_value else next(tokens, ""))
        elif token in _MODE_SWITCHES:
            modes.setdefault(_MODE_SWITCHES[token], [])
        else:
            rest.append(token)
    if len(modes) != 1:
        raise UserError(_ONE_MODE)
    [(mode, values)] = modes.items()
    stray = next((t.partition("=")[0] for t in rest if t.partition("=")[0] in _HARD_ROUND_FLAGS), None)
    if mode != "hard-rounds" and stray:
        raise UserError(f"{stray}: only with --hard-rounds N (this call runs {mode})")
    return [mode, *values, *rest]


class _AdvancedCommands(TyperGroup):
    """``advanced``'s group: reads the flag forms as their subcommands (:func:`advanced_args`)."""

    def parse_args(self, ctx, args):
        return super().parse_args(ctx, advanced_args(list(args)))


advanced_app = typer.Typer(
    cls=_AdvancedCommands,
    help="Recipes over train -> merge -> evaluate: K-fold, fitted ensembles, hyper-parameter search, hard-example "
         "rounds. One recipe per call; the last stdout line is the folder written.",
    no_args_is_help=True,
)
_BASE_PRESET = typer.Option("1", "--experiment", help=f"Base preset: {presets_help()}.")


def _require_train_csv(options: TrainingOptions) -> None:
    if not options.train_path.is_file():
        raise UserError(f"--train-path {options.train_path}: file not found")


def _recipe_config(options: TrainingOptions, extra: tuple[str, ...] = ()):
    """The recipe's base TrainConfig; the train CSV must exist."""
    _require_train_csv(options)
    return options.resolve(extra=extra)


@advanced_app.command("kfold")
@_training_options(_BASE_PRESET, paths_required=True)
def advanced_kfold(options: TrainingOptions,
                   folds: int = typer.Argument(..., min=2, help="K: folds (alias: --kfold K).")) -> None:
    """K-fold training; each fold validates on its held-out rows, oof_predictions.csv has one row per id."""
    from trainer.recipes.advanced import kfold

    typer.echo(str(kfold(_recipe_config(options), folds)))


@advanced_app.command("ensemble")
@_training_options(_BASE_PRESET, paths_required=True)
def advanced_ensemble(options: TrainingOptions, members: list[str] = typer.Argument(
        ..., help="Member presets (--experiment values) or YAML files over --experiment, one per member (alias: "
                  "--ensemble MEMBER, repeated).")) -> None:
    """Train the members on one validation split, fit blend weights and thresholds there; writes ensemble.json."""
    from trainer.recipes.advanced import ensemble
    from trainer.training.config import EXPERIMENTS

    _require_train_csv(options)
    configs = []
    for i, member in enumerate(members):
        if member in EXPERIMENTS:
            configs.append(options.resolve(member))
        else:
            member_config = options.resolve(config=member)
            configs.append(member_config.model_copy(update={"run_name": f"{member_config.name}_m{i}"}))
    typer.echo(str(ensemble(configs, options.output_dir / "ensemble")))


@advanced_app.command("hpo")
@_training_options(_BASE_PRESET, paths_required=True)
def advanced_hpo(options: TrainingOptions,
                 trials: int = typer.Argument(..., min=1, help="Optuna trials (alias: --hpo N).")) -> None:
    """Optuna search with pruning over LoRA rank/alpha, lr, epochs and balancing; writes hpo_best.json."""
    from trainer.recipes.advanced import hpo

    typer.echo(str(hpo(_recipe_config(options), trials)))


@advanced_app.command("hard-rounds")
@_training_options(_BASE_PRESET, paths_required=True)
def advanced_hard_rounds(
    options: TrainingOptions,
    rounds: int = typer.Argument(..., min=1, help="Trainings; before each next one the train rows with the highest "
                                 "out-of-fold loss are up-weighted (alias: --hard-rounds N)."),
    hard_folds: int = typer.Option(2, "--hard-folds", min=2, help="Folds over the train split for the out-of-fold loss."),
    hard_share: float = typer.Option(0.25, "--hard-share", min=0.0, max=1.0, help="Share of train rows up-weighted."),
    hard_boost: float = typer.Option(2.0, "--hard-boost", min=1.0, help="Loss weight of the up-weighted rows."),
) -> None:
    """Hard-example rounds; prints each round's metrics on the shared validation split (hard_rounds.json)."""
    import json

    from trainer.recipes.hard_examples import HARD_ROUNDS_NAME, format_rounds, hard_rounds

    out = hard_rounds(_recipe_config(options), rounds, hard_folds, hard_share, hard_boost)
    typer.echo(format_rounds(json.loads((out / HARD_ROUNDS_NAME).read_text(encoding="utf-8"))))
    typer.echo(str(out))


def _one_setting_run(setting: str, other: str) -> None:
    """``advanced --augment`` / ``--curriculum``: one run of ``train --set SETTING=true``, named ``<run>_SETTING``."""

    @advanced_app.command(setting, hidden=True, help=f"One run of train --set {setting}=true, named <run>_{setting} "
                          f"(alias: --{setting}).")
    @_training_options(_BASE_PRESET, paths_required=True)
    def run(options: TrainingOptions) -> None:
        from trainer.recipes.pipeline import train_merge_evaluate

        base = _recipe_config(options, extra=(f"{setting}=true", f"{other}=false"))
        base = base.model_copy(update={"run_name": f"{base.resolved_run_name()}_{setting}"})
        typer.echo(str(train_merge_evaluate(base).path))


_one_setting_run("augment", "curriculum")
_one_setting_run("curriculum", "augment")
