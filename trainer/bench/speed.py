"""Speed benchmarks: scoring, training and end-to-end speed against baselines measured in the same run.

    python -m trainer bench --suite all --shape qwen3-0.6b --out bench/results/h100-2026-11-24.json   # on a GPU
    python -m trainer bench --suite scoring --shape tiny --rows 64 --repeats 2                        # CPU smoke
    python -m trainer bench --suite scoring --shape wide --rows 8 --pollux-grid 1x600,6x600           # prefix sharing

Models are random-init (no weights are ever downloaded): ``qwen3-0.6b`` is the exact Qwen3-0.6B shape (596M
parameters, vocab 151,936), ``tiny`` the test model's shape. The workload draws prompt lengths from a log-normal
resembling contest prompts (a few hundred to ~4,000 tokens, long tail, mean ~970; docs/ARCHITECTURE.md §7), scaled down
for ``tiny``. Every method runs once to warm up, then ``repeats`` timed runs; we report the median, tokens/s,
rows/s, peak memory, MFU against the bf16 matmul peak measured in the same process, and the ratio to the suite's
baseline (the first method listed for each suite and workload).

The scoring suite also runs POLLUX-shaped workloads (``--pollux-grid``, :func:`make_pollux_workload`): N answers x K
criteria, the rows of one answer sharing template + task + answer, shuffled as a test file is; the runtime's
transformers engine scores each without and with prefix sharing (submission/engines/prefix_sharing.py), and
``tokens_computed`` says how many prompt tokens went through the model. ``wide`` and ``qwen3-0.6b-width`` are for
those: the width of ``tiny-model --hidden-size 256 --layers 4`` and Qwen3-0.6B's own layer (2 of its 28: the
shared/unshared ratio is per layer, so depth does not change it).
"""

from __future__ import annotations

import json
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from trainer.bench.workloads import POLLUX_GRID, Workload, make_pollux_workload, make_workload, parse_pollux_grid
from trainer.training.rundir import RunDir

SHAPES = {
    # Qwen3-0.6B's published config (hidden 1024, 28 layers, 16 query / 8 KV heads of 128, MLP 3072, tied embeddings).
    "qwen3-0.6b": dict(hidden_size=1024, num_hidden_layers=28, num_attention_heads=16, num_key_value_heads=8,
                       head_dim=128, intermediate_size=3072, vocab_size=151936, max_position_embeddings=40960),
    "tiny": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                 intermediate_size=128, vocab_size=2048, max_position_embeddings=4096),
    # `python -m trainer tiny-model --hidden-size 256 --layers 4`'s shape (16/8 heads of 32, MLP 512).
    "wide": dict(hidden_size=256, num_hidden_layers=4, num_attention_heads=16, num_key_value_heads=8, head_dim=32,
                 intermediate_size=512, vocab_size=2048, max_position_embeddings=4096),
    # Qwen3-0.6B's layer, 2 layers deep (CPU-sized; per-token cost ratios as in the 28-layer model).
    "qwen3-0.6b-width": dict(hidden_size=1024, num_hidden_layers=2, num_attention_heads=16, num_key_value_heads=8,
                             head_dim=128, intermediate_size=3072, vocab_size=151936, max_position_embeddings=40960),
}
SUITES = ("scoring", "training", "e2e")
TRAIN_ROWS_PER_STEP = 8  # rows per optimizer step in the training suite, whatever the micro-batch size


@dataclass
class Result:
    suite: str
    method: str
    seconds_median: float
    seconds_all: list[float]
    tokens: int
    rows: int
    tokens_per_s: float
    rows_per_s: float
    peak_memory_gb: float
    mfu: float | None
    ratio_to_baseline: float | None = None
    note: str = ""
    workload: str = "contest"  # contest lengths, or pollux-K{criteria}-A{answer tokens}
    tokens_computed: int | None = None  # prompt tokens through the model (fewer than tokens when prefixes are shared)


@dataclass
class Environment:
    device: str
    torch: str
    transformers: str
    python: str
    gpu: str | None
    bf16_peak_tflops: float | None
    params: int = 0
    shape: str = ""
    extra: dict = field(default_factory=dict)


