"""Rows about one answer are scored together: chunks keep them in one piece, the scores equal unshared scoring, and
a deadline that falls inside a group still leaves a complete file."""

from __future__ import annotations

import numpy as np
import pandas as pd

from submission.runtime.runtime import Deadline, RunSettings, predict
from submission.scoring.scorer import ScoringSettings, plan_chunks, score_prompts
from tests.pollux_rows import pollux_prompts

TOLERANCE = 1e-5
CRITERION = "### Критерий оценки:"


def _answer(prompt: str) -> str:
    return prompt.split(CRITERION)[0]


def _chunks_per_answer(chunks, prompts) -> dict[str, int]:
    seen: dict[str, set] = {}
    for k, chunk in enumerate(chunks):
        for i in chunk:
            seen.setdefault(_answer(prompts[i]), set()).add(k)
    return {answer: len(ks) for answer, ks in seen.items()}


def test_chunks_keep_the_rows_of_one_answer_together_wherever_they_stand():
    prompts = pollux_prompts(answers=6, criteria=5, answer_words=80, singletons=5, seed=2)
    lengths = [len(p) // 3 for p in prompts]
    budget = 3 * sum(lengths) // 11  # about three answers' rows per chunk
    shared = plan_chunks(list(range(len(prompts))), lengths, budget, texts=prompts)
    plain = plan_chunks(list(range(len(prompts))), lengths, budget)
    assert sorted(i for c in shared for i in c) == list(range(len(prompts)))
    assert set(_chunks_per_answer(shared, prompts).values()) == {1}
    assert max(_chunks_per_answer(plain, prompts).values()) > 1  # longest-first alone splits answers
    assert plain == plan_chunks(list(range(len(prompts))), lengths, budget, texts=None)


def test_a_group_larger_than_a_chunk_fills_chunks_of_its_own():
    prompts = pollux_prompts(answers=1, criteria=6, answer_words=80, singletons=2, seed=4)
    lengths = [100] * len(prompts)
    chunks = plan_chunks(list(range(len(prompts))), lengths, 250, texts=prompts)
    group = {i for i, p in enumerate(prompts) if sum(_answer(q) == _answer(p) for q in prompts) > 1}
    assert [len(c) for c in chunks if set(c) <= group] == [2, 2, 2]


def test_score_prompts_shares_prefixes_unless_switched_off(tiny_model_dir):
    prompts = pollux_prompts(answers=3, criteria=4, answer_words=100, singletons=2, seed=5)
    on = score_prompts(tiny_model_dir, prompts, ScoringSettings(device="cpu"))
    off = score_prompts(tiny_model_dir, prompts, ScoringSettings(device="cpu", prefix_sharing=False))
    assert on.scored.all() and off.scored.all()
    assert np.abs(on.probs - off.probs).max() < TOLERANCE
    assert off.tokens_computed == off.tokens_scored == on.tokens_scored
    assert on.tokens_computed < 0.6 * on.tokens_scored


class StepClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_deadline_inside_a_group_leaves_a_complete_file(tiny_model_dir):
    prompts = pollux_prompts(answers=3, criteria=6, answer_words=100, seed=6)
    frame = pd.DataFrame({"id": [f"r{i}" for i in range(len(prompts))], "prompt": prompts})
    settings = RunSettings(model_dir=tiny_model_dir, device="cpu", chunk_tokens=800)  # ~2 rows of a group a chunk
    full = predict(frame, RunSettings(model_dir=tiny_model_dir, device="cpu", prefix_sharing=False))
    clock = StepClock()

    def next_chunk():
        clock.now += 40.0

    cut = predict(frame, settings, Deadline(100.0, clock=clock, before_chunk=next_chunk))  # chunks at 0, 40, 80
    meta = cut.meta
    assert len(cut.scores) == len(prompts) and meta["fallback_rows"] == meta["fallback_reasons"]["deadline"] > 0
    scored = np.abs(cut.probabilities - full.probabilities).max(axis=1) < TOLERANCE  # the rest got the prior
    assert scored.sum() == len(prompts) - meta["fallback_rows"]
    by_answer = pd.Series(scored).groupby([_answer(p) for p in prompts]).mean()
    assert ((by_answer > 0) & (by_answer < 1)).any()  # the deadline fell inside an answer's group
    assert meta["prefix_sharing"] and meta["tokens_computed"] < meta["tokens"]
