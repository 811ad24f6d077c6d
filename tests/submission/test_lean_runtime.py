"""The contest entry points score an unpacked bundle in an environment without the training and analysis stack.

vLLM's image (the likely grading image) brings torch, transformers, tokenizers, safetensors and numpy, but not
pandas, scipy or scikit-learn. The bundle here runs on an interpreter that cannot see those (nor matplotlib, peft,
trl, datasets, accelerate, optuna, typer, pydantic): ``python -S`` on a copy of this venv's site-packages made of
links to every entry except theirs (modules and ``*.dist-info``), so they are as absent as in a foreign image —
``import`` fails and ``importlib.metadata`` does not know them either.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from submission.prompts.sections import parse_prompt
from tests.build_scripts import load_script

BLOCKED = ("pandas", "scipy", "sklearn", "scikit_learn", "matplotlib", "mpl_toolkits", "peft", "trl", "datasets",
           "accelerate", "optuna", "typer", "typer_slim", "pydantic", "pydantic_core")


def _top_name(entry: str) -> str:
    """'scikit_learn-1.7.0.dist-info' -> 'scikit_learn'; 'scipy.libs' -> 'scipy'; 'pandas' -> 'pandas'."""
    return re.split(r"[-.]", entry, maxsplit=1)[0].lower().replace("-", "_")


@pytest.fixture(scope="module")
def lean_python(tmp_path_factory) -> Path:
    """An interpreter wrapper (usable as $PYTHON) that sees this venv minus BLOCKED."""
    root = tmp_path_factory.mktemp("lean")
    site = root / "site-packages"
    site.mkdir()
    for entry in Path(sysconfig.get_paths()["purelib"]).iterdir():
        if _top_name(entry.name) not in BLOCKED and not entry.name.endswith(".pth"):
            (site / entry.name).symlink_to(entry)
    wrapper = root / "python"
    wrapper.write_text(f'#!/bin/sh\nPYTHONPATH="{site}" exec "{sys.executable}" -S "$@"\n')
    wrapper.chmod(0o755)
    return wrapper


@pytest.fixture(scope="module")
def unpacked_bundle(tmp_path_factory, tiny_model_dir) -> Path:
    """A real bundle (build/bundle.py) of the tiny model, unzipped as the contest would."""
    runs = tmp_path_factory.mktemp("runs")
    shutil.copytree(tiny_model_dir, runs / "tiny" / "merged")
    (runs / "tiny" / "merged" / "validation_report.json").write_text(json.dumps({"qwk": 0.5}))
    zip_path = runs.parent / "lean.zip"
    load_script("bundle").make_bundle(runs, zip_path)
    out = tmp_path_factory.mktemp("unpacked")
    with zipfile.ZipFile(zip_path) as archive:
        archive.extractall(out)
        for info in archive.infolist():
            if info.external_attr >> 16:
                os.chmod(out / info.filename, (info.external_attr >> 16) & 0o777)
    return out


def _clean_env(python: Path) -> dict:
    return {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": os.environ.get("HOME", "/tmp"), "LANG": "C.UTF-8",
            "PYTHON": str(python)}


def _check_predictions(test_csv: Path, pred: Path) -> None:
    with test_csv.open(encoding="utf-8", newline="") as handle:
        test = list(csv.DictReader(handle))
    with pred.open(encoding="utf-8", newline="") as handle:
        got = list(csv.DictReader(handle))
    assert [r["id"] for r in got] == [r["id"].strip() for r in test]
    for row, out in zip(test, got, strict=True):
        assert int(out["score"]) in parse_prompt(row["prompt"]).allowed


def test_the_blocker_really_hides_the_training_stack(lean_python):
    for name in ("pandas", "scipy", "sklearn", "typer", "pydantic", "peft"):
        proc = subprocess.run([str(lean_python), "-c", f"import {name}"], capture_output=True, text=True)
        assert proc.returncode != 0 and "No module named" in proc.stderr, name
    seen = subprocess.run([str(lean_python), "-c", "import importlib.util as u; print(u.find_spec('pandas'))"],
                          capture_output=True, text=True)
    assert seen.stdout.strip() == "None"
    ok = subprocess.run([str(lean_python), "-c", "import numpy, torch, transformers, tokenizers, safetensors"],
                        capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr


def test_run_py_scores_the_bundle_from_another_folder_without_pandas_scipy_sklearn(lean_python, unpacked_bundle,
                                                                                  grade_data, tmp_path):
    """The organisers' call, from an unrelated working directory: models are found relative to run.py."""
    pred = tmp_path / "out" / "predictions.csv"
    proc = subprocess.run([str(lean_python), str(unpacked_bundle / "run.py"), "--test_path", str(grade_data / "test.csv"),
                           "--pred_path", str(pred), "--device", "cpu"],
                          cwd=tmp_path, env=_clean_env(lean_python), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    _check_predictions(grade_data / "test.csv", pred)
    meta = json.loads((tmp_path / "out" / "predictions_meta.json").read_text())
    assert Path(meta["model_dirs"][0]).resolve() == (unpacked_bundle / "models" / "tiny").resolve()
    assert re.search(r"\d+/\d+ rows .* tokens/s, elapsed [\d.]+s, [\d.]+s left before --time-limit", proc.stderr)


def test_run_sh_scores_the_bundle_without_pandas_scipy_sklearn(lean_python, unpacked_bundle, grade_data, tmp_path):
    shutil.copyfile(grade_data / "test.csv", unpacked_bundle / "test.csv")
    proc = subprocess.run(["./run.sh", "test.csv", str(tmp_path / "predictions.csv"), "--device", "cpu",
                           "--probabilities", str(tmp_path / "probabilities.csv")],
                          cwd=unpacked_bundle, env=_clean_env(lean_python), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    _check_predictions(grade_data / "test.csv", tmp_path / "predictions.csv")
    with (tmp_path / "probabilities.csv").open(encoding="utf-8", newline="") as handle:  # written without pandas too
        probabilities = list(csv.DictReader(handle))
    assert [r["id"] for r in probabilities] == [r["id"] for r in csv.DictReader((tmp_path / "predictions.csv").open())]
    assert all(abs(sum(float(v) for k, v in r.items() if k != "id") - 1) < 1e-6 for r in probabilities)


def test_run_py_help_and_a_bad_metric_need_no_training_stack(lean_python, unpacked_bundle, tmp_path):
    helped = subprocess.run([str(lean_python), str(unpacked_bundle / "run.py"), "--help"], capture_output=True,
                            text=True, cwd=tmp_path)
    assert helped.returncode == 0
    for flag in ("--test_path", "--test-path", "--pred_path", "--models", "--model-dir", "--engine", "--time-limit",
                 "--metric", "--no-ensemble", "--device", "--max-tokens", "--token-budget", "--enforce-eager", "--quiet",
                 "--probabilities"):
        assert flag in helped.stdout, flag
    bad = subprocess.run([str(lean_python), str(unpacked_bundle / "run.py"), "--test_path", "t.csv", "--pred_path",
                          "p.csv", "--metric", "QWKX"], capture_output=True, text=True, cwd=tmp_path)
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0
    assert "unknown metric 'QWKX'" in bad.stderr and "qwk" in bad.stderr


def test_selfcheck_passes_without_the_training_stack(lean_python, unpacked_bundle):
    proc = subprocess.run([str(lean_python), "-m", "submission.selfcheck"], cwd=unpacked_bundle, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "transformers 5." in proc.stdout