def build_random_model(shape: str, device: str):
    """A random-init Qwen3ForCausalLM of a named shape, bf16 on CUDA, fp32 on CPU."""
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM

    config = Qwen3Config(**SHAPES[shape], tie_word_embeddings=True, rope_theta=1_000_000.0)
    torch.manual_seed(0)
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    model = Qwen3ForCausalLM(config).to(dtype=dtype, device=device).eval()
    return model


def measure_bf16_peak_tflops(device: str) -> float | None:
    """Dense bf16 matmul TFLOP/s on this device (the MFU denominator); None on CPU."""
    import torch

    if not device.startswith("cuda"):
        return None
    n = 8192
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    start = time.perf_counter()
    reps = 20
    for _ in range(reps):
        a @ b
    torch.cuda.synchronize()
    return 2 * n**3 * reps / (time.perf_counter() - start) / 1e12


def _peak_memory_gb(device: str) -> float:
    import resource

    import torch

    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB (Linux)


def _time(fn: Callable[[], None], repeats: int, device: str) -> list[float]:
    import torch

    fn()  # warm-up (allocations, kernels, compile caches)
    times = []
    for _ in range(repeats):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return times


def _result(suite, method, times, workload, env, flops_per_token, device, note="") -> Result:
    median = statistics.median(times)
    tps = workload.tokens / median
    mfu = None
    if env.bf16_peak_tflops:
        mfu = tps * flops_per_token / (env.bf16_peak_tflops * 1e12)
    return Result(suite, method, median, times, workload.tokens, len(workload.prompts), tps,
                  len(workload.prompts) / median, _peak_memory_gb(device), mfu, note=note)


# -- scoring ----------------------------------------------------------------------------------------------------
def _pad_left(rows, pad_id, device):
    import torch

    longest = max(len(r) for r in rows)
    ids = torch.full((len(rows), longest), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), longest), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, longest - len(r):] = torch.as_tensor(r)
        mask[i, longest - len(r):] = 1
    return ids.to(device), mask.to(device)


def in_memory_engine(model, device: str, prefix_sharing: bool = False):
    """The runtime's transformers engine (batching, OOM back-off, prefix sharing) around an in-memory model."""
    from submission.engines.engine_hf import TransformersEngine
    from submission.prompts.sections import LABELS

    engine = TransformersEngine.__new__(TransformersEngine)
    engine.model, engine.device, engine.label_ids, engine.pad_id = model, device, [15, 16, 17, 18, 12], 0  # any ids
    engine.token_budget = 65536 if device.startswith("cuda") else 8192
    engine.max_rows, engine.oom_splits, engine.tokens_scored, engine.seconds = 256, 0, 0, 0.0
    engine.judge_head, engine.prefix_sharing, engine.tokens_computed = False, prefix_sharing, 0
    engine.labels = LABELS  # the contest's label set, one per id above
    return engine


def scoring_methods(model, device: str, batch_rows: int = 16) -> dict[str, Callable[[Workload], None]]:
    """Name -> function scoring a workload. The first is the baseline (the organisers' generate-and-parse style)."""
    import torch

    label_ids = [15, 16, 17, 18, 12]  # any five ids: speed does not depend on which
    engine = in_memory_engine(model, device)  # today's per-row path: the contest workload shares no prefixes

    def random_batches(workload: Workload):
        order = np.random.default_rng(workload.seed).permutation(len(workload.prompts))
        for start in range(0, len(order), batch_rows):
            yield [workload.prompts[i] for i in order[start:start + batch_rows]]

    def organisers_generate(workload: Workload) -> None:
        with torch.inference_mode():
            for rows in random_batches(workload):
                ids, mask = _pad_left(rows, 0, device)
                model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=10, do_sample=False,
                               pad_token_id=0, eos_token_id=None)

    def padded_random_forward(workload: Workload) -> None:
        with torch.inference_mode():
            for rows in random_batches(workload):
                ids, mask = _pad_left(rows, 0, device)
                model(input_ids=ids, attention_mask=mask, use_cache=False).logits[:, -1, label_ids].float().cpu()

    def sorted_budget_last_logits(workload: Workload) -> None:
        engine.label_logits(workload.prompts)

    methods = {
        "hf_organisers_generate10": organisers_generate,
        "hf_padded_random_b16": padded_random_forward,
        "hf_sorted_budget_logits1": sorted_budget_last_logits,
    }
    return methods


