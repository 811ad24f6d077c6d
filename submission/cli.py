"""Command line of the submission runtime (``run_optimized.py`` and ``./run.sh`` call this)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import typer

app = typer.Typer(add_completion=False, help="Score a contest test CSV with a judge model and write id,score.")


@app.command()
def run(
    test_path: Path = typer.Option(..., "--test_path", "--test-path", help="Test CSV with columns id,prompt."),
    pred_path: Path = typer.Option(..., "--pred_path", "--pred-path", help="Where to write id,score."),
    model_dir: Path = typer.Option(
        None, "--model-dir", help="Merged model folder; default $AIJ_MODEL_DIR, then models/*, then runs/*/merged."
    ),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    max_tokens: int = typer.Option(4096, "--max-tokens", help="Prompt length limit in tokens (middle-shortened)."),
    token_budget: int = typer.Option(None, "--token-budget", help="Tokens per batch (rows x longest row)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Warnings and errors only."),
) -> None:
    """Score TEST_PATH and write PRED_PATH (plus PRED_meta.json)."""
    logging.basicConfig(level=logging.WARNING if quiet else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from submission.data import DataError, read_test_csv
    from submission.runtime import RunSettings, predict, write_outputs

    try:
        frame = read_test_csv(test_path)
        settings = RunSettings(model_dir=model_dir, device=device, max_tokens=max_tokens, token_budget=token_budget)
        result = predict(frame, settings)
        meta = write_outputs(result, pred_path)
    except (DataError, FileNotFoundError) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"wrote {len(result.ids)} predictions to {pred_path} (meta: {meta})", err=True)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    app(args=argv if argv is not None else sys.argv[1:], prog_name="run_optimized.py")
