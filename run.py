#!/usr/bin/env python3
"""Contest entry point, the organisers' call: ``python run.py --test_path test.csv --pred_path predictions.csv``.

Works from any working directory: the ``submission`` package and the bundle's ``models/`` are found next to this
file. Every runtime flag is accepted (``--help`` lists them); ``./run.sh TEST PRED`` is the same run.
"""

import os
import sys
from pathlib import Path

# Offline before anything heavy is imported: no hub, no telemetry (run.sh exports the same set).
for _name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE", "HF_HUB_DISABLE_TELEMETRY",
              "VLLM_NO_USAGE_STATS", "VLLM_DO_NOT_TRACK", "DO_NOT_TRACK"):
    os.environ.setdefault(_name, "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from submission.cli import main  # noqa: E402

if __name__ == "__main__":  # vLLM spawns workers that re-import the main module: keep the guard.
    main(prog="run.py")
