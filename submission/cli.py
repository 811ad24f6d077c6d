"""Command line of the submission runtime (``run.py``, ``submission/run_optimized.py`` and ``./run.sh`` call this).

argparse, not a CLI library: the runtime must start in an image that has only the standard library, numpy, torch,
transformers, tokenizers, safetensors and vLLM (README "Contest entry").
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
import time
from pathlib import Path

from submission.engines.devices import DEVICE_CHOICES, device_problem
from submission.engines.protocol import ENGINE_CHOICES, engine_problem
from submission.runtime import settings
from submission.scoring.probabilities import PROBABILITY_COLUMNS

_STARTED = time.monotonic()  # the deadline counts from process start, imports included
EXIT_USAGE = 2
EXIT_WRITE = 1  # the predictions or the meta file could not be written
MIN_PROMPT_TOKENS = 64  # below this no chat template plus rubric fits


def build_parser(prog: str = "run_optimized.py") -> argparse.ArgumentParser:
    """Every runtime flag with its help; the organisers' ``--test_path``/``--pred_path`` spellings are kept."""
    parser = argparse.ArgumentParser(
        prog=prog, description="Score a contest test CSV with a judge model and write id,score (plus PRED_meta.json).")
    add = parser.add_argument
    add("--test_path", "--test-path", dest="test_path", type=Path, required=True,
        help="Test CSV with columns id,prompt.")
    add("--pred_path", "--pred-path", dest="pred_path", type=Path, required=True, help="Where to write id,score.")
    add("--models", type=Path, default=None,
        help="Folder of model folders (or an ensemble.json); default: the bundle's models/, then runs/*/merged.")
    add("--model-dir", dest="model_dir", type=Path, default=None,
        help="One merged model folder (also $AIJ_MODEL_DIR); skips ranking and ensembles.")
    add("--engine", default="auto", help=f"{', '.join(ENGINE_CHOICES)}; auto picks by estimated time. [default: auto]")
    add("--time-limit", dest="time_limit", type=float, default=settings.DEFAULT_TIME_LIMIT_S,
        help=f"Seconds for the whole run; rows not scored in time get a prior. [default: {settings.DEFAULT_TIME_LIMIT_S:g}]")
    add("--metric", default=settings.DEFAULT_METRIC,
        help=f"Report metric that ranks models (qwk, accuracy, macro_f1, mae, ...). [default: {settings.DEFAULT_METRIC}]")
    add("--no-ensemble", dest="no_ensemble", action="store_true",
        help="No ensemble (neither ensemble.json nor equally good models): the single best model.")
    add("--device", default="auto", help=f"{DEVICE_CHOICES}. [default: auto]")
    add("--max-tokens", dest="max_tokens", type=int, default=settings.MAX_PROMPT_TOKENS,
        help=f"Prompt length limit in tokens (middle-shortened). [default: {settings.MAX_PROMPT_TOKENS}]")
    add("--token-budget", dest="token_budget", type=int, default=None,
        help="Transformers: tokens per batch (rows x longest row).")
    add("--tensor-parallel-size", dest="tensor_parallel_size", type=int, default=1,
        help="vLLM: split each model over N GPUs (no transformers fallback then). [default: 1]")
    add("--enforce-eager", dest="enforce_eager", action="store_true",
        help="vLLM: no CUDA graphs (faster start, slower scoring).")
    add("--no-prefix-sharing", dest="no_prefix_sharing", action="store_true",
        help="Score every row on its own: no prefix computed once for rows that share it (for comparisons).")
    add("--probabilities", type=Path, default=None,
        help=f"Also write id,{','.join(PROBABILITY_COLUMNS)} here: the probabilities the decision read (the prior's for rows "
             "that got the prior), zero outside the rubric; the `trainer distill` format.")
    add("--quiet", "-q", action="store_true", help="Warnings and errors only.")
    return parser


