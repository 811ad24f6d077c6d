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
    from trainer.tiny import make_tiny_model_dir

    return make_tiny_model_dir(tmp_path_factory.mktemp("tiny_model"), hidden_size=64, num_layers=2, seed=0)


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory):
    """Folder with synthetic train.csv (300 rows), test.csv and gold.csv (75 rows, seed 1); treat it as read-only."""
    from trainer.synth import write_synthetic

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
