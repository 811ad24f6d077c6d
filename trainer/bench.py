"""``python -m trainer bench`` and ``trainer.bench.SHAPES``: the speed benchmarks live in bench/speed.py, beside the
quality benchmarks; this module keeps the import path they had."""

from bench.speed import (  # noqa: F401 - re-exported
    SHAPES,
    SUITES,
    TRAIN_ROWS_PER_STEP,
    Environment,
    MicroBatching,
    Result,
    Workload,
    build_random_model,
    format_results,
    make_workload,
    measure_bf16_peak_tflops,
    run_benchmarks,
    run_e2e,
    scoring_methods,
    train_step,
    training_methods,
    training_token_budget,
    write_report,
)
