#!/usr/bin/env python3
"""Download the base model once, on a machine with internet; everything after it runs offline.

    python build/fetch_base_model.py --model Qwen/Qwen3-0.6B --out models/base

Only safetensors, config, tokenizer and chat-template files are fetched (never pickles, never remote code).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ALLOW = ["*.safetensors", "*.json", "*.txt", "*.jinja", "merges.txt", "vocab.json"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="Qwen/Qwen3-0.6B", help="hub id (default Qwen/Qwen3-0.6B)")
    parser.add_argument("--out", type=Path, default=Path("models/base"), help="folder to write")
    parser.add_argument("--revision", default=None, help="pin a hub revision (commit) for reproducibility")
    args = parser.parse_args(argv)
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        print("error: huggingface_hub is not installed; pip install huggingface_hub", file=sys.stderr)
        return 2
    path = snapshot_download(args.model, revision=args.revision, local_dir=args.out, allow_patterns=ALLOW)
    if not list(Path(path).glob("*.safetensors")):
        print(f"error: {args.model} has no safetensors weights; refusing pickled checkpoints", file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
