"""Prefix sharing, shared vs unshared tokens/s on the transformers engine (tiny model in /tmp/h31/tiny; CPU, 1 thread).

    OMP_NUM_THREADS=1 python bench/prefix_sharing_speed.py   # make the model first: python -m trainer tiny-model /tmp/h31/tiny
"""
import random
import time
import sys
import torch; torch.set_num_threads(1)
sys.path.insert(0, '.')
from submission.engines.engine_hf import TransformersEngine


def work(n, k, ans, seed=0):
    rng = random.Random(seed); V = 1000; tmpl = [rng.randrange(V) for _ in range(60)]; rows = []
    for _ in range(n):
        a = tmpl + [rng.randrange(V) for _ in range(ans)]
        rows += [a + [rng.randrange(V) for _ in range(100)] for _ in range(k)]
    rng.shuffle(rows); return rows
e = TransformersEngine('/tmp/h31/tiny', device='cpu')
for k, ans in [(6, 600), (1, 600), (3, 150), (14, 600)]:
    rows = work(max(2, 24 // k), k, ans)
    res = {}
    for on in (False, True, False, True):
        e.prefix_sharing = on; t = time.perf_counter(); e.label_logits(rows); res.setdefault(on, []).append(time.perf_counter() - t)
    tok = sum(map(len, rows))
    print(f"K={k} answer={ans} rows={len(rows)} tokens={tok}: unshared {tok/min(res[False]):,.0f} tok/s, shared {tok/min(res[True]):,.0f} tok/s, x{min(res[False])/min(res[True]):.2f}", flush=True)
