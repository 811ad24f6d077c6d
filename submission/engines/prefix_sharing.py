"""Prefix-shared scoring: rows that share a long prefix (one answer judged on several criteria) compute it once.

A POLLUX prompt puts the criterion and its scale last, so the rows about one answer share the chat template, the
task, the reference and the answer. :func:`prefix_groups` finds those rows wherever they stand (sorted sequences,
neighbours' common prefixes, split where sharing stops paying off); :func:`plan_shared_batches` packs the groups'
rows under the engine's token budget; :func:`shared_label_logits` runs one batch: the groups' prefixes in one
forward (``use_cache=True``: a ``DynamicCache``), the cache rows repeated for each row of their group
(``DynamicCache.batch_select_indices``), then the suffixes, left-padded so the last position is every row's answer
position, with positions continuing from each row's prefix length. The result equals unshared scoring to float
rounding (tests/submission/engines/test_prefix_sharing.py checks 1e-5 in fp32).

The same grouping, on prompt texts, keeps such rows in one chunk (submission/scoring/scorer.py:plan_chunks), and
its order submits them together to vLLM (:func:`shared_prefix_order`), whose automatic prefix caching does the rest.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from submission.engines.devices import is_out_of_memory, release_accelerator_memory

log = logging.getLogger(__name__)

# A group shares its prefix only when that saves at least this many tokens over its rows (a shared batch costs an
# extra forward) and the prefix is at least half of the group's mean row: one answer judged on several criteria
# shares 60-90% of each row; the chat template alone, which every row has, stays on the unshared path, so a file
# without repeated answers is scored exactly as without sharing.
MIN_SAVED_TOKENS = 64
MIN_PREFIX_SHARE = 0.5
_BLOCK = 256  # elements compared per slice when measuring a common prefix


@dataclass(frozen=True)
class PrefixGroup:
    """Row indices that share their first ``prefix`` tokens; ``prefix`` 0: a row that shares nothing worth it."""

    rows: tuple[int, ...]
    prefix: int


def common_prefix_length(a: Sequence, b: Sequence) -> int:
    """How many leading elements ``a`` and ``b`` (token lists or strings) have in common; slices compare in C."""
    limit = min(len(a), len(b))
    start = 0
    while start < limit and a[start:start + _BLOCK] == b[start:start + _BLOCK]:
        start += _BLOCK
    if start >= limit:
        return limit
    lo, hi = start, min(start + _BLOCK, limit)  # a[:lo] == b[:lo]; they differ before hi
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if a[lo:mid] == b[lo:mid]:
            lo = mid
        else:
            hi = mid
    return hi if a[lo:hi] == b[lo:hi] else lo


def shared_prefix_order(sequences: Sequence[Sequence]) -> list[int]:
    """Indices in lexicographic order of their sequences: rows that share a prefix stand next to each other."""
    return sorted(range(len(sequences)), key=sequences.__getitem__)


def prefix_groups(sequences: Sequence[Sequence], min_saved: int = MIN_SAVED_TOKENS,
                  min_share: float = MIN_PREFIX_SHARE) -> list[PrefixGroup]:
    """Every index in one group: rows sharing a prefix worth computing once, and singletons (``prefix`` 0).

    Sorted neighbours' common prefixes form a tree (split at the shortest); each subtree is kept whole when sharing
    its common prefix saves more than its best split does. A prefix always leaves each row at least its last token.
    """
    order = shared_prefix_order(sequences)
    lengths = [len(sequences[i]) for i in order]
    lcp = [min(common_prefix_length(sequences[order[k]], sequences[order[k + 1]]), lengths[k] - 1,
               lengths[k + 1] - 1) for k in range(len(order) - 1)]
    groups: list[PrefixGroup] = []
    for lo, hi, prefix in _best_segments(lcp, lengths, min_saved, min_share):
        if prefix:
            groups.append(PrefixGroup(tuple(order[lo:hi + 1]), prefix))
        else:
            groups.extend(PrefixGroup((order[k],), 0) for k in range(lo, hi + 1))
    return groups


def _best_segments(lcp: list[int], lengths: list[int], min_saved: int, min_share: float) -> list[tuple]:
    """(lo, hi, prefix) segments of the sorted rows maximising the tokens saved, left to right.

    The segments form the Cartesian tree of ``lcp`` (a node: the cut at a segment's shortest common prefix, the
    leftmost on ties), built with a stack in linear time; bottom-up, each node keeps its segment whole or takes its
    children's best. Iterative throughout (no recursion limit) and linear, so a file with no shared prefixes pays
    nothing for the search.
    """
    rows = len(lengths)
    if rows < 2:
        return [(0, 0, 0)] if rows else []
    left, right, stack = [-1] * len(lcp), [-1] * len(lcp), []
    for k, value in enumerate(lcp):
        last = -1
        while stack and lcp[stack[-1]] > value:
            last = stack.pop()
        left[k] = last
        if stack:
            right[stack[-1]] = k
        stack.append(k)
    root, cumulative = stack[0], np.concatenate([[0], np.cumsum(lengths)]).tolist()
    order, pending = [], [root]
    while pending:
        k = pending.pop()
        order.append(k)
        pending += [child for child in (left[k], right[k]) if child >= 0]
    span, saved, whole = [(0, 0)] * len(lcp), [0] * len(lcp), [False] * len(lcp)
    for k in reversed(order):  # children before their parent
        lo = span[left[k]][0] if left[k] >= 0 else k
        hi = span[right[k]][1] if right[k] >= 0 else k + 1
        span[k], count, prefix = (lo, hi), hi - lo + 1, lcp[k]
        children = (saved[left[k]] if left[k] >= 0 else 0) + (saved[right[k]] if right[k] >= 0 else 0)
        kept = (count - 1) * prefix
        worth = kept >= min_saved and prefix >= min_share * (cumulative[hi + 1] - cumulative[lo]) / count
        whole[k] = worth and kept >= children
        saved[k] = kept if whole[k] else children
    segments, pending = [], [("node", root)]
    while pending:
        kind, k = pending.pop()
        if kind == "row":
            segments.append((k, k, 0))
        elif whole[k]:
            segments.append((*span[k], lcp[k]))
        else:  # the right part goes on the stack first, so the left part comes out first
            pending.append(("node", right[k]) if right[k] >= 0 else ("row", k + 1))
            pending.append(("node", left[k]) if left[k] >= 0 else ("row", k))
    return segments


def text_groups(indices: Sequence[int], texts: Sequence[str]) -> list[list[int]]:
    """``indices`` grouped by a long shared prefix of their texts (before tokenising: chunk planning).

    Characters stand in for tokens (about four to a token); singletons are groups of one.
    """
    groups = prefix_groups([texts[i] for i in indices], 4 * MIN_SAVED_TOKENS, MIN_PREFIX_SHARE)
    return sorted(([indices[k] for k in group.rows] for group in groups), key=min)


@dataclass(frozen=True)
class SharedBatch:
    """Rows scored in one shared forward: ``rows[j]`` continues the prefix of ``groups[members[j]]``."""

    groups: tuple[PrefixGroup, ...]
    rows: tuple[int, ...]
    members: tuple[int, ...]

    def tokens(self, lengths: Sequence[int]) -> int:
        """Prompt tokens this batch computes: each group's prefix once, then every row's suffix."""
        return sum(g.prefix for g in self.groups) + sum(lengths[r] - self.groups[m].prefix
                                                       for r, m in zip(self.rows, self.members, strict=True))

    def halves(self) -> tuple[SharedBatch, SharedBatch]:
        """The rows split in two batches, each with the groups its rows need (out-of-memory back-off)."""
        half = len(self.rows) // 2
        return self._part(0, half), self._part(half, len(self.rows))

    def _part(self, start: int, stop: int) -> SharedBatch:
        used = sorted(set(self.members[start:stop]))
        renumber = {m: k for k, m in enumerate(used)}
        return SharedBatch(tuple(self.groups[m] for m in used), self.rows[start:stop],
                           tuple(renumber[m] for m in self.members[start:stop]))


def plan_shared_batches(groups: Sequence[PrefixGroup], lengths: Sequence[int], token_budget: int,
                        max_rows: int = 256) -> list[SharedBatch]:
    """The shared groups' rows packed into batches with rows x (longest prefix + longest suffix) <= token_budget.

    Groups go longest prefix first, each group's rows longest first. A group that fits a batch of its own is never
    split: when it does not fit beside the rows already planned, it starts the next batch (splitting it would compute
    its prefix twice). Only a group larger than a batch continues in the next one (its prefix computed again there);
    a row alone over the budget gets a batch of its own.
    """
    batches: list[SharedBatch] = []
    groups_in, rows_in, members_in = [], [], []
    longest_prefix = longest_suffix = 0

    def flush():
        if rows_in:
            batches.append(SharedBatch(tuple(groups_in), tuple(rows_in), tuple(members_in)))
        groups_in.clear(), rows_in.clear(), members_in.clear()

    def fits(rows: int, prefix: int, suffix: int) -> bool:
        return rows <= max_rows and rows * (prefix + suffix) <= token_budget

    for group in sorted((g for g in groups if g.prefix), key=lambda g: -g.prefix):
        group_suffix = max(lengths[r] for r in group.rows) - group.prefix
        if (rows_in and fits(len(group.rows), group.prefix, group_suffix)
                and not fits(len(rows_in) + len(group.rows), max(longest_prefix, group.prefix),
                             max(longest_suffix, group_suffix))):
            flush()
            longest_prefix = longest_suffix = 0
        for row in sorted(group.rows, key=lambda r: -lengths[r]):
            suffix = lengths[row] - group.prefix
            prefix_after, suffix_after = max(longest_prefix, group.prefix), max(longest_suffix, suffix)
            if rows_in and not fits(len(rows_in) + 1, prefix_after, suffix_after):
                flush()
                prefix_after, suffix_after = group.prefix, suffix
            if not groups_in or groups_in[-1] is not group:
                groups_in.append(group)
            rows_in.append(row)
            members_in.append(len(groups_in) - 1)
            longest_prefix, longest_suffix = prefix_after, suffix_after
    flush()
    return batches


class PrefixSharingUnsupported(RuntimeError):
    """The model's cache is not a plain per-layer key/value cache (sliding-window or recurrent layers)."""


