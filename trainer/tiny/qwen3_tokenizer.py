"""Qwen3's real tokenizer, built offline from the byte-level BPE ranks that the DashScope SDK wheel ships.

    python -m trainer tiny-model runs/tiny-qwen3 --tokenizer qwen3          # random model on Qwen3's vocabulary
    python -m trainer tiny-model runs/q --tokenizer qwen3 --qwen-tiktoken .venv/contract-wheels/dashscope-2.0.2-py3-none-any.whl

The hub is out of reach here, but PyPI's ``dashscope`` wheel (Alibaba's SDK, pinned in the Makefile's contract
wheels) carries ``dashscope/resources/qwen.tiktoken``: the 151,643 mergeable ranks of the Qwen2/2.5/3 vocabulary,
and ``dashscope/tokenizers/qwen_tokenizer.py`` the pre-tokenizer pattern (Qwen splits every digit on its own, unlike
tiktoken's ``\\p{N}{1,3}``). From them this module builds the same fast tokenizer a Qwen3 checkpoint ships:

- vocabulary = the ranks (token bytes mapped to GPT-2's byte-to-unicode alphabet), merges = every split of a token
  into two tokens, ordered by the merged token's rank (what transformers' ``TikTokenConverter`` does for tiktoken
  models; BPE then merges the lowest-ranked pair first, as tiktoken does);
- NFC normaliser, Qwen's split pattern, byte-level pre-tokenizer and decoder (transformers' ``Qwen2Tokenizer``);
- Qwen3's 26 added tokens in order from id 151643 (:data:`QWEN3_ADDED_TOKENS`), eos ``<|im_end|>``, pad
  ``<|endoftext|>``, no bos/unk; the Qwen3 chat template.

``tests/trainer/tiny/test_qwen3_tokenizer.py`` checks it against reference encodings published in transformers' own Qwen2
tokenizer test and the rendered chat string.
"""

from __future__ import annotations

import base64
import os
import zipfile
from pathlib import Path

TIKTOKEN_MEMBER = "dashscope/resources/qwen.tiktoken"
TIKTOKEN_SHA256 = "b2b1b8dfb5cc5f024bafc373121c6aba3f66f9a5a0269e243470a1de16a33186"  # dashscope 2.0.2
TIKTOKEN_ENV = "AIJ_QWEN_TIKTOKEN"
FIRST_ADDED_ID = 151643
# Qwen3's added tokens from id 151643, in order, and whether each is special (skipped when decoding with
# skip_special_tokens): tool-call and think markers are not, as in Qwen3's tokenizer_config.json.
QWEN3_ADDED_TOKENS: tuple[tuple[str, bool], ...] = (
    ("<|endoftext|>", True), ("<|im_start|>", True), ("<|im_end|>", True),
    ("<|object_ref_start|>", True), ("<|object_ref_end|>", True), ("<|box_start|>", True), ("<|box_end|>", True),
    ("<|quad_start|>", True), ("<|quad_end|>", True), ("<|vision_start|>", True), ("<|vision_end|>", True),
    ("<|vision_pad|>", True), ("<|image_pad|>", True), ("<|video_pad|>", True),
    ("<tool_call>", False), ("</tool_call>", False),
    ("<|fim_prefix|>", True), ("<|fim_middle|>", True), ("<|fim_suffix|>", True), ("<|fim_pad|>", True),
    ("<|repo_name|>", True), ("<|file_sep|>", True),
    ("<tool_response>", False), ("</tool_response>", False), ("<think>", False), ("</think>", False),
)
# Qwen3-0.6B's config.json: the embedding matrix is padded past the tokenizer's 151,669 entries.
QWEN3_VOCAB_SIZE = 151_936


def qwen3_chat_template() -> str:
    """The Qwen3 chat template text as shipped in the installed trl package (``chat_templates/qwen3.jinja``)."""
    import importlib.resources

    return (importlib.resources.files("trl") / "chat_templates" / "qwen3.jinja").read_text(encoding="utf-8")


class TiktokenNotFound(FileNotFoundError):
    """No qwen.tiktoken (nor a wheel holding it) where we looked; the message says where and how to get one."""


