"""vLLM gets the rows that share a prefix one after another (its prefix cache then hits), and answers come back in
the caller's order; with sharing off the order is the caller's. The fake vLLM (tests/fake_vllm.py) stands in."""

from __future__ import annotations

import numpy as np

from submission.engines import engine_vllm
from submission.prompts.prompting import PromptRenderer
from tests.fake_vllm import fake_api
from tests.pollux_rows import pollux_prompts

CRITERION = "### Критерий оценки:"


def _engine(monkeypatch, tiny_model, tiny_model_dir, tokenizer, sharing: bool):
    api, calls = fake_api(tiny_model, cache_block=16)
    monkeypatch.setattr(engine_vllm, "load_vllm_api", lambda: api)
    engine = engine_vllm.VllmEngine(tiny_model_dir, tokenizer, max_model_len=1024, prefix_sharing=sharing)
    return engine, calls


def test_rows_sharing_a_prefix_are_submitted_together_and_answered_in_order(monkeypatch, tiny_model, tiny_model_dir,
                                                                           tiny_tokenizer):
    texts = pollux_prompts(answers=4, criteria=3, answer_words=60, singletons=2, seed=8)
    renderer = PromptRenderer(tiny_tokenizer, max_tokens=1024)
    ids = [renderer.render(t).input_ids for t in texts]
    answer_of = {tuple(i): t.split(CRITERION)[0] for i, t in zip(ids, texts, strict=True)}
    shared, calls = _engine(monkeypatch, tiny_model, tiny_model_dir, tiny_tokenizer, sharing=True)
    plain, plain_calls = _engine(monkeypatch, tiny_model, tiny_model_dir, tiny_tokenizer, sharing=False)
    out_shared, out_plain = shared.label_logits(ids), plain.label_logits(ids)
    np.testing.assert_allclose(out_shared, out_plain, atol=1e-6)  # row i's answer is row i's, in both orders
    order = [answer_of[tuple(p["prompt_token_ids"])] for p in calls["prompts"]]
    runs = [a for k, a in enumerate(order) if k == 0 or order[k - 1] != a]
    assert len(runs) == len(set(order))  # every answer's rows in one contiguous run
    assert [p["prompt_token_ids"] for p in plain_calls["prompts"]] == ids  # sharing off: the caller's order
    assert shared.tokens_scored == plain.tokens_scored
    assert shared.tokens_computed < plain.tokens_computed  # the recent-prefix cache hits only in the shared order
