"""Training as a hostile user would run it: run names that climb out, re-runs that fail, two trainings at once, ids
pandas would read as missing, secrets whose value is JSON syntax, a diverging learning rate, unusable base models.

Every case ends with one ``error:`` line and exit 2, or with the earlier run untouched; none needs a full training
(the diverging run takes a few steps of the tiny model).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from trainer.cli import app
from trainer.training.config import TrainConfig
from trainer.training.rundir import RunDir

runner = CliRunner()
NA_IDS = ["NA", "None", "nan", "null", "N/A", "NaN", "#N/A", "<NA>"]


def one_error_line(result, fragment: str, after_progress: bool = False) -> str:
    """The one ``error:`` line (``after_progress``: the last line, after the model-loading progress bars)."""
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()[-1:] if after_progress else result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


@pytest.fixture
def train_csv(tmp_path, synth_dir):
    """40 synthetic train rows, eight of them with ids pandas reads as missing by default."""
    frame = pd.read_csv(synth_dir / "train.csv", dtype=str, keep_default_na=False).head(40).copy()
    frame.loc[: len(NA_IDS) - 1, "id"] = NA_IDS
    path = tmp_path / "train.csv"
    frame.to_csv(path, index=False)
    return path


def tree_bytes(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def train_args(train_csv, base_model, out, *more):
    return ["train", "--experiment", "demo", "--train-path", str(train_csv), "--base-model", str(base_model),
            "--output-dir", str(out), *map(str, more)]


# -- 3. run names are one folder name ------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["../escaped", "/tmp/absolute", "nested/run", "..", ".hidden"])
def test_a_run_name_that_is_not_one_folder_name_is_refused_before_anything_is_written(tmp_path, train_csv,
                                                                                      tiny_model_dir, name):
    out = tmp_path / "out" / "runs"
    result = runner.invoke(app, train_args(train_csv, tiny_model_dir, out, "--run-name", name))
    one_error_line(result, "one folder name")
    assert not (tmp_path / "out").exists() and not (tmp_path / "escaped").exists()
    with pytest.raises(ValueError, match="one folder name"):
        TrainConfig(run_name=name)


# -- 4. a failing re-run leaves the previous run as it was ---------------------------------------------------------
def test_a_failing_rerun_leaves_the_previous_run_byte_for_byte(tmp_path, train_csv, tiny_model_dir, monkeypatch):
    from trainer.training import train as train_module

    config = TrainConfig(train_path=str(train_csv), base_model=str(tiny_model_dir), output_dir=str(tmp_path / "runs"),
                         name="demo", val_fraction=0.25)
    old = RunDir(config.run_dir())
    old.write_record({"config": {"name": "demo"}, "data_sha256": "old"})
    old.write_val_ids(["a", "b"])
    old.start_metrics()
    old.append_metrics({"step": 1, "loss": 0.5})
    (old.merged).mkdir()
    (old.merged / "model.safetensors").write_bytes(b"old weights")
    before = tree_bytes(old.path)

    def broken_model(config, precision):
        raise RuntimeError("the model failed to load")

    monkeypatch.setattr(train_module, "build_peft_model", broken_model)
    with pytest.raises(RuntimeError, match="failed to load"):
        train_module.train_run(config)
    assert tree_bytes(old.path) == before
    assert old.staging().read_val_ids()  # the failed attempt's records are beside it, not over it
    assert [r.name for r in RunDir.all_in(config.output_dir)] == ["demo"]  # and are not listed as a run


# -- 5. one training per run folder ------------------------------------------------------------------------------
def test_a_second_training_into_a_busy_run_folder_refuses(tmp_path, train_csv, tiny_model_dir):
    out = tmp_path / "runs"
    with RunDir(out / "demo").lock():
        result = runner.invoke(app, train_args(train_csv, tiny_model_dir, out, "--set", "max_steps=1"))
        one_error_line(result, "another training is writing")
    assert not (out / "demo").exists() and not (out / ".demo.next").exists()


# -- 8. ids are strings everywhere ---------------------------------------------------------------------------------
def test_ids_pandas_calls_missing_stay_ids_in_the_saved_split(tmp_path):
    from trainer.data.split import split_by_ids

    run = RunDir(tmp_path / "run")
    run.write_val_ids(NA_IDS)
    assert run.read_val_ids() == set(NA_IDS)
    frame = pd.DataFrame({"id": [*NA_IDS, "x"], "prompt": ["p"] * 9, "score": [1] * 9})
    train, val = split_by_ids(frame, run.val_ids_path)
    assert val["id"].tolist() == NA_IDS and train["id"].tolist() == ["x"]


def test_evaluation_scores_only_the_saved_validation_ids_when_they_look_missing(tmp_path):
    from trainer.evaluation.evaluate import select_rows

    run = RunDir(tmp_path / "run")
    run.write_val_ids(["NA", "None"])
    frame = pd.DataFrame({"id": ["NA", "None", "a", "b"], "prompt": ["p"] * 4, "score": [1] * 4})
    assert select_rows(frame, run)["id"].tolist() == ["NA", "None"]


def test_soft_labels_keep_na_like_ids(tmp_path):
    from trainer.recipes.distill import read_soft_labels

    path = tmp_path / "soft.csv"
    path.write_text("id,p_-1,p_0,p_1,p_2,p_3\nNA,0,0,0,0,1\nNone,0,1,0,0,0\n", encoding="utf-8")
    assert read_soft_labels(path)["id"].tolist() == ["NA", "None"]


def test_a_resume_on_other_data_refuses(tmp_path, train_csv, tiny_model_dir):
    out = tmp_path / "runs"
    run = RunDir(out / "demo")
    run.write_record({"config": {"name": "demo"}, "data_sha256": "0" * 64})
    before = tree_bytes(run.path)
    result = runner.invoke(app, train_args(train_csv, tiny_model_dir, out, "--resume"))
    one_error_line(result, "is not the data")
    assert tree_bytes(run.path) == before


# -- 9. secrets are scrubbed from values, not from JSON text -----------------------------------------------------
@pytest.mark.parametrize("value", ["null", "true", "false", "1234"])
def test_a_secret_whose_value_is_json_syntax_leaves_valid_records(tmp_path, monkeypatch, value):
    monkeypatch.setenv("HF_TOKEN", value)
    run = RunDir(tmp_path / "run")
    run.write_record({"config": {"soft_labels": None, "augment": True, "seed": 1234}, "note": f"token {value}"})
    run.start_metrics()
    run.append_metrics({"step": 1, "grad_norm": None, "flag": False})
    record = run.read_record()
    assert record["config"] == {"soft_labels": None, "augment": True, "seed": 1234}
    assert record["note"] == "token <HF_TOKEN>"
    assert run.read_metrics() == [{"step": 1, "grad_norm": None, "flag": False}]


def test_secret_named_variables_are_scrubbed_and_tokenizer_settings_are_not(monkeypatch):
    from trainer.training.rundir import scrub_secrets

    monkeypatch.setenv("MY_SERVICE_API_KEY", "sk-live-0123456789")
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false-positive")
    assert scrub_secrets("k=sk-live-0123456789 false-positive") == "k=<MY_SERVICE_API_KEY> false-positive"


# -- 10. a diverging training stops ----------------------------------------------------------------------------------
def test_a_diverging_training_exits_non_zero_and_writes_no_model(tmp_path, train_csv, tiny_model_dir, caplog):
    out = tmp_path / "runs"
    result = runner.invoke(app, train_args(train_csv, tiny_model_dir, out, "--set", "max_steps=4", "--set",
                                           "learning_rate=1e30", "--set", "batch_size=4", "--set", "logging_steps=1",
                                           "--set", "max_tokens=256", "--set", "modules_to_save=[]"))
    line = one_error_line(result, "training diverged", after_progress=True)
    assert "learning_rate" in line
    assert not (out / "demo").exists()  # nothing swapped in, nothing merged
    assert not any((out / ".demo.next").rglob("*.safetensors"))
    progress = [r.getMessage() for r in caplog.records if r.getMessage().startswith("step ")]
    assert progress and "loss 0.0000" not in " ".join(progress) and "nan" in progress[-1]


# -- 12. unusable inputs are one line, not a traceback ------------------------------------------------------------
def test_a_missing_base_model_folder_is_one_line(tmp_path, train_csv):
    result = runner.invoke(app, train_args(train_csv, tmp_path / "no" / "such-model", tmp_path / "runs"))
    one_error_line(result, "folder not found")
    result = runner.invoke(app, train_args(train_csv, "runs/nope", tmp_path / "runs"))  # reads as an HF id
    one_error_line(result, "cannot be loaded")


def test_a_base_model_shipped_only_as_a_pickle_is_refused(tmp_path, train_csv, tiny_model_dir):
    model = tmp_path / "pickled"
    shutil.copytree(tiny_model_dir, model)
    for weights in model.glob("*.safetensors"):
        weights.unlink()
    (model / "pytorch_model.bin").write_bytes(b"not loaded")
    result = runner.invoke(app, train_args(train_csv, model, tmp_path / "runs"))
    one_error_line(result, "only pickled weights (pytorch_model.bin)")


@pytest.mark.parametrize("setting, fragment", [("seed=1180591620717411303424", "seed"), ("seed=-1", "seed"),
                                               ("epochs=.inf", "epochs"), ("learning_rate=.nan", "learning_rate")])
def test_out_of_range_settings_are_one_line(tmp_path, train_csv, tiny_model_dir, setting, fragment):
    result = runner.invoke(app, train_args(train_csv, tiny_model_dir, tmp_path / "runs", "--set", setting))
    assert fragment in one_error_line(result, fragment)


def test_a_diverging_search_trial_is_pruned_and_the_search_goes_on(tmp_path, monkeypatch):
    from trainer.recipes import advanced, pipeline
    from trainer.training.hf_trainer import TrainingDiverged

    def train(config, **kwargs):
        if config.run_name == "trial0":
            raise TrainingDiverged("training diverged at step 3 (loss nan)")
        return pipeline.TrainedRun(Path(config.run_dir()), {"qwk": 0.5})

    monkeypatch.setattr(pipeline, "train_merge_evaluate", train)
    out = advanced.hpo(TrainConfig(output_dir=str(tmp_path / "runs"), name="demo"), 3)
    best = json.loads((out / "hpo_best.json").read_text())
    assert best["trial"] != 0 and best["value"] == 0.5


def test_weights_broken_by_the_last_step_are_never_saved(tmp_path):
    import torch

    from trainer.training.hf_trainer import TrainingDiverged
    from trainer.training.train import save_trained

    model = torch.nn.Linear(2, 2)
    with torch.no_grad():
        model.weight[0, 0] = float("nan")
    run = RunDir(tmp_path / "run")
    with pytest.raises(TrainingDiverged, match="weight weight is not finite"):
        save_trained(model, None, TrainConfig(method="full"), run, unsloth=False)
    assert not run.merged.exists() and not run.adapter.exists()


def test_resume_continues_an_interrupted_new_run_where_it_was_written(tmp_path, train_csv, tiny_model_dir,
                                                                     monkeypatch):
    """An interrupted first run lives in .NAME.next: --resume continues it there (and checks its data there)."""
    from submission.hashing import file_sha256
    from trainer.training import train as train_module

    config = TrainConfig(train_path=str(train_csv), base_model=str(tiny_model_dir), output_dir=str(tmp_path / "runs"),
                         name="demo")
    staged = RunDir(config.run_dir()).staging()
    staged.write_record({"config": {}, "data_sha256": file_sha256(train_csv)})
    seen = []
    monkeypatch.setattr(train_module, "_train_into", lambda run, *args: seen.append(run.path))
    assert train_module.train_run(config, resume=True) == config.run_dir()
    assert seen == [staged.path] and (config.run_dir() / RunDir.RECORD).is_file()  # trained there, then swapped in
