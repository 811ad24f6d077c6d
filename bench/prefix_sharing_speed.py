"""Prefix sharing: shared vs unshared tokens/s on the transformers engine, CPU, one thread (BENCHMARKS.md).

    python -m trainer tiny-model /tmp/h31/tiny
    OMP_NUM_THREADS=1 python bench/prefix_sharing_speed.py /tmp/h31/tiny
"""

from __future__ import annotations

import random
import sys
import time


def workload(answers: int, criteria: int, answer_tokens: int, seed: int = 0) -> list[list[int]]:
    """60-token template + answer + 100-token criterion/scale suffix per row; the rows shuffled."""
    rng = random.Random(seed)
    template = [rng.randrange(1000) for _ in range(60)]
    rows = []
    for _ in range(answers):
        prefix = template + [rng.randrange(1000) for _ in range(answer_tokens)]
        rows += [prefix + [rng.randrange(1000) for _ in range(100)] for _ in range(criteria)]
    rng.shuffle(rows)
    return rows


def main(model_dir: str) -> None:
    import torch

    from submission.engines.engine_hf import TransformersEngine

    torch.set_num_threads(1)
    engine = TransformersEngine(model_dir, device="cpu")
    for criteria, answer_tokens in [(6, 600), (1, 600), (3, 150), (14, 600)]:
        rows = workload(max(2, 24 // criteria), criteria, answer_tokens)
        seconds: dict[bool, list[float]] = {False: [], True: []}
        for sharing in (False, True, False, True):
            engine.prefix_sharing = sharing
            start = time.perf_counter()
            engine.label_logits(rows)
            seconds[sharing].append(time.perf_counter() - start)
        tokens = sum(map(len, rows))
        plain, shared = min(seconds[False]), min(seconds[True])
        print(f"K={criteria} answer={answer_tokens} rows={len(rows)} tokens={tokens}: unshared {tokens / plain:,.0f} "
              f"tok/s, shared {tokens / shared:,.0f} tok/s, x{plain / shared:.2f}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "/tmp/h31/tiny")
