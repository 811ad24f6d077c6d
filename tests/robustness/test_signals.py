"""SIGTERM and SIGINT in every phase after the test file is read (planning models, loading the tokenizer, starting
the engine, scoring, writing): always a complete, valid predictions file, the interruption counted in the meta.

Signals are delivered in-process from hooks placed in each phase (the phase's own function, monkeypatched to send
the signal and carry on); one test sends a real signal to a real ``run.py`` while its engine starts.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from submission import cli, data
from submission.data import read_predictions_csv, read_test_rows
from submission.engines import engine_hf
from submission.prompts.sections import stated_labels
from submission.runtime import outputs, runtime
from submission.runtime.runtime import Deadline, RunSettings, predict
from submission.scoring import scorer

ROOT = Path(__file__).resolve().parents[2]
SIGNALS = ["SIGTERM", "SIGINT"]


@pytest.fixture(autouse=True)
def sigint_as_python_installs_it():
    """Each test starts with Python's own SIGINT handler, whatever the suite started with (``make test &`` starts
    it with SIGINT ignored), and leaves the handler it found; :func:`check_complete` compares with this one."""
    found = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, found)


def signal_then(real, name: str):
    """``real`` wrapped so that calling it first sends ``name`` to this process."""
    def wrapper(*args, **kwargs):
        os.kill(os.getpid(), getattr(signal, name))
        return real(*args, **kwargs)

    return wrapper


def check_complete(result, frame, name: str, unscored: int | None = None, before=signal.default_int_handler):
    assert result.ids == list(frame["id"]) and len(result.scores) == len(frame)
    assert all(s in stated_labels(p) for s, p in zip(result.scores, frame["prompt"], strict=True))
    meta = result.meta
    assert meta["interrupted"] == name
    if unscored is not None:
        assert meta["fallback_reasons"][name.lower()] == unscored == meta["fallback_rows"]
    assert signal.getsignal(signal.SIGINT) is before  # the handler installed before the run is back


@pytest.mark.parametrize("name", SIGNALS)
@pytest.mark.parametrize("phase", ["plan_models", "load_tokenizer", "engine_start"])
def test_a_signal_before_any_row_is_scored_gives_the_prior_for_every_row(tiny_model_dir, test_frame, monkeypatch,
                                                                           phase, name):
    frame = test_frame.head(6)
    if phase == "plan_models":
        monkeypatch.setattr(runtime, "plan_models", signal_then(runtime.plan_models, name))
    elif phase == "load_tokenizer":
        monkeypatch.setattr(engine_hf, "load_tokenizer", signal_then(engine_hf.load_tokenizer, name))
    else:
        monkeypatch.setattr(scorer, "_build_hf", signal_then(scorer._build_hf, name))
    result = predict(frame, RunSettings(model_dir=tiny_model_dir, device="cpu"))
    check_complete(result, frame, name, unscored=len(frame))
    assert result.meta["fallback_prior"] == "rubric_middle" and result.meta["engine"] == "none"


@pytest.mark.parametrize("name", SIGNALS)
def test_a_signal_while_scoring_keeps_the_scored_rows(tiny_model_dir, test_frame, name):
    calls = []

    def on_second_chunk():
        calls.append(1)
        if len(calls) == 2:
            os.kill(os.getpid(), getattr(signal, name))

    settings = RunSettings(model_dir=tiny_model_dir, device="cpu", chunk_tokens=2000)
    result = predict(test_frame, settings, Deadline(settings.time_limit_s, before_chunk=on_second_chunk))
    check_complete(result, test_frame, name)
    assert 0 < result.meta["fallback_reasons"][name.lower()] == result.meta["fallback_rows"] < len(test_frame)


def test_a_signal_while_the_report_prior_is_known_uses_it(tiny_model_dir, test_frame, tmp_path, monkeypatch):
    import shutil

    model = tmp_path / "m"
    shutil.copytree(tiny_model_dir, model)
    prior = {"overall": {"-1": 0.0, "0": 0.1, "1": 0.1, "2": 0.1, "3": 0.7}}
    (model / "validation_report.json").write_text(json.dumps({"qwk": 0.5, "class_prior": prior}))
    monkeypatch.setattr(scorer, "_build_hf", signal_then(scorer._build_hf, "SIGTERM"))
    result = predict(test_frame.head(4), RunSettings(models=tmp_path, device="cpu"))
    assert result.meta["fallback_prior"] == "report" and result.meta["interrupted"] == "SIGTERM"


def run_cli(*argv) -> int:
    return cli.run(cli.build_parser().parse_args([str(a) for a in argv]))


@pytest.mark.parametrize("name", SIGNALS)
@pytest.mark.parametrize("phase", ["reading", "writing"])
def test_a_signal_while_reading_or_writing_still_writes_the_whole_file(tiny_model_dir, test_frame, tmp_path,
                                                                        monkeypatch, phase, name):
    test = tmp_path / "t.csv"
    test_frame.head(5).to_csv(test, index=False)
    if phase == "reading":
        monkeypatch.setattr(data, "read_test_rows", signal_then(data.read_test_rows, name))
    else:
        monkeypatch.setattr(outputs, "write_predictions", signal_then(outputs.write_predictions, name))
    pred = tmp_path / "p.csv"
    assert run_cli("--test_path", test, "--pred_path", pred, "--model-dir", tiny_model_dir, "--device", "cpu") == 0
    assert read_predictions_csv(pred)["id"].tolist() == read_test_rows(test).ids
    meta = json.loads((tmp_path / "p_meta.json").read_text())
    if phase == "reading":  # nothing was scored: every row is counted under the signal
        assert meta["interrupted"] == name and meta["fallback_reasons"][name.lower()] == 5 == meta["fallback_rows"]
    else:  # every row was scored before the signal; the write finishes and the meta is the run's
        assert meta["interrupted"] is None and meta["fallback_rows"] == 0


DRIVER = """
import sys, time, pathlib
from submission.scoring import scorer
real = scorer._build_hf
def slow_start(*args, **kwargs):
    pathlib.Path(sys.argv[1]).write_text("starting")
    time.sleep(120)  # an engine start-up that takes minutes (vLLM); the signal lands here
    return real(*args, **kwargs)
