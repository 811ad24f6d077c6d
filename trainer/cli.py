"""The trainer's command line: one typer app, one command per pipeline step.

    python -m trainer tiny-model runs/tiny
    python -m trainer synth data/synth --rows 1000 --seed 1

Commands import their heavy dependencies (torch, transformers) inside the function, so ``--help`` stays instant.
Results (paths written) go to stdout, progress and logs to stderr. A mistake the user can fix (a bad setting, a
missing file, malformed data) is one ``error: ...`` line on stderr and exit 2, mapped in one place
(:class:`_Commands`); anything else is a bug and raises.

Shared options live in trainer/cli_options.py; ``advanced`` in trainer/cli_recipes.py; the POLLUX commands in
trainer/cli_pollux.py. Each command is a thin wrapper over the module of its stage.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import typer
from typer.core import TyperGroup

from trainer.cli_options import (  # noqa: F401
    TrainingOptions,
    UserError,
    _checked,
    _device_option,
    _engine_option,
    _no_prefix_sharing_option,
    _require_run,
    _training_options,
    _unsloth_calls,
)
from trainer.training.config import presets_help  # the --experiment help is made from the preset list


def _user_errors() -> tuple[type[Exception], ...]:
    """The exceptions that mean bad input, not a bug (imported when one is being matched, so startup stays light)."""
    from submission.data import DataError
    from trainer.recipes.advanced import EnsembleError
    from trainer.tiny.qwen3_tokenizer import TiktokenNotFound
    from trainer.training.backend_unsloth import BackendUnavailable
    from trainer.training.config import ConfigError
    from trainer.training.hf_trainer import TrainingDiverged
    from trainer.training.rundir import RunDirError
    from trainer.training.train import BaseModelError

    return (UserError, DataError, ConfigError, TiktokenNotFound, EnsembleError, RunDirError, TrainingDiverged,
            BaseModelError, BackendUnavailable)


class _Commands(TyperGroup):
    """The app's command group: its ``invoke`` is the one error boundary (user errors -> one line, exit 2)."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except _user_errors() as err:
            typer.echo(f"error: {err}", err=True)
            raise typer.Exit(2) from None


app = typer.Typer(
    cls=_Commands,
    name="aij-judge",
    help="Train, check and package the Qwen3 judge. Each command is one step of the pipeline (docs/ARCHITECTURE.md §1).",
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
    hidden_size: int = typer.Option(64, "--hidden-size", help="Model width; a multiple of 16 (hidden/16 heads) unless --heads is given."),
    layers: int = typer.Option(2, "--layers", help="Number of transformer layers."),
    seed: int = typer.Option(0, "--seed", help="Seed for the weights and for the tokenizer's training corpus."),
    head_dim: int = typer.Option(32, "--head-dim", help="Attention head size; vLLM's CPU attention takes 32, 64, 80, 96, 112, 128, ... (not 16)."),
    heads: int = typer.Option(None, "--heads", help="Attention heads (default hidden-size / 16); key/value heads are half (at least one)."),
    tokenizer: str = typer.Option("tiny", "--tokenizer", help="tiny (BPE trained here on synthetic text) or qwen3 (Qwen3's real 151,669-token vocabulary from the dashscope wheel)."),
    qwen_tiktoken: Path = typer.Option(None, "--qwen-tiktoken", help="qwen.tiktoken or a dashscope wheel (default: $AIJ_QWEN_TIKTOKEN, then .venv/contract-wheels/dashscope-*.whl)."),
) -> None:
    """Build a tiny random Qwen3 with a local Qwen-style (or Qwen3's own) tokenizer, for CPU tests and smoke runs (no download)."""
    from trainer.tiny.models import VLLM_CPU_HEAD_DIMS, make_tiny_model_dir

    if tokenizer not in ("tiny", "qwen3"):
        raise UserError(f"--tokenizer {tokenizer!r}: choose tiny or qwen3")
    if head_dim not in VLLM_CPU_HEAD_DIMS:
        log.warning("--head-dim %d: vLLM's CPU attention cannot run this model (it takes %s)", head_dim,
                    ", ".join(map(str, VLLM_CPU_HEAD_DIMS)))
    if heads is None and hidden_size % 16:
        raise UserError(f"--hidden-size {hidden_size} is not a multiple of 16; pass --heads or another size")
    start = time.perf_counter()
    out = make_tiny_model_dir(out_dir, hidden_size=hidden_size, num_layers=layers, seed=seed, head_dim=head_dim,
                              tokenizer=tokenizer, qwen_tiktoken=qwen_tiktoken, **({"num_heads": heads} if heads else {}))
    log.info("tiny model built in %.1f s", time.perf_counter() - start)
    typer.echo(str(out))


