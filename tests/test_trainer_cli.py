"""The trainer CLI's contract: every preset validates, every command has --help, user errors exit 2 in one line."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from trainer.cli import app
from trainer.config import CONFIG_DIR, EXPERIMENTS

runner = CliRunner()


@pytest.mark.parametrize("command", ["train", "merge", "evaluate", "report", "advanced", "tiny-model", "synth", "distill"])
def test_every_command_has_help(command):
    result = runner.invoke(app, [command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


@pytest.mark.parametrize("experiment", list(EXPERIMENTS))
def test_every_preset_validates_in_dry_run(experiment):
    result = runner.invoke(app, ["train", "--experiment", experiment, "--dry-run", "--base-model", "m"])
    assert result.exit_code == 0, result.output
    config = json.loads(result.output)
    assert config["name"] == EXPERIMENTS[experiment] and config["base_model"] == "m"


def test_every_shipped_yaml_opens_with_purpose_and_command_and_validates():
    from trainer.config import build_config, read_yaml

    files = sorted(CONFIG_DIR.glob("*.yaml"))
    assert len(files) >= 5
    for path in files:
        head = path.read_text(encoding="utf-8").splitlines()[:3]
        assert head[0].startswith("# ") and any("python -m trainer" in line for line in head), path
        layers = [read_yaml(CONFIG_DIR / "demo.yaml"), read_yaml(path)]
        build_config(layers)


def test_presets_keep_the_seed_intent_and_fix_its_mistakes():
    from trainer.config import resolve_config

    one, two, three, four = (resolve_config(e) for e in "1234")
    assert (one.method, one.lora_r, one.learning_rate, one.epochs) == ("lora", 16, 2e-4, 3)
    assert (two.lora_r, two.epochs) == (32, 4) and two.balance in ("oversample", "class_weights")
    assert three.method == "full"  # never qlora: a 4-bit base cannot be fully fine-tuned or merged to fp16
    assert (four.lora_r, four.max_tokens, four.scheduler) == (64, 3072, "cosine_with_min_lr")
    assert four.min_lr_ratio > 0 and four.warmup_ratio > 0


def test_set_overrides_are_typed():
    result = runner.invoke(app, ["train", "--experiment", "demo", "--dry-run", "--set", "learning_rate=1e-3",
                                 "--set", "modules_to_save=[embed_tokens]", "--set", "gradient_checkpointing=true"])
    config = json.loads(result.output)
    assert config["learning_rate"] == 1e-3 and config["modules_to_save"] == ["embed_tokens"]
    assert config["gradient_checkpointing"] is True


@pytest.mark.parametrize("args, fragment", [
    (["--set", "bogus=1"], "bogus"),
    (["--set", "lora_r=0"], "lora_r"),
    (["--set", "metric=banana"], "metric"),
    (["--set", "noequals"], "key=value"),
])
def test_bad_settings_exit_2_with_one_line(args, fragment):
    result = runner.invoke(app, ["train", "--experiment", "demo", "--dry-run", *args])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0]


def test_unknown_experiment_and_missing_train_file_exit_2(tmp_path):
    assert runner.invoke(app, ["train", "--experiment", "9", "--dry-run"]).exit_code == 2
    result = runner.invoke(app, ["train", "--experiment", "demo", "--train-path", str(tmp_path / "nope.csv"),
                                 "--base-model", "m"])
    assert result.exit_code == 2 and "not found" in result.stderr


def test_merge_evaluate_report_refuse_non_run_dirs(tmp_path):
    for command in (["merge", str(tmp_path)], ["evaluate", str(tmp_path)], ["report", str(tmp_path)]):
        result = runner.invoke(app, command)
        assert result.exit_code == 2, command
