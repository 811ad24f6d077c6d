"""Transformers engine: batching is invisible in the results, order is restored, OOM splits batches."""

import numpy as np
import pytest
import torch

from submission.engine_hf import TransformersEngine, plan_batches
from submission.prompting import PromptRenderer


@pytest.fixture(scope="module")
def engine(tiny_model_dir):
    return TransformersEngine(tiny_model_dir, device="cpu", token_budget=2048)


@pytest.fixture(scope="module")
def prompts(engine, synth_dir):
    import pandas as pd

    frame = pd.read_csv(synth_dir / "test.csv")
    renderer = PromptRenderer(engine.tokenizer, max_tokens=1024)
    return [r.input_ids for r in renderer.render_many(frame["prompt"].head(24))]


def test_plan_batches_respects_the_token_budget_and_covers_every_row():
    lengths = [5, 300, 40, 120, 120, 7, 299]
    batches = plan_batches(lengths, token_budget=600, max_rows=3)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for batch in batches:
        assert len(batch) <= 3 and len(batch) * max(lengths[i] for i in batch) <= 600 or len(batch) == 1
    assert batches[0][0] == 1  # longest first


def test_batched_scores_equal_one_by_one_scores_in_input_order(engine, prompts):
    together = engine.label_logits(prompts)
    alone = np.concatenate([engine.label_logits([p]) for p in prompts])
    assert len({len(p) for p in prompts}) > 1  # padding really happens
    np.testing.assert_allclose(together, alone, atol=1e-4)


def test_out_of_memory_halves_the_batch_and_still_scores_everything(engine, prompts, monkeypatch):
    expected = engine.label_logits(prompts)
    original = engine._forward
    calls = []

    def flaky_forward(rows):
        calls.append(len(rows))
        if len(rows) > 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return original(rows)

    monkeypatch.setattr(engine, "_forward", flaky_forward)
    before = engine.oom_splits
    got = engine.label_logits(prompts)
    np.testing.assert_allclose(got, expected, atol=1e-4)
    assert engine.oom_splits > before and max(calls) > 2 and calls[-1] <= 2


def test_other_errors_are_not_swallowed(engine, prompts, monkeypatch):
    def broken(rows):
        raise RuntimeError("shape mismatch")

    monkeypatch.setattr(engine, "_forward", broken)
    with pytest.raises(RuntimeError, match="shape mismatch"):
        engine.label_logits(prompts[:3])


def test_pickled_weights_are_refused(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "pytorch_model.bin").write_bytes(b"not loaded")
    with pytest.raises(FileNotFoundError, match="no \\*.safetensors"):
        TransformersEngine(tmp_path, device="cpu", tokenizer=object())
