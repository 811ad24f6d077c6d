"""The trainer CLI's contract: every preset validates, every command has --help, user errors exit 2 in one line."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from trainer.cli import app
from trainer.training.config import CONFIG_DIR, EXPERIMENTS

runner = CliRunner()


@pytest.mark.parametrize("command", ["train", "merge", "evaluate", "report", "advanced", "tiny-model", "synth", "distill",
                                     "advanced kfold", "advanced ensemble", "advanced hpo", "advanced hard-rounds"])
def test_every_command_has_help(command):
    result = runner.invoke(app, [*command.split(), "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


@pytest.mark.parametrize("experiment", list(EXPERIMENTS))
def test_every_preset_validates_in_dry_run(experiment):
    result = runner.invoke(app, ["train", "--experiment", experiment, "--dry-run", "--base-model", "m"])
    assert result.exit_code == 0, result.output
    config = json.loads(result.output)
    assert config["name"] == EXPERIMENTS[experiment].file and config["base_model"] == "m"


def test_every_shipped_yaml_opens_with_purpose_and_command_and_validates():
    from trainer.training.config import build_config, read_yaml

    files = sorted(CONFIG_DIR.glob("*.yaml"))
    assert len(files) >= 5
    for path in files:
        head = path.read_text(encoding="utf-8").splitlines()[:3]
        assert head[0].startswith("# ") and any("python -m trainer" in line for line in head), path
        layers = [read_yaml(CONFIG_DIR / "demo.yaml"), read_yaml(path)]
        build_config(layers)


def test_presets_keep_the_seed_intent_and_fix_its_mistakes():
    from trainer.training.config import resolve_config

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


# -- advanced: subcommands, and every flag form README spells (tests/trainer/recipes/test_trainer_advanced.py runs two) ------------
def _recipe_calls(monkeypatch, tmp_path, args):
    """Run ``advanced ARGS`` with every recipe replaced by a recorder: (exit code, stderr, [(recipe, settings)])."""
    from trainer.recipes import advanced, hard_examples, pipeline
    from trainer.recipes.pipeline import TrainedRun

    calls = []

    def record(name, out):
        def recipe(config, *args):
            configs = config if isinstance(config, list) else [config]
            calls.append((name, [c.model_dump() for c in configs], [str(a) for a in args]))
            (tmp_path / "out").mkdir(exist_ok=True)
            return out
        return recipe

    monkeypatch.setattr(advanced, "kfold", record("kfold", tmp_path / "out"))
    monkeypatch.setattr(advanced, "hpo", record("hpo", tmp_path / "out"))
    monkeypatch.setattr(advanced, "ensemble", record("ensemble", tmp_path / "out" / "ensemble.json"))
    monkeypatch.setattr(hard_examples, "hard_rounds", record("hard_rounds", tmp_path / "out"))
    (tmp_path / "out").mkdir(parents=True, exist_ok=True)
    (tmp_path / "out" / hard_examples.HARD_ROUNDS_NAME).write_text('{"rounds": []}')
    monkeypatch.setattr(pipeline, "train_merge_evaluate",
                        lambda config: record("train", TrainedRun(tmp_path / "out"))(config))
    train_csv = tmp_path / "train.csv"
    train_csv.write_text("id,prompt,score\n")
    common = ["--train-path", str(train_csv), "--base-model", "m", "--output-dir", str(tmp_path / "runs")]
    result = runner.invoke(app, ["advanced", *args, *common])
    return result.exit_code, result.stderr, calls


@pytest.mark.parametrize("flags, subcommand", [
    (["--kfold", "5", "--experiment", "1"], ["kfold", "5", "--experiment", "1"]),
    (["--kfold=2", "--experiment", "demo", "--set", "max_steps=2"], ["kfold", "2", "--experiment", "demo", "--set",
                                                                       "max_steps=2"]),
    (["--kfold", "5", "--split-by", "family", "--experiment", "1"], ["kfold", "5", "--split-by", "family",
                                                                     "--experiment", "1"]),
    (["--hard-rounds", "2", "--experiment", "1", "--hard-share", "0.5"], ["hard-rounds", "2", "--experiment", "1",
                                                                         "--hard-share", "0.5"]),
    (["--hpo", "20", "--experiment", "1"], ["hpo", "20", "--experiment", "1"]),
    (["--ensemble", "demo", "--ensemble", "trainer/configs/demo_full.yaml", "--experiment", "demo"],
     ["ensemble", "demo", "trainer/configs/demo_full.yaml", "--experiment", "demo"]),
    (["--ensemble", "1", "--ensemble", "4"], ["ensemble", "1", "4"]),
    (["--augment", "--experiment", "demo"], ["augment", "--experiment", "demo"]),
    (["--curriculum", "--set", "augment=true"], ["curriculum", "--set", "augment=true"]),
])
def test_advanced_flag_forms_run_the_same_recipe_as_the_subcommands(flags, subcommand, tmp_path, monkeypatch):
    old = _recipe_calls(monkeypatch, tmp_path / "old", flags)
    new = _recipe_calls(monkeypatch, tmp_path / "new", subcommand)
    assert old[0] == new[0] == 0, (old[1], new[1])
    strip = json.dumps(old[2]).replace(str(tmp_path / "old"), "T")
    assert len(old[2]) == 1 and strip == json.dumps(new[2]).replace(str(tmp_path / "new"), "T")


def test_advanced_recipes_get_the_settings_they_got_before(tmp_path, monkeypatch):
    _, _, [(name, [config], args)] = _recipe_calls(monkeypatch, tmp_path, ["--kfold", "3", "--experiment", "demo"])
    assert (name, args, config["name"]) == ("kfold", ["3"], "demo") and config["base_model"] == "m"
    _, _, [(name, [config], args)] = _recipe_calls(monkeypatch, tmp_path, ["--hard-rounds", "2", "--hard-boost", "3"])
    assert (name, args) == ("hard_rounds", ["2", "2", "0.25", "3.0"]) and config["name"] == "exp1_lora"
    _, _, [(name, [config], _)] = _recipe_calls(monkeypatch, tmp_path, ["--augment", "--experiment", "demo"])
    assert (config["augment"], config["curriculum"], config["run_name"]) == (True, False, "demo_augment")
    _, _, [(name, [config], _)] = _recipe_calls(monkeypatch, tmp_path, ["--curriculum", "--set", "curriculum=false"])
    assert (config["augment"], config["curriculum"], config["run_name"]) == (False, True, "exp1_lora_curriculum")
    _, _, [(name, configs, _)] = _recipe_calls(monkeypatch, tmp_path, [
        "--ensemble", "demo", "--ensemble", "trainer/configs/demo_full.yaml", "--experiment", "demo"])
    assert [c["run_name"] for c in configs] == [None, "demo_full_m1"] and configs[1]["method"] == "full"


def test_hard_round_flags_with_another_recipe_are_one_error_line(tmp_path, monkeypatch):
    code, stderr, calls = _recipe_calls(monkeypatch, tmp_path, ["--experiment", "demo", "--kfold", "2",
                                                                "--hard-folds=3"])
    assert (code, calls) == (2, [])
    assert stderr.strip().splitlines() == ["error: --hard-folds: only with --hard-rounds N (this call runs kfold)"]


@pytest.mark.parametrize("flags", [[], ["--kfold", "2", "--hpo", "3"], ["--augment", "--curriculum"],
                                   ["--experiment", "1"]])
def test_advanced_flag_forms_take_exactly_one_mode(flags, tmp_path, monkeypatch):
    code, stderr, calls = _recipe_calls(monkeypatch, tmp_path, flags)
    assert code == 2 and not calls
    assert stderr.strip().splitlines() == ["error: choose exactly one of --augment, --curriculum, --hpo N, "
                                           "--ensemble CONFIG..., --kfold K, --hard-rounds N"]


@pytest.mark.parametrize("args, line", [
    (["advanced", "kfold", "2", "--train-path", "nope.csv", "--base-model", "m"], "error: --train-path nope.csv: "
                                                                                  "file not found"),
    (["tiny-model", "x", "--tokenizer", "bpe"], "error: --tokenizer 'bpe': choose tiny or qwen3"),
    (["bench", "--shape", "huge", "--device", "cpu"], "error: unknown shape 'huge'; choose qwen3-0.6b, tiny, wide, "
                                                      "qwen3-0.6b-width"),
    (["report", "--metric", "banana", "."], None),
])
def test_user_errors_are_one_error_line_and_exit_2(args, line):
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and len(result.stderr.strip().splitlines()) == 1, result.output
    assert result.stderr.startswith("error: ") and (line is None or result.stderr.strip() == line)


def test_data_and_config_errors_raised_anywhere_in_a_command_exit_2(tmp_path, monkeypatch):
    """The boundary maps DataError/ConfigError from deep inside a command, not only where a command catches them."""
    from submission.data import DataError
    from trainer.recipes import pipeline

    def broken(config, **kwargs):
        raise DataError("train.csv: row 3 has no prompt")

    monkeypatch.setattr(pipeline, "train_merge_evaluate", broken)
    train_csv = tmp_path / "train.csv"
    train_csv.write_text("id,prompt,score\n")
    result = runner.invoke(app, ["train", "--experiment", "demo", "--train-path", str(train_csv), "--base-model", "m"])
    assert result.exit_code == 2 and result.stderr.strip() == "error: train.csv: row 3 has no prompt"

    def bug(config, **kwargs):
        raise KeyError("a bug")

    monkeypatch.setattr(pipeline, "train_merge_evaluate", bug)
    result = runner.invoke(app, ["train", "--experiment", "demo", "--train-path", str(train_csv), "--base-model", "m"])
    assert result.exit_code == 1 and isinstance(result.exception, KeyError)  # bugs raise
