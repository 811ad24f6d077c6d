"""The training image for real: Dockerfile.train (CPU variant, EXTRAS=train) on the local base trains and merges.

Run with `pytest -m docker` after `build/local_base_image.sh` (AIJ_DOCKER_BASE names another local base). Both
containers run with --network none; the runs land on the host volume, as a user's `docker run -v` would leave them.
"""

import json
import shutil
import subprocess

import pytest

from tests.build_scripts import ROOT

TAG = "aij-judge-train:cpu-test"

pytestmark = pytest.mark.docker


def docker(*args, timeout=900):
    proc = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"docker {' '.join(args[:3])}... exit {proc.returncode}:\n{proc.stdout[-2000:]}{proc.stderr[-3000:]}"
    return proc.stdout


@pytest.fixture(scope="module")
def train_image(docker_base):
    docker("build", "-q", "-f", str(ROOT / "Dockerfile.train"), "--build-arg", f"BASE_IMAGE={docker_base}",
           "--build-arg", "EXTRAS=train", "--build-arg", "BAKE_BASE=0", "-t", TAG, str(ROOT))
    return TAG


def torch_version(image):
    return docker("run", "--rm", "--network", "none", "--entrypoint", "python", image, "-c",
                  "import torch; print(torch.__version__)").strip()


def test_the_image_keeps_the_base_torch(train_image, docker_base):
    assert torch_version(train_image) == torch_version(docker_base)


def test_train_and_merge_run_offline_and_leave_the_run_on_the_volume(train_image, tmp_path, tiny_model_dir, synth_dir):
    data, runs = tmp_path / "data", tmp_path / "runs"
    shutil.copytree(tiny_model_dir, data / "tiny")
    shutil.copy(synth_dir / "train.csv", data / "train.csv")
    runs.mkdir()
    runs.chmod(0o777)  # the image trains as uid 10001: it reads data/ and writes runs/
    for path in [data, *data.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)  # pytest's temp folders are private (0700)
    volumes = ["--network", "none", "-v", f"{data}:/data:ro", "-v", f"{runs}:/runs", train_image]
    out = docker("run", "--rm", *volumes, "train", "--experiment", "demo", "--train-path", "/data/train.csv",
                 "--base-model", "/data/tiny", "--output-dir", "/runs", "--no-merge",
                 "--set", "max_steps=8", "--set", "save_steps=1000", "--set", "logging_steps=4")
    assert out.strip().splitlines()[-1] == "/runs/demo"
    assert (runs / "demo" / "adapter" / "adapter_config.json").is_file()
    assert not (runs / "demo" / "merged").exists()
    out = docker("run", "--rm", *volumes, "merge", "/runs/demo")
    assert out.strip().splitlines()[-1] == "/runs/demo/merged"
    merged = runs / "demo" / "merged"
    assert (merged / "config.json").is_file() and list(merged.glob("*.safetensors"))
    steps = [json.loads(line)["step"] for line in (runs / "demo" / "metrics.jsonl").read_text().splitlines()
             if "loss" in json.loads(line)]
    assert steps and max(steps) == 8
