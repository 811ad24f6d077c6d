"""A 100k-row test file through run_optimized.py: a complete, valid predictions file even when time runs out.

With a tiny --time-limit nearly every row takes the prior; the file still has every id once, in the input order,
each score inside its own row's rubric, and the meta file counts the fallbacks by reason. Prompts are tokenised
only when their chunk is scored, so a large file does not outlast the limit before the first deadline check.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from submission.data import read_predictions_csv
from submission.prompts.sections import parse_prompt

ROOT = Path(__file__).resolve().parents[2]
# Three rubrics (0..3, -1..3 and 0..1) so "inside the row's rubric" is a real check.
BINARY = ("### Задание для оценки:\nСтолица Франции?\n\n### Ответ для оценки:\nПариж\n\n### Критерий оценки:\n"
          "Правильность\n\n### Шкала оценивания по критерию:\n0: неверно\n1: верно\n")


def big_test_csv(path: Path, synth_dir: Path, rows: int) -> pd.DataFrame:
    """``rows`` rows cycling the synthetic prompts plus a binary-rubric one; ids unsorted; every 997th prompt empty."""
    base = pd.read_csv(synth_dir / "test.csv", dtype=str, keep_default_na=False)["prompt"].tolist() + [BINARY]
    prompts = [base[i % len(base)] for i in range(rows)]
    for i in range(0, rows, 997):
        prompts[i] = ""
    frame = pd.DataFrame({"id": [f"q{(i * 7919) % rows:06d}" for i in range(rows)], "prompt": prompts})
    frame.to_csv(path, index=False)
    return frame


def run_big(tmp_path, synth_dir, tiny_model_dir, rows: int) -> None:
    frame = big_test_csv(tmp_path / "test.csv", synth_dir, rows)
    pred = tmp_path / "pred.csv"
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "submission/run_optimized.py", "--test_path", str(tmp_path / "test.csv"), "--pred_path",
         str(pred), "--model-dir", str(tiny_model_dir), "--device", "cpu", "--time-limit", "2", "--quiet"],
        cwd=ROOT, capture_output=True, text=True, timeout=600, env={**os.environ, "PYTHONPATH": str(ROOT)})
    seconds = time.perf_counter() - started
    assert proc.returncode == 0, proc.stderr
    got = read_predictions_csv(pred)
    assert got["id"].tolist() == frame["id"].tolist()  # every id once, in the input order
    rubrics = {p: parse_prompt(p).allowed for p in set(frame["prompt"])}
    assert all(s in rubrics[p] for p, s in zip(frame["prompt"], got["score"], strict=True))
    assert {0, 1} <= set(got["score"]) and len(set(got["score"])) >= 2
    meta = json.loads((tmp_path / "pred_meta.json").read_text())
    reasons = meta["fallback_reasons"]
    empty = (frame["prompt"] == "").sum()
    assert meta["rows"] == rows and reasons["empty_prompt"] == empty
    assert meta["fallback_rows"] == sum(reasons.values()) >= 0.9 * rows
    assert reasons["deadline"] > 0
    print(f"{rows} rows: {seconds:.1f}s end to end, meta since_start {meta['timings_s']['since_start']}s")


def test_hundred_thousand_rows_yield_a_complete_valid_file(tmp_path, synth_dir, tiny_model_dir):
    # Measured on 2 shared cores: ~10.5 s for the run (imports, read, parse, load, 100k priors, write), ~13 s in all;
    # the time is printed, never asserted (a busy machine is not a defect).
    run_big(tmp_path, synth_dir, tiny_model_dir, 100_000)
