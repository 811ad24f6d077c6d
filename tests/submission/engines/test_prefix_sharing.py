"""Prefix-shared scoring on the transformers engine: the same label probabilities as scoring every row on its own
(1e-5 in fp32), fewer tokens computed, whatever the rows' order, group sizes, batch budget or memory back-off."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from submission.engines.engine_hf import TransformersEngine
from submission.engines.prefix_sharing import (
    PrefixGroup,
    common_prefix_length,
    plan_shared_batches,
    prefix_groups,
    shared_prefix_order,
)
from submission.prompts.prompting import PromptRenderer
from submission.prompts.sections import parse_prompt
from submission.scoring.decoding import decide, probabilities_from_label_logits
from tests.pollux_rows import pollux_prompts

TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def rendered(tiny_tokenizer):
    """Token ids and rubrics of 5 answers x 3 criteria plus 4 answers judged once, shuffled (~350-400 tokens;
    the chat template all share is ~80, under the share worth a shared batch)."""
    prompts = pollux_prompts(answers=5, criteria=3, answer_words=120, singletons=4, seed=3)
    renderer = PromptRenderer(tiny_tokenizer, max_tokens=1024)
    return [renderer.render(p).input_ids for p in prompts], [parse_prompt(p).allowed for p in prompts]


def _engine(tiny_model_dir, tiny_model, tiny_tokenizer, sharing: bool, budget: int = 2048) -> TransformersEngine:
    return TransformersEngine(tiny_model_dir, device="cpu", token_budget=budget, model=tiny_model,
                              tokenizer=tiny_tokenizer, prefix_sharing=sharing)


def _scored(engine, ids, allowed):
    probs = probabilities_from_label_logits(engine.label_logits(ids), allowed)
    return probs, decide(probs, allowed)


@pytest.mark.parametrize("budget", [2048, 128], ids=["batched", "rows-longer-than-the-budget"])
def test_shared_scoring_equals_unshared_and_computes_fewer_tokens(tiny_model_dir, tiny_model, tiny_tokenizer,
                                                                  rendered, budget, monkeypatch):
    from submission.engines import prefix_sharing

    ids, allowed = rendered
    shared_rows = []
    real = prefix_sharing.shared_label_logits
    monkeypatch.setattr(prefix_sharing, "shared_label_logits",
                        lambda *args: shared_rows.extend(args[3].rows) or real(*args))
    assert min(len(r) for r in ids) > 128  # at 128 every row is over the budget: batches of one row
    plain = _engine(tiny_model_dir, tiny_model, tiny_tokenizer, sharing=False, budget=budget)
    shared = _engine(tiny_model_dir, tiny_model, tiny_tokenizer, sharing=True, budget=budget)
    p_plain, s_plain = _scored(plain, ids, allowed)
    p_shared, s_shared = _scored(shared, ids, allowed)
    assert np.abs(p_shared - p_plain).max() < TOLERANCE
    assert s_shared == s_plain
    assert shared.tokens_scored == plain.tokens_scored == plain.tokens_computed == sum(len(r) for r in ids)
    assert len(shared_rows) == 15  # the 5 answers' rows went through the shared forward, the 4 singletons not
    if budget == 2048:  # 5 groups of 3 rows: each shares ~80% of its rows, computed once instead of three times
        assert shared.tokens_computed < 0.7 * shared.tokens_scored
    else:  # a batch of one row over the budget recomputes its prefix: nothing saved, nothing lost
        assert shared.tokens_computed == shared.tokens_scored


def test_identical_rows_and_a_lone_row_score_as_unshared(tiny_model_dir, tiny_model, tiny_tokenizer, rendered):
    ids, allowed = rendered
    rows = [ids[0], ids[0], ids[0], ids[1]]  # a group whose prefix is the whole row but its last token, a singleton
    rubrics = [allowed[0]] * 3 + [allowed[1]]
    p_plain, _ = _scored(_engine(tiny_model_dir, tiny_model, tiny_tokenizer, sharing=False), rows, rubrics)
    shared = _engine(tiny_model_dir, tiny_model, tiny_tokenizer, sharing=True)
    p_shared, _ = _scored(shared, rows, rubrics)
    assert np.abs(p_shared - p_plain).max() < TOLERANCE
    assert shared.tokens_computed == (len(ids[0]) - 1) + 3 + len(ids[1])  # the prefix once, 3 last tokens


def test_out_of_memory_halves_a_shared_batch_and_the_result_is_unchanged(tiny_model_dir, tiny_model, tiny_tokenizer,
                                                                         rendered, monkeypatch):
    from submission.engines import prefix_sharing

    ids, allowed = rendered
    real = prefix_sharing.shared_label_logits

    def small_memory(model, device, prompts, batch, label_ids, pad_id):
        if len(batch.rows) > 2:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(model, device, prompts, batch, label_ids, pad_id)

    monkeypatch.setattr(prefix_sharing, "shared_label_logits", small_memory)
    p_plain, _ = _scored(_engine(tiny_model_dir, tiny_model, tiny_tokenizer, sharing=False), ids, allowed)
    shared = _engine(tiny_model_dir, tiny_model, tiny_tokenizer, sharing=True)
    p_shared, _ = _scored(shared, ids, allowed)
    assert shared.oom_splits > 0
    assert np.abs(p_shared - p_plain).max() < TOLERANCE


def test_a_model_whose_cache_cannot_be_shared_is_scored_unshared(tiny_model_dir, tiny_model, tiny_tokenizer, rendered,
                                                                 monkeypatch):
    from submission.engines import prefix_sharing

    def unsupported(*args):
        raise prefix_sharing.PrefixSharingUnsupported("DynamicSlidingWindowLayer")

    ids, allowed = rendered
    monkeypatch.setattr(prefix_sharing, "shared_label_logits", unsupported)
    p_plain, _ = _scored(_engine(tiny_model_dir, tiny_model, tiny_tokenizer, sharing=False), ids, allowed)
    shared = _engine(tiny_model_dir, tiny_model, tiny_tokenizer, sharing=True)
    p_shared, _ = _scored(shared, ids, allowed)
    assert not shared.prefix_sharing and shared.tokens_computed == shared.tokens_scored
    assert np.abs(p_shared - p_plain).max() < TOLERANCE


# -- grouping -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("length", [0, 1, 255, 256, 257, 700])
def test_common_prefix_length_on_token_lists_and_strings(length):
    a = list(range(1000))
    b = a[:length] + [-1] + a[length + 1:]
    assert common_prefix_length(a, b) == length
    assert common_prefix_length("x" * length + "a", "x" * length + "b") == length
    assert common_prefix_length(a[:length], a) == length


def test_groups_are_found_wherever_the_rows_stand_and_the_template_alone_is_not_shared():
    template = list(range(1000, 1040))  # 40 tokens every row has (the chat template)
    answer_a, answer_b = list(range(200)), list(range(300, 500))
    rows = [template + answer_a + [7, 1], template + list(range(600, 800)), template + answer_b + [7, 2],
            template + answer_a + [8, 3], template + answer_b + [8], template + answer_a + [9]]
    groups = {g.rows: g.prefix for g in prefix_groups(rows)}
    assert groups == {(0, 3, 5): 240, (2, 4): 240, (1,): 0}
    assert set(shared_prefix_order(rows)[:3]) in ({0, 3, 5}, {2, 4})  # a group is contiguous in the order


def test_shared_batches_hold_every_row_once_within_the_budget():
    lengths = [300, 310, 320, 280, 290, 100]
    groups = [PrefixGroup((0, 1, 2), 250), PrefixGroup((3, 4), 200), PrefixGroup((5,), 0)]
    batches = plan_shared_batches(groups, lengths, token_budget=700)
    rows = [r for b in batches for r in b.rows]
    assert sorted(rows) == [0, 1, 2, 3, 4]  # the singleton is left to the unshared path
    for b in batches:
        longest_prefix = max(g.prefix for g in b.groups)
        longest_suffix = max(lengths[r] - b.groups[m].prefix for r, m in zip(b.rows, b.members, strict=True))
        assert len(b.rows) == 1 or len(b.rows) * (longest_prefix + longest_suffix) <= 700
        assert all(r in b.groups[m].rows for r, m in zip(b.rows, b.members, strict=True))


def test_a_group_that_fits_a_batch_alone_is_never_split():
    # Three groups of 6 rows (prefix 660, suffix 100): two fit one 8,192-token batch only by splitting the second,
    # which would compute its prefix twice; each group whole in its own batch computes every prefix once.
    lengths = [760] * 18
    groups = [PrefixGroup(tuple(range(k, k + 6)), 660) for k in (0, 6, 12)]
    batches = plan_shared_batches(groups, lengths, token_budget=8192)
    assert sorted(len(b.rows) for b in batches) == [6, 6, 6]
    assert sum(b.tokens(lengths) for b in batches) == 3 * 660 + 18 * 100
    # A group larger than any batch still continues in the next one, within the budget.
    big = plan_shared_batches([PrefixGroup(tuple(range(18)), 660)], lengths, token_budget=8192)
    assert [len(b.rows) for b in big] == [10, 8]


def _reference_segments(lcp, lengths, min_saved, min_share, lo=0, hi=None):
    """The search written plainly (quadratic, recursive): split at the leftmost shortest common prefix, keep a
    segment whole when that is worth it and saves at least what its two halves save."""
    hi = len(lengths) - 1 if hi is None else hi
    if lo == hi:
        return 0, [(lo, hi, 0)]
    cut = min(range(lo, hi), key=lcp.__getitem__)
    left = _reference_segments(lcp, lengths, min_saved, min_share, lo, cut)
    right = _reference_segments(lcp, lengths, min_saved, min_share, cut + 1, hi)
    rows, prefix = hi - lo + 1, lcp[cut]
    whole = (rows - 1) * prefix
    if whole >= min_saved and prefix >= min_share * sum(lengths[lo:hi + 1]) / rows and whole >= left[0] + right[0]:
        return whole, [(lo, hi, prefix)]
    return left[0] + right[0], left[1] + right[1]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 40), st.integers(1, 80)), min_size=1, max_size=40))
def test_the_linear_segment_search_equals_the_plain_one(rows):
    from submission.engines.prefix_sharing import _best_segments

    lengths = [length + 40 for _, length in rows]  # every row longer than any common prefix drawn
    lcp = [value for value, _ in rows[:-1]]  # ties are frequent at this range: the leftmost cut must win
    assert _best_segments(lcp, lengths, 30, 0.3) == _reference_segments(lcp, lengths, 30, 0.3)[1]


def test_grouping_a_file_without_shared_prefixes_is_linear():
    """4,000 rows that share nothing (a degenerate tree: every common prefix 0): one segment per row, and the search
    visits each cut once (the plain search compared ~8 M pairs here)."""
    from submission.engines import prefix_sharing

    calls = []
    lcp = [0] * 3999
    real_getitem = list.__getitem__

    class Counting(list):
        def __getitem__(self, k):
            calls.append(k)
            return real_getitem(self, k)

    segments = prefix_sharing._best_segments(Counting(lcp), [500] * 4000, 64, 0.5)
    assert segments == [(k, k, 0) for k in range(4000)]
    assert len(calls) < 10 * 4000
