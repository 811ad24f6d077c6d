"""`accelerate launch` with 2 CPU processes (DDP over gloo) trains, and only the main process writes the run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.slow
def test_two_process_accelerate_run_finishes(tiny_model_dir, synth_dir, tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    # --multi_gpu is accelerate's DDP (torchrun) launcher; on a CPU-only machine it starts gloo ranks.
    command = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "2", "--num_machines", "1",
               "--multi_gpu", "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "trainer", "train",
               "--experiment", "demo", "--train-path", str(synth_dir / "train.csv"), "--base-model",
               str(tiny_model_dir), "--output-dir", str(tmp_path / "runs"), "--set", "max_steps=6",
               "--set", "batch_size=4", "--set", "logging_steps=2"]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=1800)  # a hang guard, not a speed check
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = Path(result.stdout.strip().splitlines()[-1])
    record = json.loads((run_dir / "training_config.json").read_text())
    assert record["world_size"] == 2 and record["parallel_mode"] == "distributed" and record["global_steps"] == 6
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in lines if "loss" in r]
    assert steps == [2, 4, 6]  # one writer (rank 0), not one line per rank
    # Two ranks x 4 rows x 6 steps: the data was sharded, not trained twice over.
    assert abs(lines[-1]["epoch"] - 2 * 4 * 6 / record["rows"]["train"]) < 0.01  # 1 rank: half that
    assert (run_dir / "merged" / "config.json").is_file() and (run_dir / "validation_report.json").is_file()
