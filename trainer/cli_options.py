"""What the trainer's commands share: the user-error type, the --device/--engine options (declared once) and the
training options (preset, paths, --set) that make a TrainConfig (trainer/cli.py, trainer/cli_recipes.py)."""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass
from pathlib import Path

import typer


class UserError(Exception):
    """A mistake the user can fix; the message is the whole ``error:`` line (what is wrong and what to do)."""



def _checked(problem):
    """A typer callback that passes the value through, or raises the UserError ``problem(value)`` names."""

    def check(value):
        message = problem(value)
        if message:
            raise UserError(message)
        return value

    return check


def _device_option():
    """``--device``, declared once for every command that has it; validated by the runtime's own rule."""
    from submission.engines.devices import DEVICE_CHOICES, device_problem

    return typer.Option("auto", "--device", help=f"{DEVICE_CHOICES}.", callback=_checked(device_problem))


def _no_prefix_sharing_option():
    """``--no-prefix-sharing``, as the runtime's flag of that name (submission/engines/prefix_sharing.py)."""
    return typer.Option(False, "--no-prefix-sharing", help="Score every row on its own (comparisons, debugging): by "
                        "default rows sharing a long prefix (one answer judged on several criteria) compute it once; "
                        "the probabilities are the same either way.")


def _engine_option(default: str, help: str):
    """``--engine``: the runtime's engine names (submission/engines/protocol.py), validated by the runtime's own rule."""
    from submission.engines.protocol import ENGINE_CHOICES, engine_problem

    return typer.Option(default, "--engine", help=f"{', '.join(ENGINE_CHOICES)}: {help}",
                        callback=_checked(engine_problem))



def _require_run(run_dir: Path):
    """The RunDir at ``run_dir``, or exit 2 when it is not a run folder."""
    from trainer.training.rundir import RunDir

    run = RunDir(run_dir)
    if not run.is_run():
        raise UserError(f"{run_dir}: not a run folder (no {run.RECORD})")
    return run


def _unsloth_calls(config) -> str:
    """The Unsloth calls a run of ``config`` makes, keywords resolved (dtype as picked on this machine)."""
    import json

    import torch

    from trainer.training import backend_unsloth
    from trainer.training.rundir import RunDir
    from trainer.training.train import pick_precision, torch_dtype

    if config.precision == "auto" and not torch.cuda.is_available():
        dtype = "bf16 where the GPU supports it, else fp16 (precision auto, picked on the GPU)"
    else:
        dtype = torch_dtype(pick_precision(config))
    calls = backend_unsloth.resolved_calls(config, dtype, RunDir(config.run_dir()).merged)
    return "Unsloth calls (trainer/training/backend_unsloth.py):\n" + json.dumps(calls, indent=2, ensure_ascii=False)


@dataclass(frozen=True)
class TrainingOptions:
    """The options every training command takes (``train`` and each ``advanced`` recipe), declared once below."""

    experiment: str
    train_path: Path | None
    base_model: str | None
    output_dir: Path
    config: Path | None
    overrides: list[str] | None
    split_by: str | None

    def resolve(self, experiment: str | None = None, config: Path | None = None, extra: tuple[str, ...] = (),
                **settings):
        """The TrainConfig: preset (``experiment``, default the option's) -> ``config`` (default ``--config``) ->
        ``--set`` (then ``extra``) -> these paths and ``settings``; a bad setting raises ConfigError."""
        from trainer.training.config import resolve_config

        return resolve_config(
            experiment or self.experiment, config or self.config, [*(self.overrides or []), *extra],
            train_path=str(self.train_path) if self.train_path else None, base_model=self.base_model,
            output_dir=str(self.output_dir), split_by=self.split_by, **settings,
        )


def _training_options(experiment, paths_required: bool):
    """Give a command the :class:`TrainingOptions` flags; it receives them as one ``options`` argument.

    ``experiment`` is the command's own ``--experiment`` option; ``paths_required``: ``--train-path`` and
    ``--base-model`` must be given on the command line (``train`` also takes them from the config).
    """
    required = ... if paths_required else None
    shared = {
        "experiment": (str, experiment),
        "train_path": (Path | None, typer.Option(required, "--train-path", help="Train CSV (id,prompt,score).")),
        "base_model": (str | None, typer.Option(required, "--base-model",
                                                help="Base model folder or HF id (offline cache).")),
        "output_dir": (Path, typer.Option(Path("runs"), "--output-dir", help="Runs go to OUTPUT_DIR/RUN_NAME.")),
        "config": (Path | None, typer.Option(None, "--config", help="YAML whose settings override the preset.")),
        "overrides": (list[str] | None, typer.Option(None, "--set", help="key=value override (repeatable), e.g. "
                                                     "--set max_steps=50.")),
        "split_by": (str | None, typer.Option(None, "--split-by", help="Validate on unseen groups: criterion or "
                                              "family (whole groups held out, in validation and in folds; "
                                              "val_fraction is then the share of groups). Default: config split_by.")),
    }

    def wrap(command):
        keyword = inspect.Parameter.KEYWORD_ONLY
        own = [p.replace(kind=keyword) for p in inspect.signature(command).parameters.values() if p.name != "options"]
        added = [inspect.Parameter(name, keyword, default=option, annotation=kind) for name, (kind, option) in shared.items()]

        @functools.wraps(command)
        def with_options(**kwargs):
            options = TrainingOptions(**{name: kwargs.pop(name) for name in shared})
            return command(options=options, **kwargs)

        with_options.__signature__ = inspect.Signature([*added, *own])
        return with_options

    return wrap


