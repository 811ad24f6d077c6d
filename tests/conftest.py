"""Shared fixtures: a tiny Qwen3 checkpoint and synthetic contest CSVs, each built once per test session."""

from __future__ import annotations

import os

import pytest

# Tests never reach the network: a missing local file must fail loudly, not start a download.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

SYNTH_ROWS = 300
SYNTH_SEED = 1


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """Folder with a tiny random Qwen3 (hidden 64, 2 layers) and its Qwen-style tokenizer; treat it as read-only."""
    from trainer.tiny.models import make_tiny_model_dir

    return make_tiny_model_dir(tmp_path_factory.mktemp("tiny_model"), hidden_size=64, num_layers=2, seed=0)


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory):
    """Folder with synthetic train.csv (300 rows), test.csv and gold.csv (75 rows, seed 1); treat it as read-only."""
    from trainer.data.synth import write_synthetic

    out = tmp_path_factory.mktemp("synth")
    write_synthetic(out, rows=SYNTH_ROWS, seed=SYNTH_SEED)
    return out


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_model_dir):
    """The tiny model's tokenizer, loaded offline once."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tiny_model_dir))


@pytest.fixture(scope="session")
def grade_data(tmp_path_factory, synth_dir):
    """The first 12 rows of the synthetic test.csv and gold.csv, for grader runs that start a whole bundle."""
    import pandas as pd

    out = tmp_path_factory.mktemp("grade_data")
    for name in ("test.csv", "gold.csv"):
        pd.read_csv(synth_dir / name, dtype=str, keep_default_na=False).head(12).to_csv(out / name, index=False)
    return out


@pytest.fixture(scope="session")
def tiny_model(tiny_model_dir):
    """The tiny model loaded on CPU once (for fakes that answer with real logits); treat it as read-only."""
    from submission.engines.engine_hf import load_causal_lm

    return load_causal_lm(tiny_model_dir, "cpu")


@pytest.fixture(scope="session")
def tiny_engine(tiny_model_dir):
    """A transformers engine on the tiny model (CPU, 2,048-token batches), shared; monkeypatch, do not mutate."""
    from submission.engines.engine_hf import TransformersEngine

    return TransformersEngine(tiny_model_dir, device="cpu", token_budget=2048)


@pytest.fixture(scope="session")
def tiny_prompts(tiny_engine, synth_dir):
    """Token ids of the first 24 synthetic test prompts, rendered for the tiny model (lengths differ)."""
    import pandas as pd

    from submission.prompts.prompting import PromptRenderer

    frame = pd.read_csv(synth_dir / "test.csv")
    renderer = PromptRenderer(tiny_engine.tokenizer, max_tokens=1024)
    return [r.input_ids for r in renderer.render_many(frame["prompt"].head(24))]


@pytest.fixture(scope="session")
def test_frame(synth_dir):
    """The first 24 rows of the synthetic test.csv as read by the runtime (id, prompt)."""
    from submission.data import read_test_csv

    return read_test_csv(synth_dir / "test.csv").head(24).reset_index(drop=True)


def _make_run(runs, name, tiny_model_dir, qwk):
    import json
    import shutil

    merged = runs / name / "merged"
    shutil.copytree(tiny_model_dir, merged)
    (merged / "validation_report.json").write_text(json.dumps({"qwk": qwk, "accuracy": qwk}))
    return runs / name


@pytest.fixture
def bundle_runs(tmp_path, tiny_model_dir):
    """runs/ with weak (qwk 0.3) and strong (0.8) merged tiny models and an adapter-only run, for bundle.py."""
    runs = tmp_path / "runs"
    _make_run(runs, "weak", tiny_model_dir, 0.3)
    _make_run(runs, "strong", tiny_model_dir, 0.8)
    (runs / "adapter_only" / "adapter").mkdir(parents=True)
    return runs


@pytest.fixture(scope="session")
def docker_base():
    """The local base image for `docker`-marked tests (AIJ_DOCKER_BASE, default build/local_base_image.sh's tag);
    skips when no Docker engine answers or the image is absent."""
    import subprocess

    from tests.build_scripts import load_script

    base = os.environ.get("AIJ_DOCKER_BASE", "aij-local-base:py311")
    if not load_script("grade").docker_available():
        pytest.skip("no Docker engine reachable")
    if subprocess.run(["docker", "image", "inspect", base], capture_output=True).returncode != 0:
        pytest.skip(f"base image {base} not present (build/local_base_image.sh)")
    return base
