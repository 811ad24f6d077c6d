"""The run folder has one owner: trainer/training/rundir.py names its files, and the trainer's modules import without a cycle."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from submission.choice.autopick import MERGED_DIR, VALIDATION_REPORT_NAME
from trainer.training.rundir import RunDir

ROOT = Path(__file__).resolve().parents[3]
RUN_FILE_NAMES = {RunDir.RECORD, RunDir.METRICS, RunDir.VAL_IDS, RunDir.PRIOR, RunDir.VAL_PREDICTIONS,
                  RunDir.CHECKPOINTS, RunDir.ADAPTER, RunDir.PLOTS, MERGED_DIR, VALIDATION_REPORT_NAME}
OWNERS = {"trainer/training/rundir.py", "submission/choice/autopick.py"}  # autopick: the names the runtime reads too


def _sources():
    for folder in ("trainer", "build", "submission"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            yield str(path.relative_to(ROOT)), ast.parse(path.read_text(encoding="utf-8"))


def _docstrings(tree) -> set[int]:
    nodes = [n for n in ast.walk(tree) if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef))]
    return {id(n.body[0].value) for n in nodes if n.body and isinstance(n.body[0], ast.Expr)}


def test_each_run_folder_name_is_spelled_in_one_module():
    spelled: dict[str, list[str]] = {}
    for name, tree in _sources():
        docs = _docstrings(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and id(node) not in docs and node.value in RUN_FILE_NAMES:
                spelled.setdefault(node.value, []).append(name)
    assert set(spelled) == RUN_FILE_NAMES  # the check sees the definitions
    for value, files in spelled.items():
        assert len(files) == 1 and files[0] in OWNERS, (value, files)


def test_record_update_keeps_fields_and_scrubs_secrets(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_secret_value_123")
    run = RunDir(tmp_path / "exp")
    run.write_record({"config": {"name": "exp", "note": "token hf_secret_value_123"}, "rows": 3})
    record = run.update_record(global_steps=5)
    assert record == run.read_record() and record["rows"] == 3 and record["global_steps"] == 5
    assert "hf_secret_value_123" not in run.record_path.read_text() and "<HF_TOKEN>" in run.record_path.read_text()
    run.start_metrics()
    run.append_metrics({"step": 1, "loss": 2.5})
    run.append_metrics({"step": 2, "loss": 2.0})
    assert [r["step"] for r in run.read_metrics()] == [1, 2]


def test_report_is_written_beside_the_run_and_into_merged(tmp_path):
    run = RunDir(tmp_path / "exp")
    run.merged.mkdir(parents=True)
    assert run.read_report() == {}
    run.write_report({"qwk": 0.5})
    assert json.loads(run.merged_report_path.read_text()) == json.loads(run.report_path.read_text()) == {"qwk": 0.5}
    assert run.read_report() == {"qwk": 0.5}


@pytest.mark.parametrize("layout, found", [({"a/training_config.json", "b/x.txt"}, ["a"]), (set(), [])])
def test_all_in_lists_folders_with_a_training_record(tmp_path, layout, found):
    for rel in layout:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("{}")
    assert [r.name for r in RunDir.all_in(tmp_path)] == found
    assert RunDir.of_model_dir(tmp_path / "a" / MERGED_DIR).path == tmp_path / "a"
    assert RunDir.of_model_dir(tmp_path / "models" / "a") is None
