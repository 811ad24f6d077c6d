"""Transformers engine: batching is invisible in the results, order is restored (OOM: tests/robustness/)."""

import numpy as np
import pytest

from submission.engines.engine_hf import TransformersEngine, plan_batches


@pytest.fixture
def engine(tiny_engine):
    return tiny_engine


@pytest.fixture
def prompts(tiny_prompts):
    return tiny_prompts


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


def test_pickled_weights_are_refused(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "pytorch_model.bin").write_bytes(b"not loaded")
    with pytest.raises(FileNotFoundError, match="no \\*.safetensors"):
        TransformersEngine(tmp_path, device="cpu", tokenizer=object())


def test_the_vllm_engine_takes_its_device_rules_from_devices_not_the_transformers_engine():
    import subprocess
    import sys

    code = ("import sys, submission.engines.engine_vllm as v, submission.engines.devices as d; "
            "assert 'submission.engines.engine_hf' not in sys.modules, 'engine_vllm imported engine_hf'; "
            "assert v.preferred_dtype is d.preferred_dtype")
    subprocess.run([sys.executable, "-c", code], check=True)
    from submission.engines import devices, engine_hf

    assert engine_hf.resolve_device is devices.resolve_device  # the old import path still works
    assert [devices.device_kind(d) for d in ("cuda", "cuda:1", "cpu")] == ["cuda", "cuda", "cpu"]
