"""One optimizer step over the same 8 rows gives the same loss and gradients however the rows are split.

Batch 8 x accumulation 1, 4 x 2 and 2 x 4 (and 2 DDP ranks x 4) must all log the mean cross-entropy per labelled
token of the 8 rows and produce the same gradients; the rows mix 3-token (-1) and 2-token targets, so a per-micro-batch
mean divided by the accumulation steps (or not divided at all) fails.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests.one_step import one_step

ROOT = Path(__file__).resolve().parents[3]
SPLITS = [(8, 1), (4, 2), (2, 4)]


def mixed_rows(synth_dir, count: int) -> pd.DataFrame:
    """Three -1 rows (3 labelled tokens) first, then others (2 tokens): micro-batches hold unequal counts."""
    frame = pd.read_csv(synth_dir / "train.csv", dtype={"id": str})
    rows = pd.concat([frame[frame.score == -1].head(3), frame[frame.score != -1].head(count - 3)])
    assert len(rows) == count and (rows.score == -1).sum() == 3
    return rows.reset_index(drop=True)


@pytest.fixture(scope="module")
def eight_rows(synth_dir):
    return mixed_rows(synth_dir, 8)


def per_token_cross_entropy(model_dir, rows) -> float:
    """Plain full-logit cross-entropy over every labelled token of ``rows`` (the untrained model's)."""
    import torch
    import torch.nn.functional as F
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from submission.prompts.prompting import PromptRenderer
    from trainer.training.train import LeftPadCollator, tokenise

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    dataset = tokenise(rows, PromptRenderer(tokenizer, max_tokens=512), 512)
    batch = LeftPadCollator(tokenizer.pad_token_id)([dataset[i] for i in range(len(dataset))])
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                       position_ids=batch["position_ids"]).logits
    return float(F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), batch["labels"][:, 1:].reshape(-1),
                                 ignore_index=-100))


@pytest.fixture(scope="module")
def expected_loss(tiny_model_dir, eight_rows):
    return per_token_cross_entropy(tiny_model_dir, eight_rows)


@pytest.mark.parametrize("method", ["lora", "full"])
def test_batch_split_and_accumulation_give_the_same_loss_and_gradients(
    method, tiny_model_dir, eight_rows, expected_loss, tmp_path
):
    import torch

    steps = {split: one_step(tiny_model_dir, eight_rows, method, *split, tmp_path / f"{split[0]}x{split[1]}")
             for split in SPLITS}
    reference = steps[(8, 1)]
    assert reference["loss"] == pytest.approx(expected_loss, rel=1e-4)  # logged loss is per labelled token
    assert reference["grad_norm"] > 0 and len(reference["grads"]) > 0
    for split, step in steps.items():
        assert step["loss"] == pytest.approx(expected_loss, rel=1e-4), split
        assert step["grad_norm"] == pytest.approx(reference["grad_norm"], rel=1e-4), split
        assert step["grads"].keys() == reference["grads"].keys()
        for name, grad in step["grads"].items():
            assert torch.allclose(grad, reference["grads"][name], rtol=1e-4, atol=1e-7), (split, name)


def test_distillation_step_is_the_same_mean_over_rows_however_split(tiny_model_dir, eight_rows, tmp_path):
    """Soft labels on every row, gold on the first three only: the micro-batches hold 3/0/0/0 or 2/1/0/0 gold rows,
    so a CE or KL term normalised per micro-batch (not per optimizer step) gives different losses and gradients."""
    import numpy as np
    import torch

    rows = eight_rows.copy()
    rows["score"] = rows["score"].astype(float)
    rows.loc[3:, "score"] = np.nan
    soft = np.random.default_rng(3).dirichlet(np.ones(5), size=len(rows))
    for i, label in enumerate((-1, 0, 1, 2, 3)):
        rows[f"p_{label}"] = soft[:, i]
    settings = {"soft_labels": "soft.csv", "distill_alpha": 0.4}
    steps = {split: one_step(tiny_model_dir, rows, "lora", *split, tmp_path / f"{split[0]}x{split[1]}", **settings)
             for split in SPLITS}
    reference = steps[(8, 1)]
    assert reference["grad_norm"] > 0
    for split, step in steps.items():
        assert step["loss"] == pytest.approx(reference["loss"], rel=1e-4), split
        for name, grad in step["grads"].items():
            assert torch.allclose(grad, reference["grads"][name], rtol=1e-4, atol=1e-7), (split, name)


@pytest.fixture(scope="module")
def sixteen_rows(synth_dir):
    """One optimizer step of every preset 1-4 (8 x 2 or 4 x 4)."""
    return mixed_rows(synth_dir, 16)


def test_presets_log_the_loss_per_labelled_token(tiny_model_dir, sixteen_rows, tmp_path):
    from trainer.training.config import EXPERIMENTS, resolve_config

    expected = per_token_cross_entropy(tiny_model_dir, sixteen_rows)
    splits = set()
    for experiment in ("1", "2", "3", "4"):
        preset = resolve_config(experiment)
        assert preset.batch_size * preset.grad_accum == len(sixteen_rows), EXPERIMENTS[experiment].file
        splits.add((preset.method, preset.batch_size, preset.grad_accum))
    assert len(splits) >= 3 and any(accum > 1 for _, _, accum in splits)
    for method, batch, accum in sorted(splits):
        step = one_step(tiny_model_dir, sixteen_rows, method, batch, accum, tmp_path / f"{method}{batch}x{accum}")
        assert step["loss"] == pytest.approx(expected, rel=1e-4), (method, batch, accum)


@pytest.mark.slow
def test_two_ddp_ranks_give_the_single_process_loss_and_gradient_norm(
    tiny_model_dir, eight_rows, expected_loss, tmp_path
):
    eight_rows.to_csv(tmp_path / "rows.csv", index=False)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "2", "--num_machines", "1",
               "--multi_gpu", "--mixed_precision", "no", "--dynamo_backend", "no", str(ROOT / "tests" / "one_step.py"),
               str(tiny_model_dir), str(tmp_path / "rows.csv"), "full", "4", "1", str(tmp_path / "ddp.json")]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=1800)  # a hang guard, not a speed check
    assert result.returncode == 0, result.stderr[-3000:]
    ddp = json.loads((tmp_path / "ddp.json").read_text())
    single = one_step(tiny_model_dir, eight_rows, "full", 8, 1, tmp_path / "single")
    assert ddp["world_size"] == 2
    assert ddp["loss"] == pytest.approx(expected_loss, rel=1e-4)
    assert ddp["grad_norm"] == pytest.approx(single["grad_norm"], rel=1e-4)