def default_sources() -> list[Path]:
    """Where ``--tokenizer qwen3`` looks: ``$AIJ_QWEN_TIKTOKEN``, then the dashscope wheel among the contract wheels."""
    sources = [Path(os.environ[TIKTOKEN_ENV])] if os.environ.get(TIKTOKEN_ENV) else []
    root = Path(__file__).resolve().parents[2]
    for folder in (root / ".venv" / "contract-wheels", Path(".venv") / "contract-wheels"):
        sources += sorted(folder.glob("dashscope-*.whl"))
    return sources


def read_tiktoken_ranks(source: str | Path | None = None) -> dict[bytes, int]:
    """The ranks from a ``qwen.tiktoken`` file or a dashscope wheel (``None``: :func:`default_sources`)."""
    candidates = [Path(source)] if source else default_sources()
    for path in candidates:
        if path.is_file():
            if zipfile.is_zipfile(path):
                with zipfile.ZipFile(path) as wheel:
                    if TIKTOKEN_MEMBER not in wheel.namelist():
                        raise TiktokenNotFound(f"{path} holds no {TIKTOKEN_MEMBER}")
                    data = wheel.read(TIKTOKEN_MEMBER)
            else:
                data = path.read_bytes()
            return _parse_ranks(data, path)
    looked = ", ".join(str(p) for p in candidates) or "(nowhere: no candidate)"
    raise TiktokenNotFound(
        f"no qwen.tiktoken found (looked at {looked}); run `make install` (it fetches the dashscope wheel into "
        f".venv/contract-wheels) or pass --qwen-tiktoken PATH / set ${TIKTOKEN_ENV}")


def _parse_ranks(data: bytes, origin: Path) -> dict[bytes, int]:
    import hashlib

    digest = hashlib.sha256(data).hexdigest()
    if digest != TIKTOKEN_SHA256:
        # Another dashscope release may ship the same ranks re-encoded; the reference-encoding test decides.
        import logging

        logging.getLogger(__name__).warning("%s: sha256 %s differs from the pinned %s", origin, digest, TIKTOKEN_SHA256)
    ranks = {}
    for line in data.splitlines():
        if line:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    if len(ranks) != FIRST_ADDED_ID or sorted(ranks.values()) != list(range(FIRST_ADDED_ID)):
        raise ValueError(f"{origin}: expected ranks 0..{FIRST_ADDED_ID - 1}, got {len(ranks)} entries")
    return ranks


def vocab_and_merges(ranks: dict[bytes, int]) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Byte-level BPE vocabulary and merges equivalent to tiktoken's rank-ordered merging of ``ranks``."""
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    alphabet = bytes_to_unicode()

    def text(token: bytes) -> str:
        return "".join(alphabet[b] for b in token)

    merges = []
    for token, rank in ranks.items():
        splits = [(token[:i], token[i:]) for i in range(1, len(token)) if token[:i] in ranks and token[i:] in ranks]
        splits.sort(key=lambda pair: (ranks[pair[0]], ranks[pair[1]]))
        merges += [(rank, left, right) for left, right in splits]
    merges.sort(key=lambda m: m[0])
    return {text(t): r for t, r in ranks.items()}, [(text(left), text(right)) for _, left, right in merges]


def build_qwen3_tokenizer(out_dir: str | Path | None = None, source: str | Path | None = None):
    """Qwen3's tokenizer (a ``Qwen2Tokenizer``, as Qwen3 checkpoints name it); saved to ``out_dir`` when given."""
    from transformers import AddedToken, Qwen2Tokenizer

    vocab, merges = vocab_and_merges(read_tiktoken_ranks(source))
    tokenizer = Qwen2Tokenizer(vocab=vocab, merges=merges, unk_token=None, bos_token=None, eos_token=None,
                               pad_token=None)
    for text, special in QWEN3_ADDED_TOKENS:
        added = AddedToken(text, special=special, normalized=False)
        tokenizer.add_tokens([added], special_tokens=special)
    ids = tokenizer.convert_tokens_to_ids([t for t, _ in QWEN3_ADDED_TOKENS])
    if ids != list(range(FIRST_ADDED_ID, FIRST_ADDED_ID + len(QWEN3_ADDED_TOKENS))):
        raise RuntimeError(f"added tokens got ids {ids[:3]}..., expected from {FIRST_ADDED_ID}")
    tokenizer.eos_token = "<|im_end|>"
    tokenizer.pad_token = "<|endoftext|>"
    tokenizer.model_max_length = 131_072
    tokenizer.chat_template = qwen3_chat_template()
    if out_dir is not None:
        tokenizer.save_pretrained(str(out_dir))
    return tokenizer
