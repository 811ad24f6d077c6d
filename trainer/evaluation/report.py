"""Compare runs: one row per run with the selection metric, calibration (ECE), the worst criterion, size, time and
what differs in the config. ``--html`` renders the same rows as a page (trainer/evaluation/report_html.py)."""

from __future__ import annotations

import json
import unicodedata

from submission.choice.metrics import HEADLINE_METRICS as _SHOWN
from trainer.evaluation.learning_curve import curve_records
from trainer.training.rundir import RunDir

# Bidirectional controls: in a page or a terminal they reorder the text around them (U+202E shows "cba" for "abc").
_BIDI = dict.fromkeys(map(ord, "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"))


def plain_text(value) -> str:
    """``value`` as text safe to print in a terminal or a page: control characters (ESC sequences, CR, NUL, C1)
    become spaces and bidirectional controls are dropped; everything else (Cyrillic, emoji, ...) is kept."""
    text = str(value).translate(_BIDI)
    return "".join(" " if unicodedata.category(c) == "Cc" else c for c in text)


def collect_runs(run_dirs) -> list[dict]:
    """Summary dicts for run folders (runs without a validation report keep their row, metrics None)."""
    rows = []
    for run in map(RunDir, run_dirs):
        record = run.read_record()
        config, report = record["config"], run.read_report()
        rows.append({
            "run": run.name,
            "report": report,
            "report_mtime": max((p.stat().st_mtime for p in (run.merged_report_path, run.report_path) if p.is_file()),
                                default=0.0),
            "config": config,
            "metric": config.get("metric", "qwk"),
            "metrics": {k: report.get(k) for k in ("accuracy", "macro_f1", "weighted_f1", "mae", "rmse", "qwk",
                                                   "spearman", "pearson")},
            "size_mb": run.size_mb(),
            "train_s": record.get("train_seconds"),
            "curve": curve_records(run),
        })
    return rows


def config_deltas(configs: list[dict]) -> list[dict]:
    """Per run, the settings whose value is not the same across all runs (paths and names left out)."""
    skip = {"name", "run_name", "output_dir", "train_path", "base_model"}
    keys = sorted({k for c in configs for k in c} - skip)
    varying = [k for k in keys if len({json.dumps(c.get(k), sort_keys=True) for c in configs}) > 1]
    return [{k: c.get(k) for k in varying} for c in configs]


def pick_best_run(rows: list[dict], metric: str) -> int | None:
    """Index of the best run by the runtime's own rule (submission.choice.autopick.rank_order), None when none has ``metric``."""
    from submission.choice.autopick import rank_order

    if not rows:
        return None
    best = rank_order([r.get("report", {}) for r in rows], metric, [r.get("report_mtime", 0.0) for r in rows])[0]
    return best if rows[best]["metrics"].get(metric) is not None else None


def minus_one_cell(report: dict) -> str | None:
    """"precision/recall" of -1 under the run's decision on validation + not-applicable rows (``augment_not_applicable``
    runs, trainer/evaluation/evaluate.py), None for a run without them; an undefined side (no -1 said) prints as "-"."""
    scores = (report.get("not_applicable") or {}).get("decision")
    if not scores:
        return None
    return "/".join("-" if scores[k] is None else f"{scores[k]:.2f}" for k in ("precision", "recall"))


def ece_value(report: dict) -> float | None:
    """The report's top-label expected calibration error (trainer/evaluation/judge_checks.py), None for an older report."""
    return (report.get("calibration") or {}).get("ece")


def worst_criterion_cell(report: dict, width: int = 28) -> str | None:
    """"<criterion> (acc A, n N)" for the criterion with the lowest accuracy, None for a report without the block."""
    rows = report.get("per_criterion")
    if not rows:
        return None
    worst = rows[0]
    name = worst["criterion"] if len(worst["criterion"]) <= width else worst["criterion"][: width - 1] + "…"
    return f"{name} (acc {worst['accuracy']:.2f}, n {worst['n']})"


def format_report(rows: list[dict], metric: str | None = None) -> str:
    from trainer.evaluation.collapse import collapse_line

    metric = metric or (rows[0]["metric"] if rows else "qwk")
    best = pick_best_run(rows, metric)
    deltas = config_deltas([r["config"] for r in rows])

    def fmt(value, spec=".3f"):
        return "n/a" if value is None else format(value, spec)

    minus_one = [minus_one_cell(r.get("report") or {}) for r in rows]
    shown_minus_one = any(cell is not None for cell in minus_one)  # a column only when some run taught -1
    header = ["", "run", *_SHOWN, *(["-1 P/R"] if shown_minus_one else []), "ECE", "worst criterion", "size_MB",
              "train_s", "config deltas"]
    lines = [" | ".join(header), " | ".join("---" for _ in header)]
    for i, (row, delta) in enumerate(zip(rows, deltas, strict=True)):
        cells = ["*" if i == best else "", run_cell(row), *(fmt(row["metrics"].get(k)) for k in _SHOWN),
                 *([minus_one[i] or "n/a"] if shown_minus_one else []), fmt(ece_value(row.get("report") or {})),
                 worst_criterion_cell(row.get("report") or {}) or "n/a", fmt(row["size_mb"], ".1f"),
                 fmt(row["train_s"], ".0f"), ", ".join(f"{k}={v}" for k, v in delta.items())]
        lines.append(" | ".join(plain_text(c) for c in cells))  # run names, criteria and settings come from data
    lines.append(f"* best by {metric}")
    lines += [f"{row['run']}: {collapse_line(row.get('report') or {})}" for row in rows
              if collapse_line(row.get("report") or {})]
    return "\n".join(lines)


def run_cell(row: dict) -> str:
    """The run's name, marked when its validation report says it collapsed (trainer/evaluation/collapse.py)."""
    return row["run"] + (" (COLLAPSED)" if (row.get("report") or {}).get("collapsed") else "")
