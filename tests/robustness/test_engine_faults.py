"""Engine faults: vLLM missing, not starting or dying mid-run, and CUDA out-of-memory at start and mid-run.

Every case still scores every row; the meta file says which engine ran and why. vLLM is a fake shaped like vLLM
0.26 (tests/fake_vllm.py) that answers with the real tiny model, so no GPU is needed.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from submission.engines import engine_hf, engine_vllm
from submission.engines.engine_hf import TransformersEngine
from submission.runtime.runtime import RunSettings, predict
from tests.fake_vllm import fake_api


@pytest.fixture
def frame(test_frame):
    return test_frame.head(16)


# -- vLLM ---------------------------------------------------------------------------------------------------------
def test_vllm_start_failures_walk_down_the_ladder(tiny_model_dir, tiny_model, frame, monkeypatch):
    api, calls = fake_api(tiny_model, fail_starts=2)
    monkeypatch.setattr(engine_vllm, "load_vllm_api", lambda: api)
    result = predict(frame, RunSettings(model_dir=tiny_model_dir, device="cpu", engine="vllm"))
    memories = [k["gpu_memory_utilization"] for k in calls["init"]]
    assert memories == sorted(memories, reverse=True) and len(memories) == 3
    assert calls["init"][-1]["max_model_len"] == 2048 and calls["init"][-1]["max_num_seqs"] < calls["init"][0]["max_num_seqs"]
    assert result.meta["engine"] == "vllm" and len(result.meta["vllm_start_failures"]) == 2
    assert all(len(p["prompt_token_ids"]) <= 2047 for p in calls["prompts"])


def test_vllm_that_never_starts_falls_back_to_transformers(tiny_model_dir, tiny_model, frame, monkeypatch):
    api, calls = fake_api(tiny_model, fail_starts=99)
    monkeypatch.setattr(engine_vllm, "load_vllm_api", lambda: api)
    result = predict(frame, RunSettings(model_dir=tiny_model_dir, device="cpu", engine="vllm"))
    assert result.meta["engine"] == "hf" and "EngineStartError" in result.meta["engine_fallback"]
    assert len(calls["init"]) == 3 and len(result.scores) == len(frame)


def test_missing_vllm_falls_back_to_transformers(tiny_model_dir, frame, monkeypatch):
    def no_vllm():
        raise ImportError("No module named 'vllm'")

    monkeypatch.setattr(engine_vllm, "load_vllm_api", no_vllm)
    result = predict(frame, RunSettings(model_dir=tiny_model_dir, device="cpu", engine="vllm"))
    assert result.meta["engine"] == "hf" and "ImportError" in result.meta["engine_fallback"]


def test_vllm_failing_mid_run_hands_the_rest_to_transformers(tiny_model_dir, tiny_model, frame, monkeypatch):
    from submission.engines.engine_hf import load_tokenizer

    # Labels lifted into the top 20: vLLM and transformers then give the same probabilities, row by row.
    api, calls = fake_api(tiny_model, lift_ids=engine_vllm.label_token_ids(load_tokenizer(tiny_model_dir)))
    real_generate = api.LLM.generate

    def generate_then_fail(self, prompts, params, use_tqdm=True):
        if calls.get("params"):
            raise RuntimeError("EngineDeadError: engine core died")
        return real_generate(self, prompts, params, use_tqdm)

    api.LLM.generate = generate_then_fail
    monkeypatch.setattr(engine_vllm, "load_vllm_api", lambda: api)
    closed = []
    real_close = engine_vllm.VllmEngine.close
    monkeypatch.setattr(engine_vllm.VllmEngine, "close", lambda self: (closed.append(self), real_close(self))[1])
    hf = predict(frame, RunSettings(model_dir=tiny_model_dir, device="cpu", engine="hf"))
    got = predict(frame, RunSettings(model_dir=tiny_model_dir, device="cpu", engine="vllm", chunk_tokens=1500))
    assert len(closed) == 1 and closed[0].llm is None  # the failed engine was closed through the protocol
    assert got.meta["engine"] == "hf" and "EngineDeadError" in got.meta["engine_fallback"]
    assert got.meta["fallback_rows"] == 0 and len(calls["params"]) == 1
    scored_by_vllm = got.meta["models"][0]["vllm_rows_before_failure"]
    assert 0 < scored_by_vllm < len(frame) and f"after {scored_by_vllm} rows" in got.meta["engine_fallback"]
    np.testing.assert_allclose(got.probabilities, hf.probabilities, atol=1e-6)
    assert got.scores == hf.scores


def test_vllm_failing_mid_run_in_a_generative_judge_hands_over_too(tiny_model_dir, tiny_model, frame, tmp_path,
                                                                   monkeypatch):
    import json
    import shutil

    model = tmp_path / "gen"
    shutil.copytree(tiny_model_dir, model)
    (model / "judge.json").write_text(json.dumps({"mode": "generate"}))
    api, _ = fake_api(tiny_model)

    def dead(self, prompts, params, use_tqdm=True):
        raise RuntimeError("EngineDeadError: engine core died")

    api.LLM.generate = dead
    monkeypatch.setattr(engine_vllm, "load_vllm_api", lambda: api)
    monkeypatch.setattr(TransformersEngine, "generate_texts", lambda self, prompts, n: ["Оценка: 1"] * len(prompts))
    got = predict(frame, RunSettings(model_dir=model, device="cpu", engine="vllm"))
    assert got.meta["strategy"] == "generate" and got.meta["engine"] == "hf"
    assert "EngineDeadError" in got.meta["engine_fallback"] and got.meta["fallback_rows"] == 0


# -- transformers out of memory -------------------------------------------------------------------------------------
def test_out_of_memory_halves_the_batch_and_still_scores_everything(tiny_engine, tiny_prompts, monkeypatch):
    expected = tiny_engine.label_logits(tiny_prompts)
    original = tiny_engine._forward
    calls = []

    def flaky_forward(rows):
        calls.append(len(rows))
        if len(rows) > 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return original(rows)

    monkeypatch.setattr(tiny_engine, "_forward", flaky_forward)
    before = tiny_engine.oom_splits
    got = tiny_engine.label_logits(tiny_prompts)
    np.testing.assert_allclose(got, expected, atol=1e-4)
    assert tiny_engine.oom_splits > before and max(calls) > 2 and calls[-1] <= 2


def test_other_errors_are_not_swallowed(tiny_engine, tiny_prompts, monkeypatch):
    def broken(rows):
        raise RuntimeError("shape mismatch")

    monkeypatch.setattr(tiny_engine, "_forward", broken)
    with pytest.raises(RuntimeError, match="shape mismatch"):
        tiny_engine.label_logits(tiny_prompts[:3])


def test_out_of_memory_halves_batches_and_scores_the_same(tiny_model_dir, frame, monkeypatch):
    clean = predict(frame, RunSettings(model_dir=tiny_model_dir, device="cpu"))
    real_forward = TransformersEngine._forward

    def forward_with_oom(self, rows):
        if len(rows) > 4:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real_forward(self, rows)

    monkeypatch.setattr(TransformersEngine, "_forward", forward_with_oom)
    result = predict(frame, RunSettings(model_dir=tiny_model_dir, device="cpu"))
    assert result.meta["oom_splits"] > 0
    np.testing.assert_allclose(result.probabilities, clean.probabilities, atol=1e-5)


def test_out_of_memory_at_start_falls_back_to_the_cpu_and_says_so(tiny_model_dir, frame, monkeypatch):
    real_load = engine_hf.load_causal_lm
    devices = []

    def load_that_ooms_on_the_gpu(model_dir, device, dtype=None):
        devices.append(device)
        if device.startswith("cuda"):
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 1.11 GiB")
        return real_load(model_dir, device, dtype)

    monkeypatch.setattr(engine_hf, "load_causal_lm", load_that_ooms_on_the_gpu)
    clean = predict(frame, RunSettings(model_dir=tiny_model_dir, device="cpu"))
    result = predict(frame, RunSettings(model_dir=tiny_model_dir, device="cuda", engine="hf"))
    assert devices == ["cpu", "cuda", "cpu"]
    assert result.meta["device"] == "cpu" and result.meta["fallback_rows"] == 0
    assert "out of memory loading" in result.meta["engine_fallback"] and "on cpu" in result.meta["engine_fallback"]
    np.testing.assert_allclose(result.probabilities, clean.probabilities, atol=1e-6)


def test_vllm_that_never_starts_then_gpu_out_of_memory_ends_on_the_cpu(tiny_model_dir, tiny_model, frame, monkeypatch):
    api, _ = fake_api(tiny_model, fail_starts=99)
    monkeypatch.setattr(engine_vllm, "load_vllm_api", lambda: api)
    real_load = engine_hf.load_causal_lm

    def load(model_dir, device, dtype=None):
        if device.startswith("cuda"):
            raise RuntimeError("CUDA error: out of memory")
        return real_load(model_dir, device, dtype)

    monkeypatch.setattr(engine_hf, "load_causal_lm", load)
    result = predict(frame, RunSettings(model_dir=tiny_model_dir, device="cuda", engine="vllm"))
    fallback = result.meta["engine_fallback"]
    assert result.meta["engine"] == "hf" and result.meta["device"] == "cpu"
    assert "EngineStartError" in fallback and "out of memory loading" in fallback
    assert len(result.scores) == len(frame) and result.meta["fallback_rows"] == 0


def test_other_load_errors_are_not_taken_for_out_of_memory(tiny_model_dir, frame, monkeypatch):
    def broken(model_dir, device, dtype=None):
        raise RuntimeError("CUDA error: device-side assert triggered")

    monkeypatch.setattr(engine_hf, "load_causal_lm", broken)
    with pytest.raises(FileNotFoundError, match="no model could be loaded: RuntimeError: CUDA error: device-side"):
        predict(frame, RunSettings(model_dir=tiny_model_dir, device="cuda", engine="hf"))


def test_both_engines_implement_the_scoring_engine_protocol(tiny_engine, tiny_model_dir, tiny_model, monkeypatch):
    from submission.engines.protocol import ScoringEngine

    api, _ = fake_api(tiny_model)
    monkeypatch.setattr(engine_vllm, "load_vllm_api", lambda: api)
    vllm = engine_vllm.VllmEngine(tiny_model_dir, tiny_engine.tokenizer, max_model_len=512)
    for engine in (tiny_engine, vllm):
        assert isinstance(engine, ScoringEngine), type(engine).__name__
        assert engine.start_failures == [] and isinstance(engine.oom_splits, int)
    vllm.close()
    assert vllm.llm is None
