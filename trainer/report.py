"""One table across runs: selection metric, other metrics, size, time, config deltas; the best is marked."""

from __future__ import annotations

import json
from pathlib import Path

from submission.metrics import higher_is_better


def collect_runs(runs_dir: Path) -> list[dict]:
    """Every ``runs/*/`` with a validation report, as flat rows."""
    rows = []
    for report_path in sorted(Path(runs_dir).glob("*/validation_report.json")):
        run_dir = report_path.parent
        report = json.loads(report_path.read_text(encoding="utf-8"))
        record_path = run_dir / "training_config.json"
        record = json.loads(record_path.read_text(encoding="utf-8")) if record_path.is_file() else {"config": {}}
        size = sum(p.stat().st_size for p in (run_dir / "merged").glob("*.safetensors"))
        rows.append({"run": run_dir.name, "report": report, "config": record.get("config", {}),
                     "size_mb": size / 2**20, "train_seconds": record.get("train_seconds")})
    return rows


def format_report(rows: list[dict], metric: str = "qwk") -> str:
    """Markdown table, best run by ``metric`` marked with *; config columns only where runs differ."""
    if not rows:
        return "no runs with validation_report.json found"
    sign = 1 if higher_is_better(metric) else -1
    valued = [r for r in rows if r["report"].get(metric) is not None]
    best = max(valued, key=lambda r: sign * r["report"][metric])["run"] if valued else None
    keys = sorted({k for r in rows for k in r["config"]} - {"name"})
    deltas = [k for k in keys if len({json.dumps(r["config"].get(k)) for r in rows}) > 1]
    head = ["", "run", metric, "accuracy", "macro_f1", "mae", "size MB", "train s", *deltas]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        rep = r["report"]
        cells = ["*" if r["run"] == best else "", r["run"],
                 *(f"{rep[m]:.4f}" if rep.get(m) is not None else "n/a" for m in (metric, "accuracy", "macro_f1", "mae")),
                 f"{r['size_mb']:.1f}", f"{r['train_seconds']:.0f}" if r["train_seconds"] else "n/a",
                 *(str(r["config"].get(k)) for k in deltas)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
