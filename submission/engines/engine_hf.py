"""Transformers scoring engine: one batched forward per batch, logits at the last position only.

Prompts are sorted by length and packed into batches under a token budget (batch rows x longest row), left-padded
so the last position is every row's answer position; results come back in the caller's order. On CUDA
out-of-memory the batch is split in half and retried, down to one row.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

# The device rules live in devices.py (both engines share them); they stay importable from here too.
from submission.engines.devices import (
    device_kind,
    is_out_of_memory,
    preferred_dtype,
    release_accelerator_memory,
    resolve_device,
)
from submission.engines.prefix_sharing import score_shared_rows
from submission.scoring.decoding import LABELS, label_token_ids

log = logging.getLogger(__name__)


def plan_batches(lengths: Sequence[int], token_budget: int, max_rows: int = 256) -> list[list[int]]:
    """Indices grouped into batches, longest first, each with rows x longest <= token_budget (>= 1 row)."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    current: list[int] = []
    for index in order:
        longest = lengths[current[0]] if current else lengths[index]
        if current and ((len(current) + 1) * longest > token_budget or len(current) >= max_rows):
            batches.append(current)
            current = []
        current.append(index)
    if current:
        batches.append(current)
    return batches


def load_causal_lm(model_dir: str | Path, device: str, dtype=None):
    """Model from safetensors only (never pickles, never remote code), in eval mode on ``device``."""
    import torch
    from transformers import AutoModelForCausalLM

    model_dir = Path(model_dir)
    if not any(model_dir.glob("*.safetensors")):
        raise FileNotFoundError(f"{model_dir}: no *.safetensors weights (pickled weights are refused)")
    if dtype is None:
        dtype = getattr(torch, preferred_dtype(device))
    auto = AutoModelForCausalLM
    if is_judge_head(model_dir):
        from transformers import AutoModelForSequenceClassification as auto
    model = auto.from_pretrained(
        model_dir, dtype=dtype, use_safetensors=True, trust_remote_code=False, low_cpu_mem_usage=True
    )
    return model.to(device).eval()