@app.command("synth")
def synth(
    out_dir: Path = typer.Argument(..., help="Folder to write train.csv, test.csv and gold.csv into."),
    rows: int = typer.Option(..., "--rows", min=1, help="Number of train rows."),
    seed: int = typer.Option(..., "--seed", help="Seed; the same rows and seed give the same files."),
    test_rows: int | None = typer.Option(None, "--test-rows", min=1, help="Number of test rows (default: a quarter of --rows)."),
    train_minus_one: float | None = typer.Option(
        None, "--train-minus-one", min=0.0, max=1.0,
        help="-1 means 'criterion not applicable' (a criterion of another task family); this share of the train rows "
             "whose scale has a -1 line get it (0: no -1 in train, like the real split; test keeps 0.4). "
             "Default: -1 = an empty answer (rare in train)."),
    task: str = typer.Option("lexical", "--task", help="lexical (the word-statistics label above) or reference (the "
                             "score needs the answer compared with the reference: arithmetic and tool calls, "
                             "trainer/data/synth_reference.py)."),
    language: str = typer.Option("mix", "--language", help="--task reference only: ru, en or mix (50/50 per row)."),
) -> None:
    """Write synthetic judge data in the contest format; the label is learnable from word statistics.

    Score: all-Russian answer 3, a quarter English 2, half 1, all English 0, empty -1; with --train-minus-one,
    -1 is a criterion of another task family instead (rules: trainer/data/synth.py). --task reference: a score that
    only comparing the answer with the reference decides (trainer/data/synth_reference.py).
    """
    from trainer.data.synth import write_synthetic
    from trainer.data.synth_reference import LANGUAGES, write_reference_rows

    if task not in ("lexical", "reference"):
        raise UserError(f"--task {task!r}: choose lexical or reference")
    if language not in LANGUAGES:
        raise UserError(f"--language {language!r}: choose {', '.join(LANGUAGES)}")
    if task == "reference":
        paths = write_reference_rows(out_dir, rows=rows, seed=seed, test_rows=test_rows, language=language,
                                     train_minus_one=train_minus_one or 0.0)
    else:
        paths = write_synthetic(out_dir, rows=rows, seed=seed, test_rows=test_rows, train_minus_one=train_minus_one)
    log.info("synthetic data: %d train rows, seed %d", rows, seed)
    for path in paths.values():
        typer.echo(str(path))