def _left_padded(rows: Sequence[Sequence[int]], pad_id: int):
    import torch

    longest = max(len(r) for r in rows)
    ids = torch.full((len(rows), longest), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), longest), dtype=torch.long)
    for i, row in enumerate(rows):
        if len(row):
            ids[i, longest - len(row):] = torch.as_tensor(list(row), dtype=torch.long)
            mask[i, longest - len(row):] = 1
    return ids, mask


def shared_label_logits(model, device: str, prompts: Sequence[Sequence[int]], batch: SharedBatch,
                        label_ids: Sequence[int], pad_id: int) -> np.ndarray:
    """[len(batch.rows), 5] label logits: each group's prefix computed once, every row's suffix on its cache."""
    import torch
    from transformers.cache_utils import DynamicLayer

    prefixes = [prompts[g.rows[0]][:g.prefix] for g in batch.groups]
    prefix_ids, prefix_mask = _left_padded(prefixes, pad_id)
    members = torch.as_tensor(batch.members, dtype=torch.long)
    suffixes = [prompts[row][batch.groups[m].prefix:] for row, m in zip(batch.rows, batch.members, strict=True)]
    suffix_ids, suffix_mask = _left_padded(suffixes, pad_id)
    prefix_len = torch.as_tensor([g.prefix for g in batch.groups], dtype=torch.long)[members]
    # Positions count real tokens only (as in the unshared forward): each suffix continues from its own prefix.
    suffix_positions = prefix_len[:, None] + (suffix_mask.cumsum(dim=1) - 1).clamp(min=0)
    with torch.inference_mode():
        cache = model(input_ids=prefix_ids.to(device), attention_mask=prefix_mask.to(device),
                      position_ids=(prefix_mask.cumsum(dim=1) - 1).clamp(min=0).to(device),
                      use_cache=True, logits_to_keep=1).past_key_values
        if any(type(layer) is not DynamicLayer for layer in getattr(cache, "layers", [None])):
            raise PrefixSharingUnsupported(f"{type(cache).__name__} with layers other than DynamicLayer")
        cache.batch_select_indices(members.to(device))  # one cache row per suffix row: its group's prefix
        logits = model(input_ids=suffix_ids.to(device),
                       attention_mask=torch.cat([prefix_mask[members], suffix_mask], dim=1).to(device),
                       position_ids=suffix_positions.to(device), past_key_values=cache, use_cache=True,
                       logits_to_keep=1).logits[:, -1, :]
        return logits[:, list(label_ids)].float().cpu().numpy()


