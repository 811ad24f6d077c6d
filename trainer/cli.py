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


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


@app.command("train")
def train(
    experiment: str = typer.Option(..., "--experiment", help="1 (LoRA), 2 (balanced), 3 (full FT), 4 (enhanced), all, or demo (tiny CPU preset)."),
    train_path: Path = typer.Option(None, "--train-path", help="Train CSV (id,prompt,score)."),
    base_model: str = typer.Option(None, "--base-model", help="Base model folder (safetensors + tokenizer); offline, no hub download."),
    output_dir: Path = typer.Option(Path("runs"), "--output-dir", help="Runs go to OUTPUT_DIR/<run name>/."),
    config: Path = typer.Option(None, "--config", help="YAML merged over the preset."),
    set_: list[str] = typer.Option([], "--set", help="key=value override, repeatable (e.g. --set learning_rate=1e-4)."),
    run_name: str = typer.Option(None, "--run-name", help="Run folder name (default: the preset's name)."),
    wandb_project: str = typer.Option(None, "--wandb-project", help="Log to Weights & Biases (WANDB_MODE=offline honoured)."),
    resume: bool = typer.Option(False, "--resume", help="Resume from the run's last checkpoint."),
    merge: bool = typer.Option(True, "--merge/--no-merge", help="Merge and evaluate after training (a complete run dir)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the resolved config(s) and exit."),
) -> None:
    """Train one experiment (or all), then merge into RUN_DIR/merged and evaluate; prints the run dir last."""
    from trainer.config import EXPERIMENTS, ConfigError, config_json, load_config

    names = ["1", "2", "3", "4"] if experiment == "all" else [experiment]
    try:
        configs = [load_config(name, config, set_) for name in names]
    except ConfigError as err:
        _fail(str(err))
    if dry_run:
        for resolved in configs:
            typer.echo(config_json(resolved))
        return
    if train_path is None or base_model is None:
        _fail("--train-path and --base-model are required (only --dry-run works without them)")
    if not Path(train_path).is_file():
        _fail(f"--train-path {train_path}: file not found")
    if not Path(base_model).is_dir():
        _fail(f"--base-model {base_model}: not a folder; fetch it once with build/fetch_base_model.py (offline after that)")
    from submission.data import DataError
    from trainer.evaluate import evaluate_run
    from trainer.merge import merge_run
    from trainer.train import train_run

    run_dirs = []
    for name, resolved in zip(names, configs, strict=True):
        run_dir = output_dir / (run_name if run_name and len(names) == 1 else EXPERIMENTS[name] if name != "demo" else (run_name or "demo"))
        try:
            train_run(resolved, train_path, base_model, run_dir, resume=resume, wandb_project=wandb_project)
        except DataError as err:
            _fail(str(err))
        if merge:
            merge_run(run_dir)
            report = evaluate_run(run_dir)
            log.info("%s: %s %.4f, accuracy %.4f", run_dir.name, report["metric"], report[report["metric"]] or 0,
                     report["accuracy"])
        run_dirs.append(run_dir)
    if len(run_dirs) > 1:
        from trainer.report import collect_runs, format_report

        typer.echo(format_report([r for r in collect_runs(output_dir) if Path(output_dir, r["run"]) in run_dirs]))
    for run_dir in run_dirs:
        typer.echo(str(run_dir))


@app.command("merge")
def merge_cmd(
    run_dir: Path = typer.Argument(..., help="A run folder with adapter/ (LoRA) or merged/ (full FT)."),
    dtype: str = typer.Option(None, "--dtype", help="float16 (default), bfloat16 or float32."),
) -> None:
    """Merge RUN_DIR/adapter into its base model: RUN_DIR/merged (safetensors, tokenizer, chat template, card)."""
    from trainer.merge import merge_run, write_model_card

    try:
        merged = merge_run(run_dir, dtype)
    except FileNotFoundError as err:
        _fail(str(err))
    write_model_card(run_dir)
    typer.echo(str(merged))


@app.command("evaluate")
def evaluate_cmd(
    run_dir: Path = typer.Argument(..., help="A merged run folder."),
    data: Path = typer.Option(None, "--data", help="Labelled CSV (id,prompt,score); default the run's validation split."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
) -> None:
    """Score with the submission's own scorer; writes validation_report.json, plots/ and val_predictions.csv."""
    from submission.data import DataError
    from submission.metrics import format_table
    from trainer.evaluate import evaluate_run

    try:
        report = evaluate_run(run_dir, data, device)
    except (DataError, FileNotFoundError) as err:
        _fail(str(err))
    typer.echo(format_table(report))
    typer.echo(str(Path(run_dir) / "validation_report.json"))


@app.command("report")
def report_cmd(
    runs_dir: Path = typer.Argument(Path("runs"), help="Folder of runs."),
    metric: str = typer.Option("qwk", "--metric", help="Selection metric; the best run is marked *."),
) -> None:
    """One table across runs: metrics, size, training time and the config keys that differ."""
    from trainer.report import collect_runs, format_report

    typer.echo(format_report(collect_runs(runs_dir), metric))


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
