"""Command line of the submission runtime (``run_optimized.py`` and ``./run.sh`` call this)."""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

import typer

from submission import settings

app = typer.Typer(add_completion=False, help="Score a contest test CSV with a judge model and write id,score.")
_STARTED = time.monotonic()  # the deadline counts from process start, imports included


@app.command()
def run(
    test_path: Path = typer.Option(..., "--test_path", "--test-path", help="Test CSV with columns id,prompt."),
    pred_path: Path = typer.Option(..., "--pred_path", "--pred-path", help="Where to write id,score."),
    models: Path = typer.Option(
        None, "--models", help="Folder of model folders (or an ensemble.json); default: the bundle's models/, then runs/*/merged."
    ),
    model_dir: Path = typer.Option(
        None, "--model-dir", help="One merged model folder (also $AIJ_MODEL_DIR); skips ranking and ensembles."
    ),
    engine: str = typer.Option("auto", "--engine", help="auto (by estimated time), vllm or hf."),
    time_limit: float = typer.Option(
        settings.DEFAULT_TIME_LIMIT_S, "--time-limit", help="Seconds for the whole run; rows not scored in time get a prior."
    ),
    metric: str = typer.Option(settings.DEFAULT_METRIC, "--metric", help="Report metric that ranks models (qwk, accuracy, macro_f1, mae, ...)."),
    no_ensemble: bool = typer.Option(False, "--no-ensemble", help="No ensemble (neither ensemble.json nor equally good models): the single best model."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    max_tokens: int = typer.Option(settings.MAX_PROMPT_TOKENS, "--max-tokens", help="Prompt length limit in tokens (middle-shortened)."),
    token_budget: int = typer.Option(None, "--token-budget", help="Transformers: tokens per batch (rows x longest row)."),
    enforce_eager: bool = typer.Option(False, "--enforce-eager", help="vLLM: no CUDA graphs (faster start, slower scoring)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Warnings and errors only."),
) -> None:
    """Score TEST_PATH and write PRED_PATH (plus PRED_meta.json)."""
    logging.basicConfig(level=logging.WARNING if quiet else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from submission.data import DataError, read_test_csv
    from submission.metrics import METRIC_NAMES
    from submission.runtime import Deadline, RunSettings, predict, write_outputs

    def fail(message: str):
        typer.echo(f"error: {message}", err=True)
        raise typer.Exit(2)

    if engine not in ("auto", "vllm", "hf"):
        fail(f"--engine {engine!r}: choose auto, vllm or hf")
    if metric not in METRIC_NAMES:
        fail(f"--metric {metric!r}: choose one of {', '.join(METRIC_NAMES)}")
    if time_limit < 0:
        fail(f"--time-limit {time_limit}: must be >= 0 seconds")
    deadline = Deadline(time_limit, started=_STARTED)
    try:
        frame = read_test_csv(test_path)
        run_settings = RunSettings(
            model_dir=model_dir, models=models, engine=engine, device=device, max_tokens=max_tokens,
            token_budget=token_budget, time_limit_s=time_limit, metric=metric, ensemble=not no_ensemble,
            enforce_eager=enforce_eager,
        )
        result = predict(frame, run_settings, deadline)
        meta = write_outputs(result, pred_path)
    except (DataError, FileNotFoundError) as error:
        fail(str(error))
    info = result.meta
    typer.echo(f"wrote {len(result.ids)} predictions to {pred_path} ({info['strategy']}, {info['engine']}, "
               f"{info['fallback_rows']} fallbacks; meta: {meta})", err=True)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    app(args=argv if argv is not None else sys.argv[1:], prog_name="run_optimized.py")
