"""Injected model faults: corrupt weights and a missing tokenizer are skipped; nothing usable means exit 2, no file."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def models(tmp_path, tiny_model_dir):
    root = tmp_path / "models"
    shutil.copytree(tiny_model_dir, root / "good")
    corrupt = root / "corrupt"
    shutil.copytree(tiny_model_dir, corrupt)
    weights = corrupt / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])  # truncated file: a broken download or a full disk
    (corrupt / "validation_report.json").write_text(json.dumps({"qwk": 0.9}))
    no_tokenizer = root / "no_tokenizer"
    shutil.copytree(tiny_model_dir, no_tokenizer)
    for path in no_tokenizer.glob("tokenizer*"):
        path.unlink()
    (no_tokenizer / "validation_report.json").write_text(json.dumps({"qwk": 0.95}))
    return root


@pytest.fixture
def test_csv(tmp_path, synth_dir):
    path = tmp_path / "test.csv"
    pd.read_csv(synth_dir / "test.csv", dtype=str).head(8).to_csv(path, index=False)
    return path


def run(test_csv, pred, models):
    env = {**os.environ, "PYTHON": sys.executable}
    return subprocess.run(["./run.sh", str(test_csv), str(pred), "--models", str(models), "--quiet"], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=300)


def test_broken_candidates_are_skipped_and_named_in_meta(models, test_csv, tmp_path):
    pred = tmp_path / "pred.csv"
    proc = run(test_csv, pred, models)
    assert proc.returncode == 0, proc.stderr
    meta = json.loads((tmp_path / "pred_meta.json").read_text())
    assert meta["model_dirs"] == [str(models / "good")]
    assert {Path(s["path"]).name for s in meta["skipped_models"]} == {"corrupt", "no_tokenizer"}
    assert len(pd.read_csv(pred)) == 8


def test_no_loadable_model_exits_2_without_a_file(models, test_csv, tmp_path):
    shutil.rmtree(models / "good")
    pred = tmp_path / "pred.csv"
    proc = run(test_csv, pred, models)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("error: no model could be loaded")
    assert "Traceback" not in proc.stderr
    assert not pred.exists()


def test_pickled_only_model_is_refused(tmp_path, test_csv, tiny_model_dir):
    root = tmp_path / "models" / "pickled"
    shutil.copytree(tiny_model_dir, root)
    (root / "model.safetensors").rename(root / "pytorch_model.bin")
    proc = run(test_csv, tmp_path / "pred.csv", tmp_path / "models")
    assert proc.returncode == 2 and not (tmp_path / "pred.csv").exists()
