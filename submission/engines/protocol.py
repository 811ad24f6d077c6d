"""The contract every scoring engine implements (transformers: engine_hf.py, vLLM: engine_vllm.py).

The runtime talks to an engine only through this protocol: it scores token-id prompts, reads the throughput
counters, and calls ``close()`` before replacing a failed engine; it never reaches into an engine's attributes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    import numpy as np

# The scoring engines by name (each engine's ``name``, the meta file's ``engine``, the settings tables' key) and what
# every ``--engine`` flag takes (the runtime's, ``trainer evaluate``'s and ``trainer distill``'s): ``auto`` lets the
# scorer choose (submission/scoring/scorer.py:choose_engine).
ENGINE_NAMES: tuple[str, ...] = ("hf", "vllm")
ENGINE_CHOICES: tuple[str, ...] = ("auto", *ENGINE_NAMES)


def engine_problem(engine: str) -> str | None:
    """What is wrong with an ``--engine`` value, as the one line a CLI prints after ``error:``; None when valid."""
    if engine in ENGINE_CHOICES:
        return None
    return f"--engine {engine!r}: choose {', '.join(ENGINE_CHOICES)}"


@runtime_checkable
class ScoringEngine(Protocol):
    """One loaded model that scores rendered prompts (token ids)."""

    name: str  # one of ENGINE_NAMES
    device: str  # "cpu", "cuda", "cuda:1", ...: where the engine really runs
    dtype: str  # "float32", "bfloat16", "float16": the weights' dtype there
    tokens_scored: int  # prompt tokens scored so far ...
    seconds: float  # ... and the engine seconds they took: measured throughput = tokens_scored / seconds
    tokens_computed: int  # prompt tokens really computed: fewer than scored where prefixes were shared or cached
    oom_splits: int  # batches halved after running out of accelerator memory
    start_failures: list[str]  # start-up settings that failed before this engine started (vLLM's ladder)

    def label_logits(self, prompts: Sequence[Sequence[int]]) -> np.ndarray:
        """[N, 5] logits (or logprobs) of the label tokens, LABELS order, in input order."""
        ...

    def generate_texts(self, prompts: Sequence[Sequence[int]], max_new_tokens: int) -> list[str]:
        """Greedy continuations (new text only), for generative judges."""
        ...

    def sample_texts(self, prompts: Sequence[Sequence[int]], max_new_tokens: int, samples: int, temperature: float,
                     seed: int = 0) -> list[list[str]]:
        """``samples`` sampled continuations per prompt (``trainer distill`` with a free-text teacher)."""
        ...

    def close(self) -> None:
        """Free the model and its accelerator memory; the engine is not used afterwards (its counters may be read)."""
        ...