@app.command("bench")
def bench(
    suite: str = typer.Option("all", "--suite", help="scoring, training, e2e or all."),
    out: Path = typer.Option(None, "--out", help="Results JSON (default bench/results/<device>-<date>.json)."),
    shape: str = typer.Option("auto", "--shape", help="qwen3-0.6b (real shape, GPU), tiny (CPU smoke), wide "
                              "(hidden 256, 4 layers), qwen3-0.6b-width (Qwen3-0.6B's layer, 2 deep) or auto."),
    rows: int = typer.Option(None, "--rows", min=1, help="Prompts in the scoring workload (default 4000 GPU, 64 CPU)."),
    repeats: int = typer.Option(5, "--repeats", min=1, help="Timed repeats after one warm-up; the median is reported."),
    device: str = _device_option(),
    e2e_model_dir: Path = typer.Option(None, "--e2e-model-dir", help="Model folder, or a run folder (its merged model), for the e2e suite (default: tiny)."),
    pollux_grid: str = typer.Option(None, "--pollux-grid", help="Scoring suite: POLLUX-shaped workloads (answers "
                                    "judged on K criteria) scored without and with prefix sharing, as "
                                    "KxANSWER_TOKENS,... or none. [default: 1x150,3x150,6x150,14x150,1x600,3x600,"
                                    "6x600,14x600]"),
    pollux_rows: int = typer.Option(24, "--pollux-rows", min=2, help="Rows per POLLUX-shaped workload (whole "
                                    "answers, at least 2)."),
) -> None:
    """Measure scoring, training and end-to-end speed against baselines run in the same process (BENCHMARKS.md)."""
    import tempfile

    from submission.engines.engine_hf import resolve_device
    from trainer.bench import (
        POLLUX_GRID,
        SHAPES,
        SUITES,
        format_results,
        parse_pollux_grid,
        run_benchmarks,
        write_report,
    )

    suites = SUITES if suite == "all" else (suite,)
    if any(s not in SUITES for s in suites):
        raise UserError(f"unknown suite {suite!r}; choose scoring, training, e2e or all")
    try:
        grid = parse_pollux_grid(POLLUX_GRID if pollux_grid is None else pollux_grid)
    except ValueError as err:
        raise UserError(f"--pollux-grid {err}") from err
    device = resolve_device(device)
    shape = shape if shape != "auto" else ("qwen3-0.6b" if device.startswith("cuda") else "tiny")
    if shape not in SHAPES:
        raise UserError(f"unknown shape {shape!r}; choose {', '.join(SHAPES)}")
    rows = rows or (4000 if device.startswith("cuda") else 64)
    with tempfile.TemporaryDirectory() as workdir:
        report = run_benchmarks(suites, shape, rows, repeats, device, Path(workdir), e2e_model_dir,
                                pollux_grid=grid, pollux_rows=pollux_rows)
    name = (report["environment"]["gpu"] or "cpu").lower().replace(" ", "-")
    out = out or Path("bench/results") / f"{name}-{time.strftime('%Y-%m-%d')}.json"
    write_report(report, out)
    typer.echo(format_results(report))
    typer.echo(str(out))


@app.command("train")
@_training_options(typer.Option(..., "--experiment", help=f"Preset: {presets_help(with_all=True)}."),
                   paths_required=False)
