"""One static page to read a set of runs: ``python -m trainer report RUNS --html OUT.html``.

    python -m trainer report runs --html runs/report.html     # then open it in any browser, offline

Self-contained: the plots are PNGs (matplotlib, Agg) embedded as base64, the style is inline, there is no script
and no external link, so the file can be mailed or attached to CI. Content: the run table of the terminal report
(best marked), then for the best run its headline metrics, confusion matrix, reliability diagram and score
distribution, the prompt tokens its evaluation computed of those submitted, its learning curve (when recorded), a red line for every run whose judge collapsed, the per-family, per-criterion (worst first), answer-length and reference tables and the most
confident errors (all from its ``validation_report.json``; trainer/evaluation/judge_checks.py computes the blocks).
"""

from __future__ import annotations

import base64
import html
import io
import time

from submission.choice.metrics import HEADLINE_METRICS
from trainer.evaluation.collapse import collapse_line
from trainer.evaluation.learning_curve import plot_learning_curve
from trainer.evaluation.report import (
    config_deltas,
    ece_value,
    minus_one_cell,
    pick_best_run,
    plain_text,
    run_cell,
    worst_criterion_cell,
)

# The page may load nothing: a reference to anything but an embedded image is blocked (and logged as a console error,
# which tests/trainer/evaluation/test_report_html.py checks for in a real browser).
CONTENT_SECURITY_POLICY = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
_STYLE = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 24px auto; max-width: 1180px;
       padding: 0 16px; color: #1d2430; background: #fff; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 18px; margin: 28px 0 8px; border-bottom: 1px solid #dde2ea; }
