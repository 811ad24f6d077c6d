"""A vLLM stand-in shaped like vLLM 0.26 outputs (no GPU, no vllm package), answering with a real tiny model."""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

import torch


@dataclass
class Logprob:  # vllm.logprobs.Logprob fields
    logprob: float
    rank: int | None = None
    decoded_token: str | None = None


@dataclass
class SamplingParams:  # the vllm.sampling_params.SamplingParams fields the engine may set, with vLLM's defaults
    n: int = 1
    max_tokens: int = 16
    temperature: float = 1.0
    seed: int | None = None
    logprobs: int | None = None
    logprob_token_ids: list[int] | None = None
    detokenize: bool = True


@dataclass
class SamplingParamsBeforeTokenIds:  # a vLLM without logprob_token_ids: the engine must fall back to the top k
    max_tokens: int = 16
    temperature: float = 1.0
    logprobs: int | None = None
    detokenize: bool = True


def TokensPrompt(**kwargs):  # a TypedDict in vLLM: calling it builds a plain dict
    return dict(**kwargs)


def fake_api(model, fail_starts: int = 0, calls: dict | None = None, lift_ids=(), token_ids_param: bool = True,
             cache_block: int | None = None):
    """A vLLM stand-in answering with the real tiny model's logprobs, shaped as vLLM 0.26 returns them.

    With ``logprob_token_ids`` set: exactly those ids plus the sampled token (vllm/sampling_params.py); else the
    top ``logprobs`` plus the sampled token. ``lift_ids`` get the same logit bonus (label ratios unchanged) so that
    they all show in a top 20. ``token_ids_param=False`` fakes a vLLM whose SamplingParams lacks the field.
    ``cache_block``: report ``num_cached_tokens`` as a prefix cache that holds only the previous request would
    (the whole blocks it shares with it), the case where submission order decides the hits.
    """
    calls = calls if calls is not None else {}

    class LLM:
        def __init__(self, **kwargs):
            calls.setdefault("init", []).append(kwargs)
            if len(calls["init"]) <= fail_starts:
                raise RuntimeError("CUDA out of memory while allocating the KV cache")

        def generate(self, prompts, params, use_tqdm=True):
            calls.setdefault("params", []).append(params)
            calls.setdefault("prompts", []).extend(prompts)
            outs = []
            previous: list[int] = []
            for prompt in prompts:
                cached = 0
                if cache_block:
                    ids_now = prompt["prompt_token_ids"]
                    while cached < min(len(ids_now), len(previous)) and ids_now[cached] == previous[cached]:
                        cached += 1
                    cached = min(cached, len(ids_now) - 1) // cache_block * cache_block
                    previous = ids_now
                ids = torch.tensor([prompt["prompt_token_ids"]])
                if params.logprobs is None:  # free-text generation: n completions, no logprobs (as vLLM returns)
                    sample = params.temperature > 0
                    if params.seed is not None:
                        torch.manual_seed(params.seed)
                    with torch.no_grad():
                        tokens = model.generate(ids, max_new_tokens=params.max_tokens, do_sample=sample,
                                                temperature=params.temperature if sample else None, top_k=0,
                                                num_return_sequences=params.n)[:, ids.shape[1]:]
                    completions = [SimpleNamespace(token_ids=t.tolist(), logprobs=None, text="") for t in tokens]
                    outs.append(SimpleNamespace(outputs=completions, prompt_token_ids=prompt["prompt_token_ids"]))
                    continue
                with torch.no_grad():
                    logits = model(input_ids=ids).logits[0, -1].double()
                    logits[list(lift_ids)] += 50.0
                    logp = torch.log_softmax(logits, -1)
                ranks = torch.argsort(torch.argsort(logp, descending=True)) + 1
                sampled = int(torch.argmax(logp))
                wanted = getattr(params, "logprob_token_ids", None)
                chosen = [int(t) for t in wanted] if wanted else torch.topk(logp, params.logprobs).indices.tolist()
                entry = {t: Logprob(float(logp[t]), int(ranks[t])) for t in chosen}
                entry.setdefault(sampled, Logprob(float(logp[sampled]), 1))
                completion = SimpleNamespace(token_ids=[sampled], logprobs=[entry], text="")
                outs.append(SimpleNamespace(outputs=[completion], prompt_token_ids=prompt["prompt_token_ids"],
                                            num_cached_tokens=cached))
            return outs

    params_class = SamplingParams if token_ids_param else SamplingParamsBeforeTokenIds
    return SimpleNamespace(LLM=LLM, SamplingParams=params_class, TokensPrompt=TokensPrompt), calls