def score_shared_rows(engine, prompts: Sequence[Sequence[int]], out: np.ndarray,
                      progress: Callable[[int], None] | None = None) -> list[int]:
    """Score into ``out`` the rows that share a prefix (the transformers engine's hook); returns the other rows.

    Counts the tokens really computed on ``engine.tokens_computed``; out of memory halves a batch down to one row,
    counted on ``engine.oom_splits``. A model whose cache cannot be shared turns sharing off on the engine and hands
    every row not yet scored back.
    """
    lengths = [len(p) for p in prompts]
    groups = prefix_groups(prompts)
    unshared = [g.rows[0] for g in groups if not g.prefix]
    batches = plan_shared_batches(groups, lengths, engine.token_budget, engine.max_rows)
    for done, batch in enumerate(batches):
        try:
            _score_shared_batch(engine, prompts, batch, out, lengths)
        except PrefixSharingUnsupported as error:
            log.warning("prefix sharing off for this model: %s", error)
            engine.prefix_sharing = False
            return sorted(unshared + [r for b in batches[done:] for r in b.rows])
        if progress:
            progress(len(batch.rows))
    return unshared


def _score_shared_batch(engine, prompts, batch: SharedBatch, out: np.ndarray, lengths: list[int]) -> None:
    try:
        out[list(batch.rows)] = shared_label_logits(engine.model, engine.device, prompts, batch, engine.label_ids,
                                                    engine.pad_id)
    except Exception as error:  # noqa: BLE001 - only OOM is handled, everything else re-raises
        if not is_out_of_memory(error) or len(batch.rows) == 1:
            raise
        release_accelerator_memory()
        engine.oom_splits += 1
        log.warning("out of memory on a shared batch of %d rows; splitting it in half", len(batch.rows))
        for part in batch.halves():
            _score_shared_batch(engine, prompts, part, out, lengths)
        return
    engine.tokens_computed += batch.tokens(lengths)
