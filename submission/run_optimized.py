#!/usr/bin/env python3
"""Contest entry point: ``python submission/run_optimized.py --test_path test.csv --pred_path predictions.csv``.

The organisers' baseline flags are kept verbatim; ``--help`` lists the rest. Runs offline.
"""

import sys
from pathlib import Path

# Run as a script from the bundle root or anywhere else: make the `submission` package importable.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from submission.cli import main  # noqa: E402

if __name__ == "__main__":  # vLLM spawns workers that re-import the main module: keep the guard.
    main()
