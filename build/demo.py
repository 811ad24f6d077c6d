#!/usr/bin/env python3
"""The embedded demo: the whole pipeline offline on CPU, from nothing to a graded submission.

    python build/demo.py --out demo_out          # what `make demo` runs (~2 minutes on 2 cores)
    python build/demo.py --out demo_out --fast   # the CI smoke variant (fewer rows and steps, one entry point)

synthetic data -> tiny base model -> train --experiment demo (merge + evaluate) -> bundle -> grade (netns when
root and available, else none) -> report --html (one page: calibration, bias checks, per-criterion agreement) ->
the grade table and where every artefact is, the HTML report last. Each step is the same command a
user would type; nothing is downloaded. Each step's progress (the trainer's step lines, the grader's per-chunk
lines) is passed through on stderr as it comes; a failing step ends the demo with its last stderr lines.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from collections import deque
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script outside the installed project: trainer/ owns the run-folder layout
    sys.path.append(str(ROOT))
from trainer.training.rundir import RunDir  # noqa: E402

TAIL_LINES = 40  # of a failing step's stderr, repeated under the failure so the cause is not scrolled away


def echo_lines(pipe, tail: deque) -> None:
    """Pass a step's stderr through line by line (indented under its title), keeping the last lines in ``tail``."""
    for line in iter(pipe.readline, ""):
        line = line.rstrip("\n").rsplit("\r", 1)[-1]  # a progress bar's redraws: the last one
        tail.append(line)
        print(f"   {line}", file=sys.stderr, flush=True)


def step(title: str, command: list[str], env: dict) -> str:
    """Run one pipeline command, its stderr shown as it comes; returns its stdout; stops the demo with its stderr
    tail on failure (a grade that ran but found the bundle invalid or late, exit 1 or 3, is not a failure here)."""
    print(f"\n== {title}\n$ {' '.join(command)}", file=sys.stderr, flush=True)
    start = time.perf_counter()
    tail: deque = deque(maxlen=TAIL_LINES)
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            errors="replace")
    reader = threading.Thread(target=echo_lines, args=(proc.stderr, tail), daemon=True)
    reader.start()
    stdout = proc.stdout.read()  # the step's result (the run folder, the grade table); stderr drains meanwhile
    returncode = proc.wait()
    reader.join()
    if returncode != 0 and not (title.startswith("grade") and returncode in (1, 3)):
        print(f"-- last {len(tail)} stderr lines of '{title}':", *tail, sep="\n", file=sys.stderr)
        raise SystemExit(f"demo failed at '{title}' (exit {returncode})")
    print(f"   done in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    return stdout


def isolation_mode() -> str:
    if os.geteuid() == 0 and subprocess.run(["unshare", "--net", "true"], capture_output=True).returncode == 0:
        return "netns"
    return "none"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("demo_out"), help="folder for every artefact")
    parser.add_argument("--fast", action="store_true", help="CI smoke variant: 300 rows, 60 steps, graded through run.sh only")
    parser.add_argument("--rows", type=int, default=None, help="synthetic train rows (default 1000, fast 300)")
    parser.add_argument("--base-model", type=Path, default=None,
                        help="an existing base model folder to fine-tune (default: build the tiny random Qwen3 into "
                             "OUT/tiny-base)")
    args = parser.parse_args(argv)
    out = args.out.resolve()
    rows = args.rows or (300 if args.fast else 1000)
    py = sys.executable
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "PYTHONUNBUFFERED": "1"}
    started = time.perf_counter()
    data, runs, dist = out / "data", out / "runs", out / "dist"
    base = args.base_model.resolve() if args.base_model else out / "tiny-base"
    step("synthetic data", [py, "-m", "trainer", "synth", str(data), "--rows", str(rows), "--seed", "1"], env)
    if args.base_model is None:
        step("tiny base model", [py, "-m", "trainer", "tiny-model", str(base)], env)
    train = [py, "-m", "trainer", "train", "--experiment", "demo", "--train-path", str(data / "train.csv"),
             "--base-model", str(base), "--output-dir", str(runs)]
    if args.fast:
        train += ["--set", "max_steps=60", "--set", "save_steps=1000"]
    run = RunDir(step("train + merge + evaluate", train, env).strip().splitlines()[-1])
    bundle = dist / "submission.zip"
    step("bundle", [py, "build/bundle.py", "--runs", str(runs), "--out", str(bundle)], env)
    isolation = isolation_mode()
    graded = step(f"grade ({isolation})", [py, "build/grade.py", "--bundle", str(bundle), "--test",
                                           str(data / "test.csv"), "--gold", str(data / "gold.csv"), "--isolation",
                                           isolation, "--time-limit", "600", "--out-dir", str(dist / "grade"),
                                           *(["--entry", "run.sh"] if args.fast else [])], env)
    html = out / "report.html"
    step("report (html)", [py, "-m", "trainer", "report", str(runs), "--html", str(html)], env)
    report = json.loads((dist / "grade" / "grade_report.json").read_text(encoding="utf-8"))
    print("\n" + graded)
    print(f"demo finished in {time.perf_counter() - started:.0f} s")
    for name, path in [("train/test/gold CSVs", data), ("base model", base), ("run dir", run.path),
                       ("merged model", run.merged), ("validation report", run.report_path),
                       ("plot images", run.plots), ("submission zip", bundle),
                       ("grade report", dist / "grade" / "grade_report.json"), ("HTML report", html)]:
        print(f"  {name:<22} {path}")
    return 0 if report["valid"] else 1


if __name__ == "__main__":
    sys.exit(main())
