"""The embedded demo's fast variant runs the whole pipeline and ends with a valid graded submission, showing each
step's progress as it comes; a failing step ends the demo with its stderr tail."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.build_scripts import load_script

ROOT = Path(__file__).resolve().parents[2]
demo = load_script("demo")


def _section(stderr: str, title: str) -> str:
    """One step's stderr as the user sees it: from its '== title' line up to its 'done in' line."""
    start = stderr.index(f"\n== {title}")
    return stderr[start:stderr.index("   done in", start)]


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
    html = out / "report.html"  # the demo ends by saying where the one-page report is
    assert proc.stdout.strip().splitlines()[-1].split() == ["HTML", "report", str(html.resolve())]
    assert "Best run: demo" in html.read_text(encoding="utf-8")
    # Progress reached the user while the steps ran: the trainer's step lines (every logging step, 20 of 60) inside
    # the train step, the runtime's per-chunk lines inside the grade step, each before that step's 'done in'.
    train = _section(proc.stderr, "train + merge + evaluate")
    assert len(re.findall(r"step \d+/60 \| loss [\d.]+ \| lr \S+ \| tok/s [\d,]+ \|", train)) >= 3, train[-3000:]
    graded = _section(proc.stderr, "grade (")
    assert re.search(r"\[run\.sh [\d.]+/600 s\] .*rows \(\d+%\), .* tokens/s", graded), graded[-3000:]


def test_step_shows_stderr_as_it_comes_and_returns_stdout(capsys):
    code = "import sys; print('working: 1 of 2', file=sys.stderr, flush=True); print('the result')"
    assert demo.step("a step", [sys.executable, "-c", code], {}) == "the result\n"
    err = capsys.readouterr().err
    assert err.index("   working: 1 of 2") < err.index("   done in")


def test_failing_step_ends_the_demo_with_its_stderr_tail(capsys):
    code = "import sys\nfor i in range(100): print(f'line {i}', file=sys.stderr)\nsys.exit(1)"
    with pytest.raises(SystemExit, match=r"demo failed at 'a step' \(exit 1\)"):
        demo.step("a step", [sys.executable, "-c", code], {})
    err = capsys.readouterr().err
    tail = err[err.index(f"-- last {demo.TAIL_LINES} stderr lines of 'a step':"):]
    assert "line 99" in tail and f"line {100 - demo.TAIL_LINES}\n" in tail and f"line {99 - demo.TAIL_LINES}\n" not in tail
    assert "done in" not in err
