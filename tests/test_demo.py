"""The embedded demo's fast variant runs the whole pipeline and ends with a valid graded submission."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_fast_demo_end_to_end(tmp_path, tiny_model_dir):
    out = tmp_path / "demo"  # the session's tiny model as the base: `trainer tiny-model` has its own tests
    proc = subprocess.run([sys.executable, "build/demo.py", "--out", str(out), "--fast", "--base-model",
                           str(tiny_model_dir)], cwd=ROOT,
                          capture_output=True, text=True, timeout=3600)  # a hang guard
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((out / "dist" / "grade" / "grade_report.json").read_text())
    assert report["valid"] and report["metrics"]["n"] > 0
    assert list(report["entries"]) == ["run.sh"]  # --fast grades one entry point; test_grade.py covers both
    assert (out / "runs" / "demo" / "merged" / "validation_report.json").is_file()
    assert "submission zip" in proc.stdout
