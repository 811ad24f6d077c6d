"""The grader's docker mode: the bundle's own Dockerfile is built and run with --network none (needs dockerd).

Run with `pytest -m docker` after `build/local_base_image.sh` (or set AIJ_DOCKER_BASE to another local base that
has the runtime's Python packages; AIJ_DOCKER_PYTHON names its interpreter).
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.build_scripts import load_script

grade = load_script("grade")
bundle = load_script("bundle")
PYTHON = os.environ.get("AIJ_DOCKER_PYTHON", str(Path(sys.executable)))

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def build_args(docker_base):
    return [f"BASE_IMAGE={docker_base}", f"PYTHON={PYTHON}"]


def _grading_images() -> set[str]:
    listed = subprocess.run(["docker", "images", "-q", "--filter", "reference=aij-grade-*"], capture_output=True,
                            text=True, check=True)
    return set(listed.stdout.split())


def test_bundle_image_grades_valid_without_network(tmp_path, tiny_model_dir, grade_data, build_args):
    runs = tmp_path / "runs"
    shutil.copytree(tiny_model_dir, runs / "tiny" / "merged")
    bundle.make_bundle(runs, tmp_path / "b.zip")
    before = _grading_images()
    report = grade.grade(tmp_path / "b.zip", grade_data / "test.csv", grade_data / "gold.csv", 600, "docker", tmp_path / "out",
                         build_args=build_args)
    assert report["isolation"] == "docker" and report["valid"], report["log_tail"][-2000:]
    assert _grading_images() <= before  # the per-grading image tag is removed again


def test_socket_fails_inside_the_image(tmp_path, tiny_model_dir, grade_data, build_args):
    runs = tmp_path / "runs"
    shutil.copytree(tiny_model_dir, runs / "tiny" / "merged")
    bundle.make_bundle(runs, tmp_path / "b.zip")
    work = tmp_path / "unzipped"
    shutil.unpack_archive(tmp_path / "b.zip", work)
    (work / "run.sh").write_text("#!/usr/bin/env bash\n\"$PYTHON\" -c \"import socket; "
                                 "socket.create_connection(('1.1.1.1', 80), timeout=3)\"\ncp \"$1\" \"$2\"\n")
    (work / "run.sh").chmod(0o755)
    shutil.make_archive(str(tmp_path / "net"), "zip", work)
    report = grade.grade(tmp_path / "net.zip", grade_data / "test.csv", grade_data / "gold.csv", 300, "docker", tmp_path / "o2",
                         build_args=build_args)
    assert not report["valid"] and "Network is unreachable" in report["log_tail"]


def test_ensemble_json_reaches_the_image(tmp_path, tiny_model_dir, grade_data, build_args):
    runs = tmp_path / "runs"
    for name in ("a", "b"):
        shutil.copytree(tiny_model_dir, runs / name / "merged")
    ensemble = runs / "ensemble.json"
    ensemble.write_text(json.dumps({"members": [{"model": "a/merged", "weight": 0.5},
                                                {"model": "b/merged", "weight": 0.5}]}))
    bundle.make_bundle(runs, tmp_path / "e.zip", ensemble=ensemble)
    report = grade.grade(tmp_path / "e.zip", grade_data / "test.csv", grade_data / "gold.csv", 600, "docker",
                         tmp_path / "out", build_args=build_args)
    assert report["valid"], report["log_tail"][-2000:]
    assert report["meta"]["strategy"] == "ensemble" and len(report["meta"]["models"]) == 2