def check_flags(args: argparse.Namespace) -> str | None:
    """What is wrong with the flags (one line), or None: each is checked before the test file is even read."""
    from submission.choice.metrics import UnknownMetric, check_metric

    problem = engine_problem(args.engine) or device_problem(args.device)
    if problem:
        return problem
    try:
        check_metric(args.metric)
    except UnknownMetric as error:
        return f"--metric: {error}"
    if not math.isfinite(args.time_limit) or args.time_limit < 0:
        return f"--time-limit {args.time_limit}: must be a finite number of seconds >= 0"
    if args.max_tokens < MIN_PROMPT_TOKENS:
        return f"--max-tokens {args.max_tokens}: must be at least {MIN_PROMPT_TOKENS} (the prompt length limit in tokens)"
    if args.token_budget is not None and args.token_budget < 1:
        return f"--token-budget {args.token_budget}: must be a positive number of tokens per batch"
    if args.tensor_parallel_size != 1:
        from submission.engines.engine_vllm import tensor_parallel_problem

        if args.engine == "hf":
            return f"--tensor-parallel-size {args.tensor_parallel_size}: needs --engine vllm or auto"
        return tensor_parallel_problem(args.tensor_parallel_size)
    return None


def run(args: argparse.Namespace) -> int:
    """Score ``args.test_path`` and write ``args.pred_path`` (plus PRED_meta.json); the exit status.

    0: a complete file (also after SIGTERM/SIGINT or the deadline: the meta counts the fallbacks); 2: a usage or
    data problem found before scoring (flags, the test file, the models, the output path is the test file);
    1: the output could not be written (probed before scoring, and again at the end: a full disk).
    """
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    from submission.data import DataError, OutputError, check_output_path, read_test_rows
    from submission.runtime.run_meta import meta_path_for
    from submission.runtime.runtime import Deadline, RunSettings, predict, signals_interrupt, write_outputs

    def fail(message: str, status: int = EXIT_USAGE) -> int:
        print(f"error: {message}", file=sys.stderr)
        return status

    problem = check_flags(args)
    if problem:
        return fail(problem)
    deadline = Deadline(args.time_limit, started=_STARTED)
    with signals_interrupt(deadline):  # from here on a signal cannot lose the file: it is recorded, then honoured
        try:
            for path in (args.pred_path, meta_path_for(args.pred_path)):
                check_output_path(path, args.test_path)
            rows = read_test_rows(args.test_path)
            run_settings = RunSettings(
                model_dir=args.model_dir, models=args.models, device=args.device,
                engine="vllm" if args.tensor_parallel_size > 1 else args.engine,  # a split model runs on vLLM only
                max_tokens=args.max_tokens, token_budget=args.token_budget, time_limit_s=args.time_limit,
                metric=args.metric, ensemble=not args.no_ensemble, enforce_eager=args.enforce_eager,
                tensor_parallel_size=args.tensor_parallel_size,
                prefix_sharing=not args.no_prefix_sharing,
            )
            result = predict(rows, run_settings, deadline)
            meta = write_outputs(result, args.pred_path)
            if args.probabilities is not None:
                from submission.scoring.probabilities import write_probabilities

                write_probabilities(args.probabilities, result.ids, result.probabilities, result.labels)
        except OutputError as error:
            return fail(str(error), EXIT_WRITE)
        except (DataError, FileNotFoundError) as error:
            return fail(str(error))
    info = result.meta
    interrupted = f"; stopped by {info['interrupted']}" if info.get("interrupted") else ""
    print(f"wrote {len(result.ids)} predictions to {args.pred_path} ({info['strategy']}, {info['engine']}, "
          f"{info['fallback_rows']} fallbacks{interrupted}; meta: {meta})", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None, prog: str = "run_optimized.py") -> None:
    """Console-script entry point: parse, run, exit with its status (2 for a usage error)."""
    args = build_parser(prog).parse_args(argv if argv is not None else sys.argv[1:])
    sys.exit(run(args))