def pollux_scoring(model, device: str, grid: list[tuple[int, int]], rows: int, repeats: int, env: Environment,
                   flops_per_token: float) -> list[Result]:
    """Per POLLUX-shaped workload of ``grid``: the transformers engine without, then with prefix sharing (the
    baseline is the unshared one), and the prompt tokens each computed."""
    results = []
    for criteria, answer_tokens in grid:
        workload = make_pollux_workload(rows, criteria, answer_tokens, model.config.vocab_size, seed=criteria)
        name = f"pollux-K{criteria}-A{answer_tokens}"
        for sharing, method in ((False, "hf_unshared"), (True, "hf_prefix_shared")):
            engine = in_memory_engine(model, device, prefix_sharing=sharing)
            times = _time(lambda engine=engine, rows=workload.prompts: engine.label_logits(rows), repeats, device)
            result = _result("scoring", f"{name}/{method}", times, workload, env, flops_per_token, device,
                             note=f"{len(workload.prompts) // criteria} answers x {criteria} criteria, ~{answer_tokens}"
                                  "-token answers, rows shuffled")
            result.workload, result.tokens_computed = name, engine.tokens_computed // (repeats + 1)
            results.append(result)
    return results


# -- training ----------------------------------------------------------------------------------------------------
def training_token_budget(device: str, shape: str) -> int:
    """Padded tokens per micro-batch that should fit: half the free accelerator memory over a per-token estimate.

    The estimate is the full-logit baseline's: activations (~80 bytes x hidden per layer, bf16, no checkpointing)
    plus bf16 logits, their fp32 copy in the loss and both gradients over the vocabulary (12 bytes x vocab). CPU:
    4,096 tokens. Too optimistic is caught by :func:`train_step`'s out-of-memory back-off.
    """
    import torch

    if not device.startswith("cuda"):
        return 4096
    dims = SHAPES[shape]
    per_token = dims["num_hidden_layers"] * dims["hidden_size"] * 80 + dims["vocab_size"] * 12
    free, _ = torch.cuda.mem_get_info()
    return max(256, int(free * 0.5 / per_token))


