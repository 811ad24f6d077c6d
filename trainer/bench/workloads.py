"""Token-id workloads for the speed benchmarks: contest-like lengths, and POLLUX-shaped sets (N answers x K criteria
whose rows share template + task + answer, issue #31). Random ids: speed does not depend on which tokens."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

POLLUX_GRID = "1x150,3x150,6x150,14x150,1x600,3x600,6x600,14x600"  # K criteria x answer tokens (issue #31)
POLLUX_TEMPLATE_TOKENS = 60  # chat template + task before the answer
POLLUX_SUFFIX_TOKENS = 100  # criterion + its scale + the assistant turn, per row (80-120)


@dataclass
class Workload:
    """Token-id prompts with contest-like lengths; the last token of each is a fixed 'answer position' token."""

    prompts: list[list[int]]
    seed: int

    @property
    def tokens(self) -> int:
        return sum(len(p) for p in self.prompts)


def make_workload(rows: int, vocab_size: int, seed: int = 0, scale: float = 1.0) -> Workload:
    """Log-normal lengths (median ~800, clipped to 150..4000 tokens) times ``scale``; random ids below the vocab."""
    rng = np.random.default_rng(seed)
    lengths = np.clip(rng.lognormal(mean=np.log(800), sigma=0.6, size=rows), 150, 4000) * scale
    lengths = np.maximum(lengths.astype(int), 8)
    prompts = [rng.integers(10, vocab_size - 1, size=n).tolist() for n in lengths]
    return Workload(prompts, seed)


def parse_pollux_grid(text: str) -> list[tuple[int, int]]:
    """``"6x600,1x150"`` -> [(6, 600), (1, 150)] (criteria per answer, answer tokens); ``""`` or ``none``: []."""
    if text.strip().lower() in ("", "none"):
        return []
    grid = []
    for item in text.split(","):
        criteria, _, answer = item.strip().lower().partition("x")
        if not (criteria.isdigit() and answer.isdigit() and int(criteria) > 0 and int(answer) > 0):
            raise ValueError(f"{item.strip()!r}: expected CRITERIAxANSWER_TOKENS, e.g. 6x600")
        grid.append((int(criteria), int(answer)))
    return grid


def make_pollux_workload(rows: int, criteria: int, answer_tokens: int, vocab_size: int, seed: int = 0) -> Workload:
    """About ``rows`` rows (whole answers, at least 2): each answer (``answer_tokens`` +-10%) judged on ``criteria``
    criteria; a row is template + task (60 tokens) + answer + its own criterion/scale suffix (80-120), the rows of
    every answer sharing all before the suffix; shuffled, as a test file does not order rows by answer."""
    rng = np.random.default_rng(seed)
    template = rng.integers(10, vocab_size - 1, size=POLLUX_TEMPLATE_TOKENS).tolist()
    prompts = []
    for _ in range(max(2, -(-rows // criteria))):
        answer = rng.integers(10, vocab_size - 1, size=int(answer_tokens * rng.uniform(0.9, 1.1))).tolist()
        for _ in range(criteria):
            suffix = rng.integers(10, vocab_size - 1, size=int(rng.integers(80, 121))).tolist()
            prompts.append(template + answer + suffix)
    order = rng.permutation(len(prompts))
    return Workload([prompts[i] for i in order], seed)
