"""The contest entry points end to end on the tiny model."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from submission.data import read_predictions_csv
from submission.prompts.sections import parse_prompt
from submission.runtime.run_meta import RunMeta

ROOT = Path(__file__).resolve().parents[2]


def run(args, env_extra=None):
    env = {**os.environ, "PYTHON": sys.executable, **(env_extra or {})}
    return subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_run_sh_writes_a_valid_predictions_file(tiny_model_dir, synth_dir, tmp_path):
    pred = tmp_path / "predictions.csv"
    proc = run(["./run.sh", str(synth_dir / "test.csv"), str(pred), "--model-dir", str(tiny_model_dir)])
    assert proc.returncode == 0, proc.stderr
    test = pd.read_csv(synth_dir / "test.csv", dtype=str, keep_default_na=False)
    got = read_predictions_csv(pred)
    assert got["id"].tolist() == test["id"].tolist()
    for prompt, score in zip(test["prompt"], got["score"], strict=True):
        assert score in parse_prompt(prompt).allowed
    meta = json.loads((tmp_path / "predictions_meta.json").read_text())
    assert meta["rows"] == len(test) and meta["engine"] == "hf"
    # The file is exactly the RunMeta schema: it reads back into it and writes out the same.
    assert RunMeta.from_dict(meta).to_dict() == meta
    with pytest.raises(TypeError):
        RunMeta.from_dict({**meta, "surprise": 1})
    with pytest.raises((TypeError, KeyError)):
        RunMeta.from_dict({k: v for k, v in meta.items() if k != "fallback_rows"})


def test_baseline_flags_and_env_var_pick_the_model(tiny_model_dir, synth_dir, tmp_path):
    pred = tmp_path / "p.csv"
    proc = run([sys.executable, "submission/run_optimized.py", "--test_path", str(synth_dir / "test.csv"),
                "--pred_path", str(pred)], {"AIJ_MODEL_DIR": str(tiny_model_dir)})
    assert proc.returncode == 0, proc.stderr
    assert len(read_predictions_csv(pred)) == len(pd.read_csv(synth_dir / "test.csv"))


def test_missing_prompt_column_exits_2_with_one_line(tiny_model_dir, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("id,text\n1,hello\n")
    proc = run(["./run.sh", str(bad), str(tmp_path / "p.csv"), "--model-dir", str(tiny_model_dir)])
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("error: ") and "missing column(s) prompt" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "p.csv").exists()


def test_run_sh_without_arguments_prints_usage():
    proc = run(["./run.sh"])
    assert proc.returncode == 2 and "usage" in proc.stderr
