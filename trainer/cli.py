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
    hidden_size: int = typer.Option(64, "--hidden-size", help="Model width; a multiple of 16 (hidden/16 heads) unless --heads is given."),
    layers: int = typer.Option(2, "--layers", help="Number of transformer layers."),
    seed: int = typer.Option(0, "--seed", help="Seed for the weights and for the tokenizer's training corpus."),
    head_dim: int = typer.Option(32, "--head-dim", help="Attention head size; vLLM's CPU attention takes 32, 64, 80, 96, 112, 128, ... (not 16)."),
    heads: int = typer.Option(None, "--heads", help="Attention heads (default hidden-size / 16); key/value heads are half."),
    tokenizer: str = typer.Option("tiny", "--tokenizer", help="tiny (BPE trained here on synthetic text) or qwen3 (Qwen3's real 151,669-token vocabulary from the dashscope wheel)."),
    qwen_tiktoken: Path = typer.Option(None, "--qwen-tiktoken", help="qwen.tiktoken or a dashscope wheel (default: $AIJ_QWEN_TIKTOKEN, then .venv/contract-wheels/dashscope-*.whl)."),
) -> None:
    """Build a tiny random Qwen3 with a local Qwen-style (or Qwen3's own) tokenizer, for CPU tests and smoke runs (no download)."""
    from trainer.qwen3_tokenizer import TiktokenNotFound
    from trainer.tiny import VLLM_CPU_HEAD_DIMS, make_tiny_model_dir

    if tokenizer not in ("tiny", "qwen3"):
        _fail(f"--tokenizer {tokenizer!r}: choose tiny or qwen3")
    if head_dim not in VLLM_CPU_HEAD_DIMS:
        log.warning("--head-dim %d: vLLM's CPU attention cannot run this model (it takes %s)", head_dim,
                    ", ".join(map(str, VLLM_CPU_HEAD_DIMS)))
    if heads is None and hidden_size % 16:
        _fail(f"--hidden-size {hidden_size} is not a multiple of 16; pass --heads or another size")
    start = time.perf_counter()
    try:
        out = make_tiny_model_dir(out_dir, hidden_size=hidden_size, num_layers=layers, seed=seed, head_dim=head_dim,
                                  tokenizer=tokenizer, qwen_tiktoken=qwen_tiktoken,
                                  **({"num_heads": heads} if heads else {}))
    except TiktokenNotFound as error:
        _fail(str(error))
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
             "Default: the legacy files (-1 = empty answer, rare in train)."),
    task: str = typer.Option("lexical", "--task", help="lexical (the word-statistics label above) or reference (the "
                             "score needs the answer compared with the reference: arithmetic and tool calls, "
                             "trainer/synth_reference.py)."),
    language: str = typer.Option("mix", "--language", help="--task reference only: ru, en or mix (50/50 per row)."),
) -> None:
    """Write synthetic judge data in the contest format; the label is learnable from word statistics.

    Score: all-Russian answer 3, a quarter English 2, half 1, all English 0, empty -1; with --train-minus-one,
    -1 is a criterion of another task family instead (rules: trainer/synth.py). --task reference: a score that
    only comparing the answer with the reference decides (trainer/synth_reference.py).
    """
    from trainer.synth import write_synthetic
    from trainer.synth_reference import LANGUAGES, write_reference_rows

    if task not in ("lexical", "reference"):
        _fail(f"--task {task!r}: choose lexical or reference")
    if language not in LANGUAGES:
        _fail(f"--language {language!r}: choose {', '.join(LANGUAGES)}")
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
    shape: str = typer.Option("auto", "--shape", help="qwen3-0.6b (real shape, GPU), tiny (CPU smoke) or auto."),
    rows: int = typer.Option(None, "--rows", min=1, help="Prompts in the scoring workload (default 4000 GPU, 64 CPU)."),
    repeats: int = typer.Option(5, "--repeats", min=1, help="Timed repeats after one warm-up; the median is reported."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    e2e_model_dir: Path = typer.Option(None, "--e2e-model-dir", help="Model folder, or a run folder (its merged model), for the e2e suite (default: tiny)."),
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


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def _require_run(run_dir: Path):
    """The RunDir at ``run_dir``, or exit 2 when it is not a run folder."""
    from trainer.rundir import RunDir

    run = RunDir(run_dir)
    if not run.is_run():
        _fail(f"{run_dir}: not a run folder (no {run.RECORD})")
    return run


def _unsloth_calls(config) -> str:
    """The Unsloth calls a run of ``config`` makes, keywords resolved (dtype as picked on this machine)."""
    import json

    import torch

    from trainer import backend_unsloth
    from trainer.rundir import RunDir
    from trainer.train import pick_precision, torch_dtype

    if config.precision == "auto" and not torch.cuda.is_available():
        dtype = "bf16 where the GPU supports it, else fp16 (precision auto, picked on the GPU)"
    else:
        dtype = torch_dtype(pick_precision(config))
    calls = backend_unsloth.resolved_calls(config, dtype, RunDir(config.run_dir()).merged)
    return "Unsloth calls (trainer/backend_unsloth.py):\n" + json.dumps(calls, indent=2, ensure_ascii=False)


@app.command("train")
def train(
    experiment: str = typer.Option(..., "--experiment", help="Preset: 1, 2, 3, 4, all (1-4 + comparison) or demo."),
    train_path: Path = typer.Option(None, "--train-path", help="Train CSV (id,prompt,score)."),
    base_model: str = typer.Option(None, "--base-model", help="Base model folder or HF id (offline cache)."),
    output_dir: Path = typer.Option(Path("runs"), "--output-dir", help="Runs go to OUTPUT_DIR/RUN_NAME."),
    config: Path = typer.Option(None, "--config", help="YAML whose settings override the preset."),
    overrides: list[str] = typer.Option(None, "--set", help="key=value override (repeatable), e.g. --set max_steps=50."),
    run_name: str = typer.Option(None, "--run-name", help="Run folder name (default: the preset's name)."),
    wandb_project: str = typer.Option(None, "--wandb-project", help="Log to W&B (WANDB_MODE=offline honoured)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the resolved config (stdout, JSON) and exit; with "
                                 "backend unsloth also the keywords of each Unsloth call (stderr)."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the run's last checkpoint."),
    no_merge: bool = typer.Option(False, "--no-merge", help="Skip merge + evaluate after training."),
    split_by: str = typer.Option(None, "--split-by", help="Validate on unseen groups: criterion or family (whole "
                                 "groups held out; val_fraction is then the share of groups). Default: config split_by."),
    soft_labels: Path = typer.Option(None, "--soft-labels", help="Teacher soft labels (`distill` output); rows of the "
                                     "train CSV with an empty score train on them alone. Mix: --set distill_alpha=A."),
) -> None:
    """Train a preset; then merge into RUN_DIR/merged and evaluate on the saved validation split.

    The last stdout line is the run dir.
    """
    import json

    from trainer.config import ConfigError, resolve_config

    experiments = ["1", "2", "3", "4"] if experiment == "all" else [experiment]
    try:
        configs = [
            resolve_config(
                e, config, overrides, train_path=str(train_path) if train_path else None, base_model=base_model,
                output_dir=str(output_dir), run_name=run_name if experiment != "all" else None,
                wandb_project=wandb_project, split_by=split_by, soft_labels=str(soft_labels) if soft_labels else None,
            )
            for e in experiments
        ]
    except ConfigError as err:
        _fail(str(err))
    if dry_run:
        for resolved in configs:
            typer.echo(json.dumps(resolved.model_dump(), indent=2, ensure_ascii=False))
            if resolved.backend == "unsloth":
                typer.echo(_unsloth_calls(resolved), err=True)
        return
    for resolved in configs:
        if not resolved.train_path or not Path(resolved.train_path).is_file():
            _fail(f"--train-path {resolved.train_path or '(missing)'}: file not found")
        if not resolved.base_model:
            _fail("--base-model is required (a model folder or an HF id in the offline cache)")
    from submission.data import DataError
    from trainer.train import is_main_process, train_run

    run_dirs = []
    for resolved in configs:
        try:
            run_dir = train_run(resolved, resume=resume)
        except DataError as err:
            _fail(str(err))
        if is_main_process() and not no_merge:
            from trainer.evaluate import evaluate_run
            from trainer.merge import merge_run

            merge_run(run_dir)
            report = evaluate_run(run_dir)
            log.info("%s: %s %.4f, accuracy %.4f", run_dir, resolved.metric, report.get(resolved.metric) or 0.0,
                     report["accuracy"])
        run_dirs.append(run_dir)
    if experiment == "all" and is_main_process():
        from trainer.report import collect_runs, format_report

        typer.echo(format_report(collect_runs(run_dirs)))
    if is_main_process():
        typer.echo(str(run_dirs[-1] if experiment != "all" else Path(output_dir)))


@app.command("distill")
def distill(
    teacher: Path = typer.Option(..., "--teacher", help="Teacher model folder (merged safetensors + tokenizer)."),
    data: Path = typer.Option(..., "--data", help="CSV id,prompt[,score]; the score is not needed (unlabelled rows)."),
    out: Path = typer.Option(..., "--out", help="CSV to write: id,p_-1,p_0,p_1,p_2,p_3."),
    samples: int = typer.Option(8, "--samples", min=1, help="Free-text teacher (judge.json mode generate): verdicts "
                                "sampled per row; the soft label is their empirical distribution."),
    temperature: float = typer.Option(1.0, "--temperature", min=0.01, help="Sampling temperature (free-text teacher)."),
    seed: int = typer.Option(0, "--seed", help="Sampling seed (free-text teacher)."),
    engine: str = typer.Option("auto", "--engine", help="auto (vLLM on a GPU when installed), vllm or hf."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    max_tokens: int = typer.Option(None, "--max-tokens", min=64, help="Prompt length limit (default: the runtime's)."),
) -> None:
    """Write a teacher judge's probabilities over the scores each rubric allows, per id (soft labels).

    Zero outside the rubric, each row sums to 1. Train on them with `train --soft-labels PATH` (+ `--set distill_alpha=A`).
    """
    from submission.data import DataError, read_prompt_csv
    from trainer.distill import soft_label_frame, teacher_probabilities, write_soft_labels

    if engine not in ("auto", "vllm", "hf"):
        _fail(f"--engine {engine}: choose auto, vllm or hf")
    if not (teacher / "config.json").is_file():
        _fail(f"--teacher {teacher}: not a model folder (no config.json); pass RUN_DIR/merged")
    try:
        frame = read_prompt_csv(data)
    except (DataError, FileNotFoundError) as err:
        _fail(str(err))
    probs, mode = teacher_probabilities(teacher, frame["prompt"].tolist(), engine, device, max_tokens, samples,
                                        temperature, seed)
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
    from trainer.merge import merge_run

    _require_run(run_dir)
    typer.echo(str(merge_run(run_dir)))


@app.command("evaluate")
def evaluate(
    run_dir: Path = typer.Argument(..., help="A run folder with merged/."),
    data: Path = typer.Option(None, "--data", help="CSV id,prompt,score (default: the run's train CSV, val ids)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
) -> None:
    """Score RUN_DIR/merged with the runtime's scorer; write validation_report.json and PNG plots."""
    from submission.data import DataError
    from trainer.evaluate import evaluate_run
    from trainer.metrics import format_table

    run = _require_run(run_dir)
    try:
        report = evaluate_run(run_dir, data, device)
    except (DataError, FileNotFoundError) as err:
        _fail(str(err))
    typer.echo(format_table(report))
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
    from submission.metrics import UnknownMetric, check_metric
    from trainer.report import collect_runs, format_report
    from trainer.rundir import RunDir

    if metric is not None:
        try:
            check_metric(metric)
        except UnknownMetric as err:
            _fail(f"--metric: {err}")

    found = RunDir.all_in(runs)
    if not found:
        _fail(f"{runs}: no run folders (*/{RunDir.RECORD})")
    rows = collect_runs([r.path for r in found])
    typer.echo(format_report(rows, metric))
    if html is not None:
        from trainer.report_html import render_report_html

        html.parent.mkdir(parents=True, exist_ok=True)
        html.write_text(render_report_html(rows, metric, title=str(runs)), encoding="utf-8")
        typer.echo(str(html))


@app.command("advanced")
def advanced(
    augment: bool = typer.Option(False, "--augment", help="Train with header paraphrases, format noise, hard negatives."),
    curriculum: bool = typer.Option(False, "--curriculum", help="Train easy -> hard (base model's loss on the target)."),
    hpo_trials: int = typer.Option(None, "--hpo", min=1, help="Optuna search with pruning: number of trials."),
    ensemble: list[str] = typer.Option(None, "--ensemble", help="Member preset (1-4, demo) or YAML; repeat per member."),
    kfold: int = typer.Option(None, "--kfold", min=2, help="K-fold training with out-of-fold predictions by id."),
    hard_rounds: int = typer.Option(None, "--hard-rounds", min=1, help="N trainings; before each next one the train "
                                    "rows with the highest out-of-fold loss are up-weighted (hard_rounds.json)."),
    hard_folds: int = typer.Option(2, "--hard-folds", min=2, help="Folds over the train split for the out-of-fold loss."),
    hard_share: float = typer.Option(0.25, "--hard-share", min=0.0, max=1.0, help="Share of train rows up-weighted."),
    hard_boost: float = typer.Option(2.0, "--hard-boost", min=1.0, help="Loss weight of the up-weighted rows."),
    split_by: str = typer.Option(None, "--split-by", help="criterion or family: validation and folds hold out whole "
                                 "groups (unseen-criterion checks). Default: the config's split_by."),
    experiment: str = typer.Option("1", "--experiment", help="Base preset for --augment/--curriculum/--hpo/--kfold."),
    train_path: Path = typer.Option(..., "--train-path", help="Train CSV (id,prompt,score)."),
    base_model: str = typer.Option(..., "--base-model", help="Base model folder or HF id (offline cache)."),
    output_dir: Path = typer.Option(Path("runs"), "--output-dir", help="Where run folders go."),
    config: Path = typer.Option(None, "--config", help="YAML whose settings override the preset."),
    overrides: list[str] = typer.Option(None, "--set", help="key=value override (repeatable)."),
) -> None:
    """Augmentation, curriculum, hyper-parameter search, fitted ensembles, K-fold, hard-example rounds. One mode per call.

    The last stdout line is the folder written.
    """
    from submission.data import DataError
    from trainer import advanced as recipes
    from trainer.config import EXPERIMENTS, ConfigError, resolve_config

    modes = [augment, curriculum, hpo_trials is not None, bool(ensemble), kfold is not None, hard_rounds is not None]
    if sum(modes) != 1:
        _fail("choose exactly one of --augment, --curriculum, --hpo N, --ensemble CONFIG..., --kfold K, --hard-rounds N")
    if not train_path.is_file():
        _fail(f"--train-path {train_path}: file not found")
    paths = {"train_path": str(train_path), "base_model": base_model, "output_dir": str(output_dir),
             "split_by": split_by}
    try:
        if ensemble:
            members = []
            for i, member in enumerate(ensemble):
                if member in EXPERIMENTS:
                    members.append(resolve_config(member, config, overrides, **paths))
                else:
                    member_config = resolve_config(experiment, member, overrides, **paths)
                    members.append(member_config.model_copy(update={"run_name": f"{member_config.name}_m{i}"}))
        else:
            base = resolve_config(experiment, config, overrides, **paths)
    except ConfigError as err:
        _fail(str(err))
    if augment or curriculum:
        from trainer.evaluate import evaluate_run
        from trainer.merge import merge_run
        from trainer.train import train_run

        suffix = "augment" if augment else "curriculum"
        base = base.model_copy(update={"augment": augment, "curriculum": curriculum,
                                       "run_name": f"{base.resolved_run_name()}_{suffix}"})
        out = train_run(base)
        merge_run(out)
        evaluate_run(out)
    elif hpo_trials is not None:
        out = recipes.hpo(base, hpo_trials)
    elif kfold is not None:
        try:
            out = recipes.kfold(base, kfold)
        except DataError as err:  # fewer criteria/families than folds
            _fail(str(err))
    elif hard_rounds is not None:
        import json

        from trainer.hard_examples import REPORT_NAME, format_rounds
        from trainer.hard_examples import hard_rounds as run_hard_rounds

        try:
            out = run_hard_rounds(base, hard_rounds, hard_folds, hard_share, hard_boost)
        except DataError as err:
            _fail(str(err))
        typer.echo(format_rounds(json.loads((out / REPORT_NAME).read_text(encoding="utf-8"))))
    else:
        try:
            out = recipes.ensemble(members, output_dir / "ensemble")
        except ValueError as err:  # members on different validation splits
            _fail(str(err))
    typer.echo(str(out))