def is_judge_head(model_dir: str | Path) -> bool:
    """True when the folder holds a judge head (a ``*ForSequenceClassification`` over the labels, trainer/training/judge_head.py):
    its logits ARE the label logits, in LABELS order."""
    import json

    try:
        config = json.loads((Path(model_dir) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return any(str(a).endswith("ForSequenceClassification") for a in config.get("architectures") or [])


def load_tokenizer(model_dir: str | Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(model_dir), trust_remote_code=False)


class TransformersEngine:
    """Scores rendered prompts with a causal LM; implements :class:`submission.engines.protocol.ScoringEngine`."""

    name = "hf"

    def __init__(
        self,
        model_dir: str | Path,
        device: str | None = None,
        token_budget: int | None = None,
        max_rows: int = 256,
        model=None,
        tokenizer=None,
        prefix_sharing: bool = True,
        labels: Sequence[int] = LABELS,
    ):
        self.model_dir = Path(model_dir)
        self.device = resolve_device(device)
        self.tokenizer = tokenizer or load_tokenizer(self.model_dir)
        self.model = model or load_causal_lm(self.model_dir, self.device)
        self.dtype = str(next(self.model.parameters()).dtype).removeprefix("torch.")
        # CPU attention is memory-bound well before 16k tokens; an H100 takes 64k (docs/ARCHITECTURE.md §7).
        self.token_budget = int(token_budget or (65536 if device_kind(self.device) == "cuda" else 8192))
        self.max_rows = max_rows
        self.judge_head = str(getattr(self.model.config, "architectures", [""])[0] or "").endswith(
            "ForSequenceClassification")
        self.labels = tuple(labels)  # a 0-4 judge (judge.json max_score 4) also reads the "4" token
        self.label_ids = label_token_ids(self.tokenizer, self.labels)
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        self.oom_splits = 0
        self.tokens_scored = 0
        self.tokens_computed = 0  # prompt tokens run through the model: fewer than scored when prefixes are shared
        self.seconds = 0.0
        self.start_failures: list[str] = []  # transformers has no start-up ladder
        self.prefix_sharing = prefix_sharing  # rows sharing a long prefix compute it once (prefix_sharing.py)

    def close(self) -> None:
        """Drop the model and return its accelerator memory."""
        self.model = None
        release_accelerator_memory()

    def label_logits(self, prompts: Sequence[Sequence[int]], progress: Callable[[int], None] | None = None) -> np.ndarray:
        """[N, 5] next-token logits of the label tokens (``labels`` order: [N, 6] for a 0-4 judge) for token-id
        prompts, in input order."""
        out = np.zeros((len(prompts), len(self.labels)), dtype=np.float64)
        lengths = [len(p) for p in prompts]
        start = time.perf_counter()
        rows = (score_shared_rows(self, prompts, out, progress) if self.prefix_sharing and not self.judge_head
                else range(len(prompts)))  # a judge head has no causal cache to share
        for batch in plan_batches([lengths[i] for i in rows], self.token_budget, self.max_rows):
            batch = [rows[j] for j in batch]
            self._score_batch(prompts, batch, out)
            self.tokens_computed += sum(lengths[i] for i in batch)
            if progress:
                progress(len(batch))
        self.seconds += time.perf_counter() - start
        self.tokens_scored += sum(lengths)
        return out

    def _score_batch(self, prompts, batch: list[int], out: np.ndarray) -> None:
        try:
            out[batch] = self._forward([prompts[i] for i in batch])
        except Exception as error:  # noqa: BLE001 - only OOM is handled, everything else re-raises
            if not is_out_of_memory(error) or len(batch) == 1:
                raise
            release_accelerator_memory()
            self.oom_splits += 1
            log.warning("out of memory on a batch of %d rows; splitting it in half", len(batch))
            half = len(batch) // 2
            self._score_batch(prompts, batch[:half], out)
            self._score_batch(prompts, batch[half:], out)

    def _forward(self, rows: list[Sequence[int]]) -> np.ndarray:
        import torch

        longest = max(len(r) for r in rows)
        input_ids = torch.full((len(rows), longest), self.pad_id, dtype=torch.long)
        attention = torch.zeros((len(rows), longest), dtype=torch.long)
        for i, row in enumerate(rows):
            input_ids[i, longest - len(row) :] = torch.as_tensor(row, dtype=torch.long)
            attention[i, longest - len(row) :] = 1
        # Left padding: positions count real tokens only, so a row scores the same alone or in a batch.
        position_ids = (attention.cumsum(dim=1) - 1).clamp(min=0)
        if self.judge_head:
            return self._forward_judge_head(input_ids, attention, position_ids)
        with torch.inference_mode():
            logits = self.model(
                input_ids=input_ids.to(self.device),
                attention_mask=attention.to(self.device),
                position_ids=position_ids.to(self.device),
                logits_to_keep=1,
                use_cache=False,
            ).logits[:, -1, :]
            picked = logits[:, self.label_ids].float().cpu().numpy()
        return picked

    def _forward_judge_head(self, input_ids, attention, position_ids) -> np.ndarray:
        """A judge head's label logits: its score layer on the last position (left padding puts every row's last
        token there; never the pad-token search transformers' classifiers do, which a pad id inside a prompt fools)."""
        import torch

        body = getattr(self.model, self.model.base_model_prefix)
        with torch.inference_mode():
            hidden = body(input_ids=input_ids.to(self.device), attention_mask=attention.to(self.device),
                          position_ids=position_ids.to(self.device), use_cache=False).last_hidden_state[:, -1]
            return self.model.score(hidden).float().cpu().numpy().astype(np.float64)

    def generate_texts(self, prompts: Sequence[Sequence[int]], max_new_tokens: int) -> list[str]:
        """Greedy continuations (new text only) for token-id prompts; for generative judges that write a rationale."""
        return [texts[0] for texts in self._generate(prompts, max_new_tokens, do_sample=False)]

    def sample_texts(self, prompts: Sequence[Sequence[int]], max_new_tokens: int, samples: int, temperature: float,
                     seed: int = 0) -> list[list[str]]:
        """``samples`` continuations per prompt drawn at ``temperature`` with no top-k/top-p cut (new text only).

        For a free-text teacher's score distribution (trainer/recipes/distill.py); seeded, so a rerun draws the same texts.
        """
        import torch

        generator_state = torch.random.get_rng_state()
        torch.manual_seed(seed)
        try:
            return self._generate(prompts, max_new_tokens, do_sample=True, temperature=float(temperature), top_k=0,
                                  top_p=1.0, num_return_sequences=samples)
        finally:
            torch.random.set_rng_state(generator_state)

    def _generate(self, prompts: Sequence[Sequence[int]], max_new_tokens: int, **decoding) -> list[list[str]]:
        import torch

        texts = []
        start = time.perf_counter()
        for row in prompts:  # one row at a time: generative judges are the rare, slow path
            input_ids = torch.as_tensor([list(row)], dtype=torch.long, device=self.device)
            with torch.inference_mode():
                out = self.model.generate(
                    input_ids=input_ids,
                    attention_mask=torch.ones_like(input_ids),
                    max_new_tokens=max_new_tokens,
                    eos_token_id=self.tokenizer.eos_token_id,
                    pad_token_id=self.pad_id,
                    **decoding,
                )
            texts.append([self.tokenizer.decode(o[input_ids.shape[1]:].tolist(), skip_special_tokens=True) for o in out])
        self.seconds += time.perf_counter() - start
        tokens = sum(len(p) for p in prompts) * decoding.get("num_return_sequences", 1)
        self.tokens_scored += tokens
        self.tokens_computed += tokens
        return texts