def train(
    options: TrainingOptions,
    run_name: str = typer.Option(None, "--run-name", help="Run folder name (default: the preset's name)."),
    wandb_project: str = typer.Option(None, "--wandb-project", help="Log to W&B (WANDB_MODE=offline honoured)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the resolved config (stdout, JSON) and exit; with "
                                 "backend unsloth also the keywords of each Unsloth call (stderr)."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the run's last checkpoint."),
    no_merge: bool = typer.Option(False, "--no-merge", help="Skip merge + evaluate after training."),
    soft_labels: Path = typer.Option(None, "--soft-labels", help="Teacher soft labels (`distill` output); rows of the "
                                     "train CSV with an empty score train on them alone. Mix: --set distill_alpha=A."),
) -> None:
    """Train a preset; then merge into RUN_DIR/merged and evaluate on the saved validation split.

    The last stdout line is the run dir.
    """
    import json

    from trainer.training.config import ALL_EXPERIMENTS, COMPARED_EXPERIMENTS

    experiment = options.experiment
    compare = experiment == ALL_EXPERIMENTS
    experiments = list(COMPARED_EXPERIMENTS) if compare else [experiment]
    configs = [
        options.resolve(e, run_name=run_name if not compare else None, wandb_project=wandb_project,
                        soft_labels=str(soft_labels) if soft_labels else None)
        for e in experiments
    ]
    if dry_run:
        for resolved in configs:
            typer.echo(json.dumps(resolved.model_dump(), indent=2, ensure_ascii=False))
            if resolved.backend == "unsloth":
                typer.echo(_unsloth_calls(resolved), err=True)
        return
    for resolved in configs:
        if not resolved.train_path or not Path(resolved.train_path).is_file():
            raise UserError(f"--train-path {resolved.train_path or '(missing)'}: file not found")
        if not resolved.base_model:
            raise UserError("--base-model is required (a model folder or an HF id in the offline cache)")
    from trainer.evaluation.collapse import collapse_line
    from trainer.recipes.pipeline import train_merge_evaluate
    from trainer.training.train import is_main_process

    run_dirs, warnings = [], []
    for resolved in configs:
        trained = train_merge_evaluate(resolved, resume=resume, merge=not no_merge)
        if trained.report is not None:
            log.info("%s: %s %.4f, accuracy %.4f", trained.path, resolved.metric,
                     trained.report.get(resolved.metric) or 0.0, trained.report["accuracy"])
            if collapse_line(trained.report):
                warnings.append(f"{trained.path}: {collapse_line(trained.report)}")
        run_dirs.append(trained.path)
    if compare and is_main_process():
        from trainer.evaluation.report import collect_runs, format_report

        typer.echo(format_report(collect_runs(run_dirs)))
    if is_main_process():
        # stdout's last line stays the run folder (scripts read it); the collapse verdict is the terminal's last line
        typer.echo(str(run_dirs[-1] if not compare else Path(options.output_dir)))
        for warning in warnings:
            typer.echo(warning, err=True)


def _tensor_parallel_engine(engine: str, size: int, model_dir: Path) -> str:
    """The engine to use under ``--tensor-parallel-size``: ``engine`` at 1, else vLLM, or one error line when the
    GPUs here or the model cannot take it (checked before anything loads)."""
    if size == 1:
        return engine
    if engine == "hf":
        raise UserError(f"--tensor-parallel-size {size}: needs --engine vllm or auto (transformers runs on one device)")
    from submission.engines.engine_vllm import tensor_parallel_problem

    problem = tensor_parallel_problem(size, model_dir)
    if problem:
        raise UserError(problem)
    return "vllm"


@app.command("distill")
def distill(
    teacher: Path = typer.Option(..., "--teacher", help="Teacher model folder (merged safetensors + tokenizer)."),
    data: Path = typer.Option(..., "--data", help="CSV id,prompt[,score]; the score is not needed (unlabelled rows)."),
    out: Path = typer.Option(..., "--out", help="CSV to write: id,p_-1,p_0,p_1,p_2,p_3 (submission/scoring/probabilities.py)."),
    samples: int = typer.Option(8, "--samples", min=1, help="Free-text teacher (judge.json mode generate): verdicts "
                                "sampled per row; the soft label is their empirical distribution."),
    temperature: float = typer.Option(1.0, "--temperature", min=0.01, help="Sampling temperature (free-text teacher)."),
    seed: int = typer.Option(0, "--seed", help="Sampling seed (free-text teacher)."),
    engine: str = _engine_option("auto", "auto is vLLM on a GPU when installed."),
    device: str = _device_option(),
    max_tokens: int = typer.Option(None, "--max-tokens", min=64, help="Prompt length limit (default: the runtime's)."),
    tensor_parallel_size: int = typer.Option(1, "--tensor-parallel-size", min=1, help="vLLM: split the model over N "
                                             "GPUs (a 32B teacher: README 'A teacher on several GPUs')."),
    no_prefix_sharing: bool = _no_prefix_sharing_option(),
) -> None:
    """Write a teacher judge's probabilities over the scores each rubric allows, per id (soft labels).

    Zero outside the rubric, each row sums to 1. Train on them with `train --soft-labels PATH` (+ `--set distill_alpha=A`).
    """
    from submission.data import read_prompt_csv
    from trainer.recipes.distill import TeacherError, soft_label_frame, teacher_probabilities, write_soft_labels

    if not (teacher / "config.json").is_file():
        raise UserError(f"--teacher {teacher}: not a model folder (no config.json); pass RUN_DIR/merged")
    engine = _tensor_parallel_engine(engine, tensor_parallel_size, teacher)
    try:
        frame = read_prompt_csv(data)
    except FileNotFoundError as err:
        raise UserError(str(err)) from err
    try:
        probs, mode = teacher_probabilities(teacher, frame["prompt"].tolist(), engine, device, max_tokens, samples,
                                            temperature, seed, tensor_parallel_size=tensor_parallel_size,
                                            prefix_sharing=not no_prefix_sharing)
    except TeacherError as err:
        raise UserError(f"--teacher {err}") from err
    soft = soft_label_frame(frame["id"], probs)
    if len(soft) < len(frame):
        log.warning("%d of %d rows: no sampled verdict named an allowed score; left out of %s (raise --samples)",
                    len(frame) - len(soft), len(frame), out)
    write_soft_labels(out, soft)
    log.info("soft labels (%s teacher) for %d rows", mode, len(soft))
    typer.echo(str(out))


@app.command("merge")
def merge(run_dir: Path = typer.Argument(..., help="A run folder with adapter/ (LoRA) or merged/ (full FT).")) -> None:
    """Merge LoRA adapters into fp16 safetensors in RUN_DIR/merged (tokenizer, chat template, model card)."""
    from trainer.training.merge import merge_run

    _require_run(run_dir)
    typer.echo(str(merge_run(run_dir)))


@app.command("evaluate")
def evaluate(
    run_dir: Path = typer.Argument(..., help="A run folder with merged/."),
    data: Path = typer.Option(None, "--data", help="CSV id,prompt,score (default: the run's train CSV, val ids)."),
    device: str = _device_option(),
    engine: str = _engine_option("hf", "hf is transformers; auto is the runtime's choice by estimated time (hf on a "
                                 "CPU). vLLM that does not start falls back to transformers."),
    tensor_parallel_size: int = typer.Option(1, "--tensor-parallel-size", min=1, help="vLLM: split the model over N "
                                             "GPUs (a 32B teacher: README 'A teacher on several GPUs')."),
    no_prefix_sharing: bool = _no_prefix_sharing_option(),
) -> None:
    """Score RUN_DIR/merged with the runtime's scorer; write validation_report.json and PNG plots."""
    from trainer.evaluation.evaluate import evaluate_run
    from trainer.evaluation.metrics import format_table

    run = _require_run(run_dir)
    engine = _tensor_parallel_engine(engine, tensor_parallel_size, run.merged)
    try:
        report = evaluate_run(run_dir, data, device, engine, tensor_parallel_size=tensor_parallel_size,
                              prefix_sharing=not no_prefix_sharing)
    except FileNotFoundError as err:
        raise UserError(str(err)) from err
    typer.echo(format_table(report))
    if report.get("scoring"):
        from trainer.evaluation.report_html import usage_line

        typer.echo(usage_line(report["scoring"]))
    if report.get("pollux"):
        from trainer.evaluation.pollux_metrics import format_pollux_table

        typer.echo(format_pollux_table(report["pollux"]))
    typer.echo(str(run.report_path))


@app.command("report")
def report(
    runs: Path = typer.Argument(Path("runs"), help="Folder of run folders."),
    metric: str = typer.Option(None, "--metric", help="Metric to rank by (default: each run's configured metric)."),
    html: Path = typer.Option(None, "--html", help="Also write a self-contained page (plots embedded, no network): "
                              "the run table, then the best run's confusion matrix, reliability diagram, per-family "
                              "and per-criterion tables, bias checks and most confident errors."),
) -> None:
    """One table across runs: metrics, ECE, worst criterion, size, time, config deltas; the best is marked.

    With --html the last stdout line is the page written.
    """
    from submission.choice.metrics import UnknownMetric, check_metric
    from trainer.evaluation.report import collect_runs, format_report
    from trainer.training.rundir import RunDir

    if metric is not None:
        try:
            check_metric(metric)
        except UnknownMetric as err:
            raise UserError(f"--metric: {err}") from err

    found = RunDir.all_in(runs)
    if not found:
        raise UserError(f"{runs}: no run folders (*/{RunDir.RECORD})")
    rows = collect_runs([r.path for r in found])
    typer.echo(format_report(rows, metric))
    if html is not None:
        from trainer.evaluation.report_html import render_report_html

        html.parent.mkdir(parents=True, exist_ok=True)
        html.write_text(render_report_html(rows, metric, title=str(runs)), encoding="utf-8")
        typer.echo(str(html))


# -- advanced: one subcommand per recipe; README also spells them as flags (`advanced --kfold 5 ...`) ---------------


from trainer.cli_pollux import import_pollux, pollux_report  # noqa: E402 - registered after the app exists
from trainer.cli_recipes import advanced_app  # noqa: E402

app.command("import-pollux")(import_pollux)
app.command("pollux-report")(pollux_report)
app.add_typer(advanced_app, name="advanced")
