"""vLLM glue against fakes shaped like vLLM 0.26 outputs (no GPU, no vllm package): the path a GPU run takes."""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from submission import engine_vllm
from submission.data import read_test_csv
from submission.runtime import RunSettings, predict


@dataclass
class Logprob:  # vllm.logprobs.Logprob fields
    logprob: float
    rank: int | None = None
    decoded_token: str | None = None


@dataclass
class SamplingParams:
    max_tokens: int = 16
    temperature: float = 1.0
    logprobs: int | None = None


def TokensPrompt(**kwargs):  # a TypedDict in vLLM: calling it builds a plain dict
    return dict(**kwargs)


def fake_api(model, fail_starts: int = 0, calls: dict | None = None, lift_ids=()):
    """A vLLM stand-in whose LLM answers with the real tiny model's top-20 logprobs + the sampled token.

    ``lift_ids`` get the same logit bonus (label ratios unchanged) so that they all show in the top 20.
    """
    calls = calls if calls is not None else {}

    class LLM:
        def __init__(self, **kwargs):
            calls.setdefault("init", []).append(kwargs)
            if len(calls["init"]) <= fail_starts:
                raise RuntimeError("CUDA out of memory while allocating the KV cache")

        def generate(self, prompts, params, use_tqdm=True):
            calls.setdefault("params", []).append(params)
            calls.setdefault("prompts", []).extend(prompts)
            outs = []
            for prompt in prompts:
                ids = torch.tensor([prompt["prompt_token_ids"]])
                with torch.no_grad():
                    logits = model(input_ids=ids).logits[0, -1].double()
                    logits[list(lift_ids)] += 50.0
                    logp = torch.log_softmax(logits, -1)
                top = torch.topk(logp, params.logprobs)
                entry = {int(t): Logprob(float(v), r + 1) for r, (v, t) in enumerate(zip(top.values, top.indices, strict=True))}
                sampled = int(top.indices[0])
                entry.setdefault(sampled, Logprob(float(logp[sampled]), 1))
                completion = SimpleNamespace(token_ids=[sampled], logprobs=[entry], text="")
                outs.append(SimpleNamespace(outputs=[completion], prompt_token_ids=prompt["prompt_token_ids"]))
            return outs

    return SimpleNamespace(LLM=LLM, SamplingParams=SamplingParams, TokensPrompt=TokensPrompt), calls


@pytest.fixture(scope="module")
def tiny_model(tiny_model_dir):
    from submission.engine_hf import load_causal_lm

    return load_causal_lm(tiny_model_dir, "cpu")


@pytest.fixture(scope="module")
def frame(synth_dir):
    return read_test_csv(synth_dir / "test.csv").head(16).reset_index(drop=True)


def test_vllm_path_matches_transformers_where_labels_are_in_the_top_20(tiny_model_dir, tiny_model, frame, monkeypatch):
    from submission.engine_hf import load_tokenizer

    label_ids = engine_vllm.label_token_ids(load_tokenizer(tiny_model_dir))
    api, calls = fake_api(tiny_model, lift_ids=label_ids)
    monkeypatch.setattr(engine_vllm, "load_vllm_api", lambda: api)
    hf = predict(frame, RunSettings(model_dir=tiny_model_dir, device="cpu", engine="hf"))
    got = predict(frame, RunSettings(model_dir=tiny_model_dir, device="cpu", engine="vllm"))
    assert got.meta["engine"] == "vllm" and got.meta["engine_fallback"] is None
    (kwargs,) = calls["init"]
    assert kwargs["skip_tokenizer_init"] is True and kwargs["enforce_eager"] is False
    assert kwargs["max_model_len"] == 4097 and kwargs["dtype"] == "bfloat16"
    assert {(p.max_tokens, p.temperature, p.logprobs) for p in calls["params"]} == {(1, 0.0, 20)}
    assert all(set(p) == {"prompt_token_ids"} for p in calls["prompts"])
    # Renormalised label probabilities are the same from logits or from logprobs when every label is shown.
    np.testing.assert_allclose(got.probabilities, hf.probabilities, atol=1e-6)
    assert got.scores == hf.scores


def test_labels_missing_from_the_top_20_get_a_floor_not_zero(tiny_model_dir, tiny_model, frame, monkeypatch):
    api, _ = fake_api(tiny_model)  # random tiny model: the label tokens are rarely in its top 20
    monkeypatch.setattr(engine_vllm, "load_vllm_api", lambda: api)
    got = predict(frame, RunSettings(model_dir=tiny_model_dir, device="cpu", engine="vllm"))
    allowed = np.array([[p > 0 for p in row] for row in got.probabilities])
    assert np.isfinite(got.probabilities).all() and allowed.sum(axis=1).min() >= 2


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


def test_vllm_is_not_imported_on_the_transformers_path(tiny_model_dir, frame):
    import sys

    predict(frame, RunSettings(model_dir=tiny_model_dir, device="cpu"))
    assert "vllm" not in sys.modules


def test_vllm_failing_mid_run_hands_the_rest_to_transformers(tiny_model_dir, tiny_model, frame, monkeypatch):
    api, calls = fake_api(tiny_model)
    real_generate = api.LLM.generate

    def generate_then_fail(self, prompts, params, use_tqdm=True):
        if calls.get("params"):
            raise RuntimeError("EngineDeadError: engine core died")
        return real_generate(self, prompts, params, use_tqdm)

    api.LLM.generate = generate_then_fail
    monkeypatch.setattr(engine_vllm, "load_vllm_api", lambda: api)
    hf = predict(frame, RunSettings(model_dir=tiny_model_dir, device="cpu", engine="hf"))
    got = predict(frame, RunSettings(model_dir=tiny_model_dir, device="cpu", engine="vllm", chunk_tokens=1500))
    assert got.meta["engine"] == "hf" and "EngineDeadError" in got.meta["engine_fallback"]
    assert got.meta["fallback_rows"] == 0 and len(calls["params"]) == 1
    assert len(got.scores) == len(hf.scores)


def test_prompts_are_shortened_to_the_max_model_len_vllm_started_with(tiny_model_dir, tiny_model, frame, monkeypatch):
    api, calls = fake_api(tiny_model, fail_starts=2)  # the third rung starts with max_model_len=2048
    monkeypatch.setattr(engine_vllm, "load_vllm_api", lambda: api)
    long = frame.copy()
    long.loc[0, "prompt"] = long.loc[0, "prompt"].replace("### Ответ для оценки:\n", "### Ответ для оценки:\n" + "слово " * 3000)
    result = predict(long, RunSettings(model_dir=tiny_model_dir, device="cpu", engine="vllm"))
    lengths = [len(p["prompt_token_ids"]) for p in calls["prompts"]]
    assert max(lengths) <= 2047 and max(lengths) > 1500
    assert result.meta["truncated_rows"] >= 1
