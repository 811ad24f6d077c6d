"""Speed benchmarks (``python -m trainer bench``): scoring, training and end-to-end speed against baselines measured
in the same run (the code: ``speed.py``; its token workloads: ``workloads.py``). The quality benchmarks are scripts in
the checkout's bench/ folder."""

from trainer.bench.speed import (
    SHAPES,
    SUITES,
    TRAIN_ROWS_PER_STEP,
    Environment,
    MicroBatching,
    Result,
    build_random_model,
    format_results,
    in_memory_engine,
    measure_bf16_peak_tflops,
    pollux_scoring,
    run_benchmarks,
    run_e2e,
    runtime_command,
    scoring_methods,
    train_step,
    training_methods,
    training_token_budget,
    write_report,
)
from trainer.bench.workloads import (
    POLLUX_GRID,
    Workload,
    make_pollux_workload,
    make_workload,
    parse_pollux_grid,
)

__all__ = [
    "POLLUX_GRID", "SHAPES", "SUITES", "TRAIN_ROWS_PER_STEP", "Environment", "MicroBatching", "Result", "Workload",
    "build_random_model", "format_results", "in_memory_engine", "make_pollux_workload", "make_workload",
    "measure_bf16_peak_tflops", "parse_pollux_grid", "pollux_scoring", "run_benchmarks", "run_e2e",
    "runtime_command", "scoring_methods", "train_step", "training_methods", "training_token_budget", "write_report",
]