scorer._build_hf = slow_start
from submission.cli import main
main(sys.argv[2:], prog="run.py")
"""


@pytest.mark.parametrize("name", SIGNALS)
def test_a_real_signal_during_engine_start_gives_a_complete_file(tiny_model_dir, test_frame, tmp_path, name):
    test, pred, marker = tmp_path / "t.csv", tmp_path / "p.csv", tmp_path / "started"
    test_frame.head(5).to_csv(test, index=False)
    proc = subprocess.Popen([sys.executable, "-c", DRIVER, str(marker), "--test_path", str(test), "--pred_path",
                             str(pred), "--model-dir", str(tiny_model_dir), "--device", "cpu"], cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(1200):  # up to two minutes for the imports
            if marker.exists() or proc.poll() is not None:
                break
            time.sleep(0.1)
        assert marker.exists(), proc.stderr.read() if proc.poll() is not None else "engine start never reached"
        proc.send_signal(getattr(signal, name))
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "Traceback" not in err and f"stopped by {name}" in err
    assert read_predictions_csv(pred)["id"].tolist() == read_test_rows(test).ids
    meta = json.loads((tmp_path / "p_meta.json").read_text())
    assert meta["interrupted"] == name and meta["fallback_reasons"][name.lower()] == 5


def test_a_run_started_with_sigint_ignored_keeps_it_ignored_and_still_honours_sigterm(tiny_model_dir, test_frame,
                                                                                       monkeypatch):
    """A background job of a non-interactive shell starts with SIGINT ignored: the runtime leaves it so (Ctrl-C
    aimed at the shell does not cut the run short), restores SIG_IGN afterwards, and SIGTERM still stops the run."""
    frame = test_frame.head(4)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    monkeypatch.setattr(runtime, "plan_models", signal_then(runtime.plan_models, "SIGINT"))
    result = predict(frame, RunSettings(model_dir=tiny_model_dir, device="cpu"))
    assert result.meta["interrupted"] is None and result.meta["fallback_rows"] == 0  # scored, not interrupted
    assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN

    monkeypatch.setattr(engine_hf, "load_tokenizer", signal_then(engine_hf.load_tokenizer, "SIGTERM"))
    result = predict(frame, RunSettings(model_dir=tiny_model_dir, device="cpu"))
    check_complete(result, frame, "SIGTERM", unscored=len(frame), before=signal.SIG_IGN)
