"""vLLM glue against fakes shaped like vLLM 0.26 outputs (no GPU, no vllm package): the path a GPU run takes.

vLLM failures (missing, not starting, dying mid-run) are in tests/robustness/test_engine_faults.py.
"""

from __future__ import annotations

import numpy as np
import pytest

from submission import engine_vllm
from submission.data import read_test_csv
from submission.runtime import RunSettings, predict
from tests.fake_vllm import fake_api


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
