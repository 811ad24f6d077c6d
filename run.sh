#!/usr/bin/env bash
# Contest entry: ./run.sh TEST_CSV PRED_CSV [extra run.py flags]  (same run as `python run.py --test_path T --pred_path P`)
# Offline before Python starts: no hub, no telemetry. Interpreter: $PYTHON, else this folder's .venv, else python3.
set -euo pipefail
if [ "$#" -lt 2 ]; then
  echo "usage: ./run.sh TEST_CSV PRED_CSV [run.py flags]" >&2
  exit 2
fi
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1
# vLLM usage stats: vllm/usage/usage_lib.py is_usage_stats_enabled() honours any of these three.
export VLLM_NO_USAGE_STATS=1 VLLM_DO_NOT_TRACK=1 DO_NOT_TRACK=1 TOKENIZERS_PARALLELISM=false
if [ -z "${PYTHON:-}" ]; then
  if [ -x "$here/.venv/bin/python" ]; then PYTHON="$here/.venv/bin/python"; else PYTHON=python3; fi
fi
test_csv="$1"; pred_csv="$2"; shift 2
exec "$PYTHON" "$here/run.py" --test_path "$test_csv" --pred_path "$pred_csv" "$@"
