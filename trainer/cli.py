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


@app.command("bench")
def bench(
    suite: str = typer.Option("all", "--suite", help="scoring, training, e2e or all."),
    out: Path = typer.Option(None, "--out", help="Results JSON (default bench/results/<device>-<date>.json)."),
    shape: str = typer.Option("auto", "--shape", help="qwen3-0.6b (real shape, GPU), tiny (CPU smoke) or auto."),
    rows: int = typer.Option(None, "--rows", min=1, help="Prompts in the scoring workload (default 4000 GPU, 64 CPU)."),
    repeats: int = typer.Option(5, "--repeats", min=1, help="Timed repeats after one warm-up; the median is reported."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    e2e_model_dir: Path = typer.Option(None, "--e2e-model-dir", help="Model folder for the e2e suite (default: tiny)."),
) -> None:
    """Measure scoring, training and end-to-end speed against baselines run in the same process (BENCHMARKS.md)."""
    import tempfile

    from submission.engine_hf import resolve_device
    from trainer.bench import SHAPES, SUITES, format_results, run_benchmarks, write_report

    suites = SUITES if suite == "all" else (suite,)
    if any(s not in SUITES for s in suites):
        typer.echo(f"error: unknown suite {suite!r}; choose scoring, training, e2e or all", err=True)
        raise typer.Exit(2)
    device = resolve_device(device)
    shape = shape if shape != "auto" else ("qwen3-0.6b" if device.startswith("cuda") else "tiny")
    if shape not in SHAPES:
        typer.echo(f"error: unknown shape {shape!r}; choose {', '.join(SHAPES)}", err=True)
        raise typer.Exit(2)
    rows = rows or (4000 if device.startswith("cuda") else 64)
    with tempfile.TemporaryDirectory() as workdir:
        report = run_benchmarks(suites, shape, rows, repeats, device, Path(workdir), e2e_model_dir)
    name = (report["environment"]["gpu"] or "cpu").lower().replace(" ", "-")
    out = out or Path("bench/results") / f"{name}-{time.strftime('%Y-%m-%d')}.json"
    write_report(report, out)
    typer.echo(format_results(report))
    typer.echo(str(out))