h3 { font-size: 15px; margin: 20px 0 6px; }
.meta, .note { color: #5b6575; } .note { font-size: 13px; }
.collapsed { color: #9b1c1c; background: #fdecec; padding: 6px 10px; border-left: 4px solid #9b1c1c; }
table { border-collapse: collapse; margin: 6px 0 12px; font-size: 13px; }
th, td { border: 1px solid #dde2ea; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f2f5f9; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.best td { background: #eef7ee; font-weight: 600; }
.plots { display: flex; flex-wrap: wrap; gap: 16px; } figure { margin: 0; }
figcaption { font-size: 12px; color: #5b6575; text-align: center; } img { border: 1px solid #dde2ea; }
td.id { white-space: nowrap; }
.headline span { display: inline-block; margin-right: 18px; } .headline b { font-variant-numeric: tabular-nums; }
"""


def _escape(text) -> str:
    """HTML-escaped, with control and bidirectional characters taken out first (:func:`trainer.evaluation.report.plain_text`):
    a criterion or an answer excerpt from the data cannot reorder or hide what the page shows."""
    return html.escape(plain_text(text))


def usage_line(usage: dict) -> str:
    """The report's ``scoring`` block in one line (trainer/evaluation/evaluate.py:scoring_usage)."""
    return (f"prompt tokens: {usage['tokens_computed']:,} computed of {usage['tokens_submitted']:,} submitted "
            f"({usage['engine']}, prefix sharing {'on' if usage['prefix_sharing'] else 'off'})")


def _fmt(value, spec: str = ".3f") -> str:
    return "n/a" if value is None else format(value, spec)


def _table(header: list[str], rows: list[list], numeric: set[int] = frozenset(), classes: list[str] | None = None,
           nowrap: set[int] = frozenset()) -> str:
    """An HTML table; every cell is escaped; columns in ``numeric`` are right-aligned, in ``nowrap`` unbroken."""
    head = "".join(f"<th>{_escape(h)}</th>" for h in header)

    def cell_class(i: int) -> str:
        return " class=num" if i in numeric else " class=id" if i in nowrap else ""

    body = []
    for r, row in enumerate(rows):
        cls = f' class="{classes[r]}"' if classes and classes[r] else ""
        cells = "".join(f"<td{cell_class(i)}>{_escape(str(c))}</td>" for i, c in enumerate(row))
        body.append(f"<tr{cls}>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _png(plot, report: dict, alt: str, caption: str) -> str:
    """``plot(report, buffer)`` rendered into an embedded <img> with a caption."""
    buffer = io.BytesIO()
    plot(report, buffer)
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return (f'<figure><img alt="{_escape(alt)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{_escape(caption)}</figcaption></figure>")


def _run_table(rows: list[dict], metric: str, best: int | None) -> str:
    keys = (*HEADLINE_METRICS, "spearman")
    deltas = config_deltas([r["config"] for r in rows])
    minus_one = [minus_one_cell(r.get("report") or {}) for r in rows]
    shown_minus_one = any(cell is not None for cell in minus_one)
    header = ["", "run", *keys, *(["-1 P/R"] if shown_minus_one else []), "ECE", "worst criterion", "size MB",
              "train s", "config deltas"]
    body = []
    for i, (row, delta) in enumerate(zip(rows, deltas, strict=True)):
        report = row.get("report") or {}
        body.append(["★" if i == best else "", run_cell(row), *(_fmt(row["metrics"].get(k)) for k in keys),
                     *([minus_one[i] or "n/a"] if shown_minus_one else []), _fmt(ece_value(report)),
                     worst_criterion_cell(report, width=60) or "n/a", _fmt(row["size_mb"], ".1f"),
                     _fmt(row["train_s"], ".0f"), ", ".join(f"{k}={v}" for k, v in delta.items())])
    numeric = set(range(2, 2 + len(keys) + 1 + shown_minus_one)) | {len(header) - 3, len(header) - 2}
    classes = ["best" if i == best else "" for i in range(len(rows))]
    return _table(header, body, numeric, classes) + f'<p class="note">★ best by {_escape(metric)} (the runtime\'s rule)</p>'


def _group_rows(groups: list[tuple[str, dict | None]]) -> list[list]:
    return [[name, g["n"], _fmt(g["accuracy"]), _fmt(g["qwk"]), _fmt(g["mean_gold"], ".2f"),
             _fmt(g["mean_predicted"], ".2f"), _fmt(g["mean_error"], "+.2f")] for name, g in groups if g]


_GROUP_HEADER = ["rows", "n", "accuracy", "QWK", "mean gold", "mean predicted", "mean error (pred - gold)"]


def _best_run_sections(row: dict) -> str:
    from trainer.evaluation.judge_checks import plot_reliability_diagram, plot_score_distribution
    from trainer.evaluation.metrics import plot_confusion_matrix

    report = row["report"]
    out = [f"<h2>Best run: {_escape(row['run'])}</h2>"]
    collapsed = collapse_line(report)
    if collapsed:
        out.append(f'<p class="collapsed"><b>{_escape(collapsed)}</b></p>')
    decision = report.get("decision") or {"rule": "argmax"}
    headline = [("rows", report.get("n"), "d"), ("accuracy", report.get("accuracy"), ".3f"),
                ("macro F1", report.get("macro_f1"), ".3f"), ("MAE", report.get("mae"), ".3f"),
                ("QWK", report.get("qwk"), ".3f"), ("Spearman", report.get("spearman"), ".3f"),
                ("ECE", ece_value(report), ".3f")]
    out.append('<p class="headline">' + "".join(f"<span>{_escape(name)} <b>{_fmt(value, spec)}</b></span>"
                                                for name, value, spec in headline)
               + f'<span>decision <b>{_escape(str(decision.get("rule")))}</b></span></p>')
    usage = report.get("scoring")
    if usage:  # what evaluating cost: rows sharing a prefix (one answer, several criteria) compute it once
        out.append(f'<p class="meta">{_escape(usage_line(usage))}</p>')
    plots = []
    if report.get("confusion_matrix"):
        plots.append(_png(plot_confusion_matrix, report, "confusion matrix", "confusion matrix (rows: gold)"))
    if report.get("calibration"):
        plots.append(_png(plot_reliability_diagram, report, "reliability diagram",
                          "reliability diagram: accuracy per confidence bin"))
    if report.get("score_distribution"):
        plots.append(_png(plot_score_distribution, report, "score distribution", "gold vs predicted scores"))
    if row.get("curve"):
        plots.append(_png(lambda points, out: plot_learning_curve(points, out, row["run"]), row["curve"],
                          "learning curve", "learning curve: train loss, train/validation accuracy, validation QWK"))
    out.append(f'<div class="plots">{"".join(plots)}</div>')
    if not report.get("calibration"):
        out.append('<p class="note">This report predates the calibration and bias checks: run <code>python -m '
                   f'trainer evaluate {_escape(row["run"])}</code> again to add them.</p>')
    families = report.get("per_family") or {}
    if families:
        out.append("<h3>Per task family</h3>")
        out.append(_table(["family", "n", "accuracy", "macro F1", "MAE", "QWK"],
                          [[f, r["n"], _fmt(r["accuracy"]), _fmt(r["macro_f1"]), _fmt(r["mae"]), _fmt(r["qwk"])]
                           for f, r in families.items()], {1, 2, 3, 4, 5}))
    criteria = report.get("per_criterion") or []
    if criteria:
        out.append("<h3>Per criterion (worst first)</h3>")
        out.append(_table(["criterion", "n", "accuracy", "QWK", "Spearman"],
                          [[r["criterion"], r["n"], _fmt(r["accuracy"]), _fmt(r["qwk"]), _fmt(r["spearman"])]
                           for r in criteria], {1, 2, 3, 4}))
    if report.get("pollux"):  # an import-pollux CSV: POLLUX's own metrics per slice
        from trainer.evaluation.pollux_metrics import table_rows

        out.append("<h3>POLLUX metrics per slice</h3>")
        out.append(_table(*table_rows(report["pollux"]), {1, 2, 3, 4, 5}))
        out.append("".join(f'<p class="note">{html.escape(note)}</p>' for note in report["pollux"]["notes"]))
    length = report.get("by_answer_length")
    if length:
        out.append("<h3>Answer length (longer answer wins?)</h3>")
        groups = [(f"Q{g['quartile']}: {g['min_chars']}-{g['max_chars']} chars", g) for g in length["groups"]]
        out.append(_table(_GROUP_HEADER, _group_rows(groups), {1, 2, 3, 4, 5, 6}))
        out.append(f'<p class="note">mean error, longest quarter minus shortest: '
                   f'{_fmt(length["mean_error_gap"], "+.2f")} (above 0: longer answers get higher scores than gold)</p>')
    reference = report.get("by_reference")
    if reference:
        out.append("<h3>Reference answer present vs absent</h3>")
        out.append(_table(_GROUP_HEADER, _group_rows([("with reference", reference["present"]),
                                                      ("without reference", reference["absent"])]),
                          {1, 2, 3, 4, 5, 6}))
        out.append(f'<p class="note">accuracy with minus without: {_fmt(reference["accuracy_gap"], "+.3f")}</p>')
    distribution = report.get("score_distribution")
    if distribution:
        labels = [str(label) for label in distribution["labels"]]
        out.append("<h3>Score distribution (mid-scale bias?)</h3>")
        out.append(_table(["", *labels], [["gold", *(distribution["gold"][k] for k in labels)],
                                          ["predicted", *(distribution["predicted"][k] for k in labels)]],
                          set(range(1, len(labels) + 1))))
        out.append(f'<p class="note">predicted share of 1-2 minus gold share: '
                   f'{_fmt(distribution["mid_scale_excess"], "+.3f")}</p>')
    errors = report.get("confident_errors")
    if errors is not None:
        out.append(f"<h3>The {len(errors)} most confident errors</h3>")
        out.append(_table(["id", "gold", "predicted", "P(predicted)", "P(gold)", "criterion", "answer excerpt"],
                          [[e["id"], e["gold"], e["predicted"], _fmt(e["p"]), _fmt(e["p_gold"]), e["criterion"],
                            e["answer"]] for e in errors], {1, 2, 3, 4}, nowrap={0}))
    return "\n".join(out)


def render_report_html(rows: list[dict], metric: str | None = None, title: str = "runs") -> str:
    """The whole page for ``collect_runs`` rows (trainer/evaluation/report.py), best run by ``metric`` (default: the first
    run's configured metric); nothing outside the returned text is referenced."""
    metric = metric or (rows[0]["metric"] if rows else "qwk")
    best = pick_best_run(rows, metric)
    parts = [
        "<!doctype html>", '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{CONTENT_SECURITY_POLICY}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        '<link rel="icon" href="data:,">',  # no favicon request
        f"<title>aij-judge report: {_escape(title)}</title><style>{_STYLE}</style></head><body>",
        "<h1>aij-judge report</h1>",
        f'<p class="meta">{_escape(title)} · {len(rows)} run(s) · generated {time.strftime("%Y-%m-%d %H:%M")}'
        f"{' · best: ' + _escape(rows[best]['run']) if best is not None else ''}</p>",
        "<h2>Runs</h2>", _run_table(rows, metric, best),
        *(f'<p class="collapsed">{_escape(row["run"])}: {_escape(collapse_line(row["report"]))}</p>'
          for row in rows if collapse_line(row.get("report") or {})),
    ]
    if best is None:
        parts.append(f'<p class="note">No run has a validation report with {_escape(metric)}: run '
                     "<code>python -m trainer evaluate RUN</code> first.</p>")
    else:
        parts.append(_best_run_sections(rows[best]))
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
