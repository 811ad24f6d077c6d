"""The trainer's command line: one typer app, one command per pipeline step.

    python -m trainer tiny-model runs/tiny
    python -m trainer synth data/synth --rows 1000 --seed 1

Commands import their heavy dependencies (torch, transformers) inside the function, so ``--help`` stays instant.
Results (paths written) go to stdout, progress and logs to stderr.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import typer

app = typer.Typer(
    name="aij-judge",
    help="Train, check and package the Qwen3 judge. Each command is one step of the pipeline (DESIGN.md §1).",
    no_args_is_help=True,
    add_completion=False,
)
log = logging.getLogger("trainer")


@app.callback()
def _setup(verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logging on stderr.")) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(asctime)s %(name)s %(message)s")


@app.command("tiny-model")
def tiny_model(
    out_dir: Path = typer.Argument(..., help="Folder to write (created if missing): tokenizer, config, safetensors."),
    hidden_size: int = typer.Option(64, "--hidden-size", help="Model width; a multiple of 16 (the head size)."),
    layers: int = typer.Option(2, "--layers", help="Number of transformer layers."),
    seed: int = typer.Option(0, "--seed", help="Seed for the weights and for the tokenizer's training corpus."),
) -> None:
    """Build a tiny random Qwen3 with a local Qwen-style tokenizer, for CPU tests and smoke runs (no download)."""
    from trainer.tiny import make_tiny_model_dir

    start = time.perf_counter()
    out = make_tiny_model_dir(out_dir, hidden_size=hidden_size, num_layers=layers, seed=seed)
    log.info("tiny model built in %.1f s", time.perf_counter() - start)
    typer.echo(str(out))


@app.command("synth")
def synth(
    out_dir: Path = typer.Argument(..., help="Folder to write train.csv, test.csv and gold.csv into."),
    rows: int = typer.Option(..., "--rows", min=1, help="Number of train rows."),
    seed: int = typer.Option(..., "--seed", help="Seed; the same rows and seed give the same files."),
    test_rows: int | None = typer.Option(None, "--test-rows", min=1, help="Number of test rows (default: a quarter of --rows)."),
) -> None:
    """Write synthetic judge data in the contest format; the label is learnable from word statistics.

    Score: all-Russian answer 3, a quarter English 2, half 1, all English 0, empty -1 (rule: trainer/synth.py).
    """
    from trainer.synth import write_synthetic

    paths = write_synthetic(out_dir, rows=rows, seed=seed, test_rows=test_rows)
    log.info("synthetic data: %d train rows, seed %d", rows, seed)
    for path in paths.values():
        typer.echo(str(path))
