"""Our vLLM call sites (submission/engines/engine_vllm.py, run.sh) against the pinned vLLM wheel's source.

vLLM needs CUDA to import, so its 0.26 source is read with ast (tests/contract_wheels.py). The keywords checked are
the ones the engine really passes: it runs here on the fake of tests/fake_vllm.py, which records every call.
"""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest

from submission.engines import engine_vllm
from tests import fake_vllm
from tests.contract_wheels import ROOT, class_fields, explicit_params, find_class, find_function, open_wheel, pinned


@pytest.fixture(scope="module")
def vllm_wheel():
    with open_wheel("vllm") as archive:
        yield archive


@pytest.fixture(scope="module")
def recorded(tiny_model_dir, tiny_model):
    """Every LLM(...), generate(...) and SamplingParams(...) the engine makes for scoring and for generation."""
    from submission.engines.engine_hf import load_tokenizer

    api, calls = fake_vllm.fake_api(tiny_model)
    original = engine_vllm.load_vllm_api
    engine_vllm.load_vllm_api = lambda: api
    try:
        engine = engine_vllm.VllmEngine(tiny_model_dir, load_tokenizer(tiny_model_dir), max_model_len=512)
        engine.label_logits([[5, 6, 7]])
        engine.generate_texts([[5, 6, 7]], max_new_tokens=2)
        engine.sample_texts([[5, 6, 7]], max_new_tokens=2, samples=3, temperature=0.8, seed=1)
    finally:
        engine_vllm.load_vllm_api = original
    return calls


def test_llm_accepts_every_keyword_the_engine_passes(vllm_wheel, recorded):
    init = explicit_params(find_function(vllm_wheel, "vllm/entrypoints/llm.py", "LLM.__init__"))
    engine_args = class_fields(find_class(vllm_wheel, "vllm/engine/arg_utils.py", "EngineArgs"))  # LLM's **kwargs
    used = {key for kwargs in recorded["init"] for key in kwargs}
    assert used and not used - (init | engine_args), f"vllm=={pinned('vllm')} has no {sorted(used - init - engine_args)}"


def test_sampling_params_and_generate_take_what_we_pass(vllm_wheel, recorded):
    fields = class_fields(find_class(vllm_wheel, "vllm/sampling_params.py", "SamplingParams"))
    used = {f.name for p in recorded["params"] for f in dataclasses.fields(p) if getattr(p, f.name) != f.default}
    assert used == {"max_tokens", "temperature", "logprobs", "logprob_token_ids", "detokenize", "n", "seed"}
    assert used <= fields, f"vllm=={pinned('vllm')} SamplingParams has no {sorted(used - fields)}"
    generate = explicit_params(find_function(vllm_wheel, "vllm/entrypoints/llm.py", "LLM.generate"))
    calls = [n for n in ast.walk(ast.parse(Path(engine_vllm.__file__).read_text(encoding="utf-8")))
             if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr == "generate"]
    assert calls and all(len(c.args) == 2 and {k.arg for k in c.keywords} <= generate for c in calls)
    assert {"prompts", "sampling_params", "use_tqdm"} <= generate


def test_logprob_token_ids_means_what_the_engine_assumes(vllm_wheel, recorded):
    """The pinned source documents exact ids + the sampled token, caps the list at 128 and wants logprobs == len."""
    source = vllm_wheel.read("vllm/sampling_params.py").decode()
    assert "logprobs for exactly these token IDs will be returned" in source
    assert "logprobs must equal len(logprob_token_ids)" in source
    cap = int(source.split("MAX_LOGPROB_TOKEN_IDS = ")[1].split()[0])
    (scoring,) = [p for p in recorded["params"] if p.logprob_token_ids]
    assert scoring.logprobs == len(scoring.logprob_token_ids) == 5 <= cap
    assert scoring.detokenize is False and scoring.max_tokens == 1
    # vLLM's own scoring endpoint makes the same request (max_tokens=1, logprobs=len(ids), logprob_token_ids=ids).
    serving = vllm_wheel.read("vllm/entrypoints/generate/generative_scoring/serving.py").decode()
    assert "logprob_token_ids=request.label_token_ids" in serving
    assert "logprobs=len(request.label_token_ids)" in serving


def test_the_fake_has_the_shapes_of_the_real_outputs(vllm_wheel, recorded):
    assert {f.name for f in dataclasses.fields(fake_vllm.Logprob)} <= class_fields(
        find_class(vllm_wheel, "vllm/logprobs.py", "Logprob"))
    completion = class_fields(find_class(vllm_wheel, "vllm/outputs.py", "CompletionOutput"))
    assert {"token_ids", "logprobs", "text"} <= completion  # what the engine and the fake read / write
    tokens_prompt = class_fields(find_class(vllm_wheel, "vllm/inputs/llm.py", "TokensPrompt"))
    assert {key for prompt in recorded["prompts"] for key in prompt} == {"prompt_token_ids"} <= tokens_prompt
    assert "TokensPrompt" in vllm_wheel.read("vllm/inputs/__init__.py").decode()  # `from vllm.inputs import ...`


def test_run_sh_switches_off_usage_stats_by_names_vllm_reads(vllm_wheel):
    run_sh = (ROOT / "run.sh").read_text(encoding="utf-8")
    envs = vllm_wheel.read("vllm/envs.py").decode()
    for name in ("VLLM_NO_USAGE_STATS", "VLLM_DO_NOT_TRACK", "DO_NOT_TRACK"):
        assert f"{name}=1" in run_sh and f'"{name}"' in envs