@dataclass
class MicroBatching:
    """How an optimizer step's rows are split; ``token_budget`` halves after each out-of-memory error."""

    token_budget: int
    backoffs: int = 0
    steps: int = 0

    def split(self, rows: list[list[int]]) -> list[list[list[int]]]:
        """Micro-batches of ``rows`` whose padded size (rows x longest) fits the budget (at least one row each)."""
        per = max(1, self.token_budget // max(len(r) for r in rows))
        return [rows[i:i + per] for i in range(0, len(rows), per)]


def train_step(rows: list[list[int]], row_losses: Callable, optimizer, batching: MicroBatching) -> None:
    """One optimizer step over ``rows`` in micro-batches (mean loss per row, as the trainer's per-label mean).

    On out-of-memory the step's gradients are dropped, the budget halves and the whole step runs again, the way
    the trainer halves its batch and doubles accumulation; when one row per micro-batch already fails, it raises.
    """
    from submission.engines.engine_hf import is_out_of_memory, release_accelerator_memory

    while True:
        parts = batching.split(rows)
        try:
            for part in parts:
                (row_losses(part).sum() / len(rows)).backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            batching.steps += 1
            return
        except Exception as error:  # noqa: BLE001 - only out-of-memory is retried
            if not is_out_of_memory(error) or all(len(p) == 1 for p in parts):
                raise
            optimizer.zero_grad(set_to_none=True)
            release_accelerator_memory()
            batching.token_budget //= 2
            batching.backoffs += 1
            print(f"bench: out of memory at {len(parts)} micro-batches; token budget now {batching.token_budget}",
                  file=sys.stderr)


def training_methods(model, device: str, rows_per_step: int, token_budget: int) -> dict[str, tuple]:
    """Name -> (train function, its MicroBatching). PEFT LoRA r=16: full-logit loss (what a default causal-LM loss
    does) vs logits only at the label position.

    Each optimizer step takes ``rows_per_step`` rows in micro-batches of at most ``token_budget`` padded tokens; each
    method backs off on its own.
    """
    import torch
    import torch.nn.functional as F
    from peft import LoraConfig, get_peft_model

    lora = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", lora_dropout=0.0))
    lora.train()
    optimizer = torch.optim.AdamW([p for p in lora.parameters() if p.requires_grad], lr=1e-4)
    body, head = lora.base_model.model.model, lora.base_model.model.lm_head

    def full_logits(rows) -> torch.Tensor:
        ids, mask = _pad_left(rows, 0, device)
        logits = lora(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
        targets = torch.full_like(ids[:, 1:], -100)
        targets[:, -1] = ids[:, -1]
        token = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-100,
                                reduction="none")
        return token.view(len(rows), -1).sum(dim=1)

    def last_position_logits(rows) -> torch.Tensor:
        ids, mask = _pad_left(rows, 0, device)
        hidden = body(input_ids=ids[:, :-1], attention_mask=mask[:, :-1]).last_hidden_state[:, -1]
        return F.cross_entropy(head(hidden).float(), ids[:, -1], reduction="none")

    def run(row_losses):
        batching = MicroBatching(token_budget)

        def train(workload: Workload) -> None:
            for start in range(0, len(workload.prompts), rows_per_step):
                train_step(workload.prompts[start:start + rows_per_step], row_losses, optimizer, batching)

        return train, batching

    return {"peft_lora16_full_logits": run(full_logits), "peft_lora16_last_logits": run(last_position_logits)}


# -- end to end -------------------------------------------------------------------------------------------------
def runtime_command(test_csv: Path, pred_csv: Path) -> list[str]:
    """The contest entry to time: the checkout's ``run.sh TEST PRED`` when this package runs from a checkout, else
    (an installed wheel ships no run.sh) the same runtime through ``python -m submission.run_optimized``."""
    run_sh = Path(__file__).resolve().parents[2] / "run.sh"
    if run_sh.is_file():
        return [str(run_sh), str(test_csv), str(pred_csv)]
    return [sys.executable, "-m", "submission.run_optimized", "--test_path", str(test_csv), "--pred_path", str(pred_csv)]


def run_e2e(model_dir: Path, rows: int, workdir: Path, seed: int = 0) -> tuple[float, int, int]:
    """Wall time of the contest entry (:func:`runtime_command`) on ``rows`` synthetic rows, model load included;
    returns (seconds, rows, tokens)."""
    from trainer.data.synth import make_synthetic

    _, test, _ = make_synthetic(rows=rows * 4, seed=seed, test_rows=rows)
    test_csv, pred_csv = workdir / "e2e_test.csv", workdir / "e2e_pred.csv"
    test.to_csv(test_csv, index=False)
    start = time.perf_counter()
    subprocess.run([*runtime_command(test_csv, pred_csv), "--model-dir", str(model_dir), "--quiet"],
                   check=True, env={"PATH": "/usr/bin:/bin", "PYTHON": sys.executable, "HOME": str(workdir),
                                    "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})
    seconds = time.perf_counter() - start
    meta = json.loads((workdir / "e2e_pred_meta.json").read_text(encoding="utf-8"))
    return seconds, len(test), int(meta["tokens"])


def run_benchmarks(suites, shape: str, rows: int, repeats: int, device: str | None, workdir: Path,
                   e2e_model_dir: Path | None = None, train_rows: int | None = None,
                   pollux_grid: list[tuple[int, int]] | None = None, pollux_rows: int = 24) -> dict:
    """Run the named suites; returns {"environment": ..., "results": [...]} ready for JSON. ``pollux_grid`` (default
    :data:`POLLUX_GRID`; [] for none): the scoring suite's POLLUX-shaped workloads, about ``pollux_rows`` rows each."""
    import torch
    import transformers

    from submission.engines.engine_hf import resolve_device

    device = resolve_device(device)
    env = Environment(device=device, torch=torch.__version__, transformers=transformers.__version__,
                      python=platform.python_version(),
                      gpu=torch.cuda.get_device_name() if device.startswith("cuda") else None,
                      bf16_peak_tflops=measure_bf16_peak_tflops(device), shape=shape)
    scale = 1.0 if shape != "tiny" else 0.1
    results: list[Result] = []
    if "scoring" in suites or "training" in suites:
        model = build_random_model(shape, device)
        params = sum(p.numel() for p in model.parameters())
        env.params = params
        workload = make_workload(rows, SHAPES[shape]["vocab_size"], seed=0, scale=scale)
        if "scoring" in suites:
            for name, fn in scoring_methods(model, device).items():
                times = _time(lambda fn=fn: fn(workload), repeats, device)
                results.append(_result("scoring", name, times, workload, env, 2 * params, device))
            grid = parse_pollux_grid(POLLUX_GRID) if pollux_grid is None else pollux_grid
            results += pollux_scoring(model, device, grid, pollux_rows, repeats, env, 2 * params)
        if "training" in suites:
            train_load = make_workload(train_rows or max(rows // 4, 8), SHAPES[shape]["vocab_size"], seed=1,
                                       scale=scale)
            methods = training_methods(model, device, TRAIN_ROWS_PER_STEP, training_token_budget(device, shape))
            for name, (fn, batching) in methods.items():
                times = _time(lambda fn=fn: fn(train_load), repeats, device)
                note = (f"{TRAIN_ROWS_PER_STEP} rows per step in micro-batches of <= {batching.token_budget} padded "
                        f"tokens ({batching.backoffs} out-of-memory back-offs); LoRA: ~2/3 of full-FT FLOPs "
                        "in practice; MFU uses 6N as the bound")
                results.append(_result("training", name, times, train_load, env, 6 * params, device, note=note))
        del model
    if "e2e" in suites:
        if e2e_model_dir is not None and RunDir(e2e_model_dir).is_run():
            e2e_model_dir = RunDir(e2e_model_dir).merged  # a run folder: bench the model it ships
        if e2e_model_dir is None:
            from trainer.tiny.models import make_tiny_model_dir

            e2e_model_dir = make_tiny_model_dir(workdir / "e2e_model")
        times, n, tokens = [], 0, 0
        for _ in range(max(1, repeats)):
            seconds, n, tokens = run_e2e(e2e_model_dir, rows, workdir)
            times.append(seconds)
        median = statistics.median(times)
        results.append(Result("e2e", "run_sh_hf", median, times, tokens, n, tokens / median, n / median, 0.0, None,
                              note="wall time of ./run.sh including model load"))
    for suite in SUITES:
        for workload in dict.fromkeys(r.workload for r in results if r.suite == suite):
            same = [r for r in results if r.suite == suite and r.workload == workload]
            for r in same:
                r.ratio_to_baseline = same[0].seconds_median / r.seconds_median
    return {"environment": asdict(env), "results": [asdict(r) for r in results],
            "created": time.strftime("%Y-%m-%dT%H:%M:%S")}


def format_results(report: dict) -> str:
    """A markdown table of one benchmark report (what BENCHMARKS.md pastes)."""
    lines = ["| suite | method | median s | tokens/s | rows/s | tokens computed | peak GB | MFU | × baseline |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in report["results"]:
        mfu = f"{r['mfu']:.1%}" if r["mfu"] is not None else "n/a"
        computed = f"{r['tokens_computed']:,} of {r['tokens']:,}" if r.get("tokens_computed") is not None else ""
        lines.append(f"| {r['suite']} | {r['method']} | {r['seconds_median']:.3f} | {r['tokens_per_s']:,.0f} | "
                     f"{r['rows_per_s']:,.1f} | {computed} | {r['peak_memory_gb']:.2f} | {mfu} | "
                     f"{r['ratio_to_baseline']:.2f} |")
    return "\n".join(lines)


def write_report(report: dict, out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2), encoding="utf-8")
    return out
