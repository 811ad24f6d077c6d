"""Training on ``import-pollux --keep-0-4`` data: the reader takes the 4s (max_score column), the loss reads the "4"
token, and the merged model declares ``"max_score": 4`` in judge.json, which the runtime then scores -1..4 with."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from submission.data import DataError
from submission.prompts.sections import LABELS, LABELS_0_4
from tests import pollux_fixture as fx
from trainer.data.pollux import import_pollux

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pollux04")
    source = fx.write_jsonl(tmp / "p.jsonl")
    _, [kept] = import_pollux(source, tmp / "kept", keep_0_4=True)
    _, [plain] = import_pollux(source, tmp / "plain")
    return kept, plain


def test_the_split_knows_the_data_holds_0_4_rows(data, tmp_path):
    from trainer.data.training_data import load_and_split
    from trainer.training.config import TrainConfig

    kept, plain = data
    config = TrainConfig(train_path=str(kept), base_model="x", output_dir=str(tmp_path), val_fraction=0.2)
    rows = load_and_split(config)
    assert rows.max_score == 4 and 4 in set(pd_scores(rows))
    assert load_and_split(config.model_copy(update={"train_path": str(plain)})).max_score == 3
    with pytest.raises(DataError, match="soft labels .* and the judge head score -1..3"):
        load_and_split(config.model_copy(update={"judge_head": True}))


def pd_scores(rows):
    return [*rows.train["score"], *rows.val["score"]]


def test_tokenise_masks_and_the_loss_cover_label_4(data, tiny_model_dir):
    import pandas as pd
    from transformers import AutoTokenizer

    from submission.prompts.prompting import PromptRenderer
    from submission.scoring.decoding import label_token_ids
    from trainer.training.hf_trainer import tokenise
    from trainer.training.losses import expected_ordinal_score

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    frame = pd.read_csv(data[0], dtype={"id": str})
    four = frame[frame["score"] == 4].reset_index(drop=True)
    renderer = PromptRenderer(tokenizer, max_tokens=512)
    row = tokenise(four, renderer, 512, labels=LABELS_0_4).rows[0]
    assert row["allowed"] == [True] * 6 and row["gold"] == 4 and len(row["soft"]) == 6
    target = [t for t in row["labels"] if t != -100]
    assert target[0] == label_token_ids(tokenizer, LABELS_0_4)[-1]  # the score token the loss trains is "4"
    assert tokenise(four, renderer, 512).rows[0]["allowed"] == [True] * 5  # the default reading: -1..3
    log_probs = torch.log(torch.tensor([[0.0, 0.0, 0.0, 0.0, 0.0, 1.0]]).clamp(min=1e-30))
    assert expected_ordinal_score(log_probs, torch.ones(1, 6, dtype=torch.bool)).item() == pytest.approx(4.0)
    assert np.asarray(LABELS).tolist() == [-1, 0, 1, 2, 3]


def test_two_training_steps_on_0_4_data_give_a_judge_that_declares_max_score_4(data, tiny_model_dir, tmp_path):
    """The real CLI (train -> merge -> evaluate), two optimizer steps on the tiny model."""
    args = [sys.executable, "-m", "trainer", "train", "--experiment", "demo", "--config",
            "trainer/configs/demo_full.yaml", "--train-path", str(data[0]), "--base-model", str(tiny_model_dir),
            "--output-dir", str(tmp_path / "runs"), "--set", "max_steps=2", "--set", "logging_steps=1",
            "--set", "val_fraction=0.3"]
    result = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=900,
                            env={**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = Path(result.stdout.strip().splitlines()[-1])
    merged = run_dir / "merged"
    assert json.loads((merged / "judge.json").read_text()) == {"max_score": 4}
    assert json.loads((run_dir / "training_config.json").read_text())["max_score"] == 4
    from submission.choice.autopick import Candidate

    assert Candidate(merged).labels == LABELS_0_4
    header = (run_dir / "val_predictions.csv").read_text().splitlines()[0]  # evaluate scored it -1..4
    assert header.startswith("id,p_-1,p_0,p_1,p_2,p_3,p_4")
    assert "class_prior" in json.loads((merged / "validation_report.json").read_text())
