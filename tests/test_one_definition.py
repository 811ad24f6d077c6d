"""Each choice is declared once and every CLI and reader uses that declaration (the way vLLM's CLI is EngineArgs).

Engine names and devices (submission/engines/protocol.py, submission/engines/devices.py), the per-label probability columns
(submission/scoring/probabilities.py), the ensemble file name (submission/choice/autopick.py), augmented-row id suffixes
(trainer/data/augment.py) and the presets (trainer/training/config.py): the CLIs are checked through their parsers, and the
source tree is checked for a second spelling of the literal.
"""

from __future__ import annotations

import argparse
import ast
from pathlib import Path

import click
import pytest
import typer.main
from typer.testing import CliRunner

from submission.cli import build_parser, check_flags
from submission.engines.devices import DEVICE_CHOICES, device_problem
from submission.engines.protocol import ENGINE_CHOICES, engine_problem
from trainer.cli import app

ROOT = Path(__file__).resolve().parent.parent
runner = CliRunner()


def _trainer_commands_with(flag: str) -> dict[str, click.Option]:
    """'command path' -> its option spelled ``flag``, over every command of ``python -m trainer``."""
    found = {}

    def walk(command, path):
        for param in command.params:
            if flag in getattr(param, "opts", ()):
                found[" ".join(path)] = param
        for name, sub in getattr(command, "commands", {}).items():
            walk(sub, [*path, name])

    walk(typer.main.get_command(app), [])
    return found


def _runtime_args(**flags) -> argparse.Namespace:
    args = build_parser().parse_args(["--test_path", "t.csv", "--pred_path", "p.csv"])
    vars(args).update(flags)
    return args


def test_every_engine_flag_takes_the_runtime_engine_names():
    options = _trainer_commands_with("--engine")
    assert set(options) == {"distill", "evaluate"}
    for path, option in options.items():
        assert option.default in ENGINE_CHOICES and ", ".join(ENGINE_CHOICES) in option.help, path
        result = runner.invoke(app, [*path.split(), "--engine", "onnx"])
        assert (result.exit_code, result.stderr) == (2, f"error: {engine_problem('onnx')}\n"), path
    assert [check_flags(_runtime_args(engine=name)) for name in ENGINE_CHOICES] == [None] * len(ENGINE_CHOICES)
    assert check_flags(_runtime_args(engine="onnx")) == engine_problem("onnx") == "--engine 'onnx': choose auto, hf, vllm"


@pytest.mark.parametrize("device", ["gpu0", "cuda:", "CPU", "cuda:1x"])
def test_an_invalid_device_is_one_error_line_and_exit_2_in_every_cli(device):
    options = _trainer_commands_with("--device")
    assert set(options) == {"bench", "distill", "evaluate"}
    for path, option in options.items():
        assert DEVICE_CHOICES in option.help, path
        result = runner.invoke(app, [*path.split(), "--device", device])
        assert (result.exit_code, result.stderr) == (2, f"error: {device_problem(device)}\n"), path
    assert check_flags(_runtime_args(device=device)) == device_problem(device)


def test_valid_devices_pass_everywhere():
    for device in ("auto", "cpu", "cuda", "cuda:0", "cuda:12"):
        assert device_problem(device) is None and check_flags(_runtime_args(device=device)) is None


def test_every_experiment_flag_names_every_preset_from_the_preset_list():
    from trainer.training.config import EXPERIMENTS

    options = _trainer_commands_with("--experiment")
    assert {"train", "advanced kfold", "advanced ensemble", "advanced hpo", "advanced hard-rounds"} <= set(options)
    for path, option in options.items():
        assert [f"{key}={preset.summary}" in option.help for key, preset in EXPERIMENTS.items()] == [True] * len(
            EXPERIMENTS), path
    assert "1=LoRA baseline" in options["train"].help and "all=1+2+3+4" in options["train"].help


# -- the source tree spells each literal in one place ----------------------------------------------------------
def _sources():
    for folder in ("submission", "trainer", "build", "bench"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            yield path.relative_to(ROOT).as_posix(), ast.parse(path.read_text(encoding="utf-8"))


def _where(predicate) -> set[str]:
    return {name for name, tree in _sources() if any(predicate(node) for node in ast.walk(tree))}


def _constant(node, values) -> bool:
    return isinstance(node, ast.Constant) and node.value in values


def test_the_probability_column_format_is_spelled_once():
    def spells_p_label(node):
        return isinstance(node, ast.JoinedStr) and node.values and _constant(node.values[0], {"p_"})

    assert _where(spells_p_label) == {"submission/scoring/probabilities.py"}


def test_the_ensemble_file_name_is_spelled_once():
    assert _where(lambda node: _constant(node, {"ensemble.json"})) == {"submission/choice/autopick.py"}


def test_augmented_id_suffixes_are_spelled_once():
    assert _where(lambda node: _constant(node, {"#aug", "#neg", "#na", "#noref", "#"})) == {"trainer/data/augment.py"}


def test_the_engine_names_are_listed_once():
    def lists_engines(node):
        return isinstance(node, ast.Tuple | ast.List | ast.Set) and {"hf", "vllm"} <= {
            e.value for e in node.elts if isinstance(e, ast.Constant)}

    assert _where(lists_engines) == {"submission/engines/protocol.py"}
