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
missing from them floored (:func:`submission.scoring.label_logprobs`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from submission import settings
from submission.engine_hf import preferred_dtype, release_accelerator_memory
from submission.scoring import LABELS, exact_label_logprobs, label_logprobs, label_token_ids

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


class VllmEngine:
    """vLLM behind :class:`submission.engines.ScoringEngine` (the contract the transformers engine implements too)."""

    name = "vllm"
    device = "cuda"

    def __init__(
        self,
        model_dir: str | Path,
        tokenizer,
        max_model_len: int,
        enforce_eager: bool = False,
        seed: int = 0,
        ladder: Sequence[tuple[float, int, int | None]] = settings.VLLM_START_LADDER,
    ):
        self.model_dir = Path(model_dir)
        self.tokenizer = tokenizer
        self.label_ids = label_token_ids(tokenizer)
        self.api = load_vllm_api()
        self.start_failures: list[str] = []
        self.tokens_scored = 0
        self.seconds = 0.0
        self.oom_splits = 0
        self.llm = None
        for memory, seqs, length in ladder:
            length = min(length or max_model_len, max_model_len)
            kwargs = {
                "model": str(self.model_dir),
                "dtype": preferred_dtype("cuda"),  # bf16 where the GPU has it, else fp16 (T4, V100)
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
            try:
                self.llm = self.api.LLM(**kwargs)
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
        """Drop the LLM (vLLM frees its GPU memory with it) and return cached accelerator memory."""
        self.llm = None
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
            return np.zeros((0, len(LABELS)))
        start = time.perf_counter()
        outputs = self.llm.generate(self._prompts(prompts), self.score_params, use_tqdm=False)
        first = [(o.outputs[0].logprobs or [{}])[0] for o in outputs]
        self.seconds += time.perf_counter() - start
        self.tokens_scored += sum(len(p) for p in prompts)
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
        return [[self.tokenizer.decode(list(c.token_ids), skip_special_tokens=True) for c in o.outputs]
                for o in outputs]

