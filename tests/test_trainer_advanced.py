"""Augmentation keeps labels (or lowers them by the rubric); blend weights are fitted, not assumed."""

from __future__ import annotations

import random

import numpy as np
import pandas as pd


def _frame(synth_dir):
    return pd.read_csv(synth_dir / "train.csv", dtype={"id": str})


def test_paraphrase_and_noise_keep_the_parsed_rubric_and_answer_words(synth_dir):
    from submission.sections import parse_prompt
    from trainer.augment import format_noise, paraphrase_headers

    rng = random.Random(0)
    changed = 0
    for prompt in _frame(synth_dir).prompt.head(40):
        new = format_noise(paraphrase_headers(prompt, rng), rng)
        before, after = parse_prompt(prompt), parse_prompt(new)
        assert after.parsed and after.allowed == before.allowed
        assert after.answer.split() == before.answer.split() and after.criterion.strip() == before.criterion.strip()
        changed += new != prompt
    assert changed > 30


def test_hard_negatives_only_lower_top_scores(synth_dir):
    from submission.sections import parse_prompt
    from trainer.augment import hard_negative

    rng = random.Random(0)
    made = 0
    for row in _frame(synth_dir).itertuples():
        result = hard_negative(row.prompt, int(row.score), rng)
        top = max(s for s in parse_prompt(row.prompt).allowed if s >= 0)
        if result is None:
            continue
        assert int(row.score) == top and result[1] < top
        assert result[1] in parse_prompt(result[0]).allowed
        assert parse_prompt(result[0]).answer != parse_prompt(row.prompt).answer
        made += 1
    assert made > 10


def test_augment_frame_keeps_originals_and_marks_new_ids(synth_dir):
    from trainer.augment import augment_frame

    frame = _frame(synth_dir).head(50)
    out = augment_frame(frame, seed=0)
    assert list(out.id[:50]) == list(frame.id) and out.id.is_unique
    assert all(("#aug" in i) or ("#neg" in i) for i in out.id[50:])


def test_blend_weights_pick_the_informative_member():
    from trainer.advanced import fit_blend_weights

    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, size=200)
    good = np.full((200, 5), 0.05)
    good[np.arange(200), y + 1] = 0.8
    noise = rng.dirichlet(np.ones(5), size=200)
    allowed = [(0, 1, 2, 3)] * 200
    weights, value = fit_blend_weights([noise, good], y.tolist(), allowed, "accuracy")
    assert weights[1] > weights[0] and value > 0.95
