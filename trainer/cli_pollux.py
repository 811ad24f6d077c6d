"""The POLLUX commands: ``import-pollux`` (POLLUX -> contest CSVs) and ``pollux-report`` (per-slice metrics).

    python -m trainer import-pollux pollux.parquet data/pollux --split 0.2
    python -m trainer pollux-report data/pollux/valid.csv predictions.csv

Registered on the app by trainer/cli.py (README "Validating on POLLUX").
"""

from __future__ import annotations

from pathlib import Path

import typer

from trainer.cli_options import (  # noqa: F401
    TrainingOptions,
    UserError,
    _checked,
    _device_option,
    _engine_option,
    _require_run,
    _training_options,
    _unsloth_calls,
)


def import_pollux(
    source: str = typer.Argument(..., help="POLLUX as a parquet or JSONL file, a folder of them, or a hub id "
                                 "(ai-forever/POLLUX, where the network allows)."),
    out_dir: Path = typer.Argument(..., help="Folder for pollux.csv (or train.csv + val.csv with --split)."),
    split: float = typer.Option(None, "--split", min=0.0, max=0.9, help="Share of instructions held out to val.csv "
                                "(all criteria of an answer on one side)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the --split."),
    hub_split: str = typer.Option("test", "--hub-split", help="Dataset split to read from the hub."),
    keep_0_4: bool = typer.Option(False, "--keep-0-4", help="Keep POLLUX's 0-4 criteria (scores 0..4) for a judge "
                                  "trained on POLLUX's own range: adds a max_score column; a model trained on it "
                                  "declares max_score 4 (judge.json) and scores -1..4, 4 only where the rubric "
                                  "states it. Not for the contest (-1..3)."),
    no_na_line: bool = typer.Option(False, "--no-not-applicable-line", help="Scales without the '-1: критерий "
                                    "неприменим' line; the rows whose consensus is -1 are then dropped."),
) -> None:
    """Convert POLLUX to contest CSVs (id,prompt,score + task_type, domain, criteria_name, difficulty, model_id,
    human_mean); dropped rows are counted per reason on stderr (trainer/data/pollux.py)."""
    from trainer.data.pollux import PolluxError, drop_summary
    from trainer.data.pollux import import_pollux as run_import

    try:
        result, paths = run_import(source, out_dir, split, seed, hub_split, not_applicable_line=not no_na_line,
                                   keep_0_4=keep_0_4)
    except PolluxError as err:
        raise UserError(str(err)) from err
    for line in drop_summary(result):
        typer.echo(line, err=True)
    for path in paths:
        typer.echo(str(path))


def pollux_report(
    data: Path = typer.Argument(..., help="An import-pollux CSV (id, score, human_mean, task_type, criteria_name)."),
    predictions: Path = typer.Argument(..., help="id,score (the runtime's output) or id,p_-1..p_3 (argmax)."),
    out: Path = typer.Option(None, "--out", help="Also write the block as JSON."),
) -> None:
    """POLLUX's metrics per slice: Spearman and MAE vs the annotators' mean, accuracy and QWK vs the score."""
    import json

    import pandas as pd

    from trainer.evaluation.pollux_metrics import format_pollux_table, pollux_metrics, read_predicted_scores

    if not data.is_file() or not predictions.is_file():
        raise UserError(f"{data if not data.is_file() else predictions}: file not found")
    frame = pd.read_csv(data, dtype={"id": str}, encoding="utf-8-sig")
    block = pollux_metrics(frame, read_predicted_scores(predictions, frame["id"]))
    typer.echo(format_pollux_table(block))
    if out is not None:
        out.write_text(json.dumps(block, indent=2, ensure_ascii=False), encoding="utf-8")
        typer.echo(str(out))
