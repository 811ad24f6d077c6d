"""The runtime, `trainer evaluate` and `trainer distill` score through one path: the same probabilities per row."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

MAX_TOKENS = 1024
ROWS = 16


@pytest.fixture(scope="module")
def prompts(synth_dir) -> list[str]:
    return pd.read_csv(synth_dir / "test.csv")["prompt"].head(ROWS).tolist()


@pytest.fixture(scope="module")
def runtime_probs(tiny_model_dir, prompts) -> np.ndarray:
    from submission.runtime.runtime import RunSettings, predict

    frame = {"id": [f"r{i}" for i in range(len(prompts))], "prompt": prompts}
    result = predict(frame, RunSettings(model_dir=tiny_model_dir, engine="hf", device="cpu", max_tokens=MAX_TOKENS))
    assert result.meta["fallback_rows"] == 0 and result.meta["engine"] == "hf"
    return result.probabilities


def assert_same(probs, expected) -> None:
    np.testing.assert_allclose(probs, expected, rtol=0, atol=1e-6)


def test_runtime_evaluate_and_distill_give_the_same_probabilities(tiny_model_dir, prompts, runtime_probs):
    from trainer.evaluation.evaluate import score_rows
    from trainer.recipes.distill import teacher_probabilities

    evaluated, allowed, _ = score_rows(tiny_model_dir, prompts, MAX_TOKENS, "cpu", "hf")
    distilled, mode = teacher_probabilities(tiny_model_dir, prompts, engine="hf", device="cpu", max_tokens=MAX_TOKENS)
    assert mode == "score"
    assert_same(evaluated, runtime_probs)
    assert_same(distilled, runtime_probs)
    # Rows differ from one another, so agreeing row by row says something.
    assert np.abs(runtime_probs - runtime_probs.mean(axis=0)).max() > 1e-3
    assert any(len(a) < 5 for a in allowed)


def _hand_scored(tiny_model_dir, prompts, system_prompt="default", renormalise=True) -> np.ndarray:
    """Render with PromptRenderer and score with TransformersEngine by hand (trainer evaluate before the scorer)."""
    from submission.engines.engine_hf import TransformersEngine
    from submission.prompts.prompting import PromptRenderer
    from submission.scoring.decoding import LABELS, probabilities_from_label_logits

    engine = TransformersEngine(tiny_model_dir, device="cpu")
    kwargs = {} if system_prompt == "default" else {"system_prompt": system_prompt}
    rendered = PromptRenderer(engine.tokenizer, max_tokens=MAX_TOKENS, **kwargs).render_many(prompts)
    logits = engine.label_logits([r.input_ids for r in rendered])
    if renormalise:
        return probabilities_from_label_logits(logits, [r.sections.allowed for r in rendered])
    return probabilities_from_label_logits(logits, [LABELS] * len(rendered))  # every label, rubric ignored


def test_the_agreement_sees_a_path_that_renders_or_decodes_differently(tiny_model_dir, prompts, runtime_probs):
    assert_same(_hand_scored(tiny_model_dir, prompts), runtime_probs)  # the old evaluate path, reproduced
    with pytest.raises(AssertionError):  # no system prompt: another rendering
        assert_same(_hand_scored(tiny_model_dir, prompts, system_prompt=None), runtime_probs)
    with pytest.raises(AssertionError):  # softmax over all five labels: another decoding
        assert_same(_hand_scored(tiny_model_dir, prompts, renormalise=False), runtime_probs)


def test_evaluate_scores_on_vllm_when_asked(tiny_model_dir, tiny_model, prompts, runtime_probs, monkeypatch):
    from submission.engines import engine_vllm
    from submission.engines.engine_hf import load_tokenizer
    from submission.scoring.decoding import label_token_ids
    from tests import fake_vllm
    from trainer.evaluation.evaluate import score_rows

    calls: dict = {}
    api, _ = fake_vllm.fake_api(tiny_model, calls=calls, lift_ids=label_token_ids(load_tokenizer(tiny_model_dir)))
    monkeypatch.setattr(engine_vllm, "load_vllm_api", lambda: api)
    on_vllm, _, _ = score_rows(tiny_model_dir, prompts, MAX_TOKENS, "cpu", "vllm")
    assert len(calls["prompts"]) == len(prompts)  # every row went through vLLM
    np.testing.assert_allclose(on_vllm, runtime_probs, atol=1e-4)


def test_evaluate_refuses_an_unknown_engine(tmp_path):
    from typer.testing import CliRunner

    from trainer.cli import app

    result = CliRunner().invoke(app, ["evaluate", str(tmp_path), "--engine", "onnx"])
    assert result.exit_code == 2 and "--engine 'onnx'" in result.output
