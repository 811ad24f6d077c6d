"""Metric names and directions (standard library only): what ranks models in the runtime, bundler and reports.

The numbers themselves are computed at evaluation time by :mod:`trainer.evaluation.metrics` (scipy/scikit-learn) and stored in
``validation_report.json``; the runtime only reads them, so it needs neither library.
"""

from __future__ import annotations

import math
import numbers

METRIC_NAMES: tuple[str, ...] = (
    "accuracy", "macro_f1", "weighted_f1", "mae", "rmse", "spearman", "pearson", "qwk",
)
# The headline metrics, in the order every table shows them (reports, format_table, per-family rows, argmax block).
HEADLINE_METRICS: tuple[str, ...] = ("accuracy", "macro_f1", "mae", "qwk")
_LOWER_IS_BETTER = {"mae", "rmse"}


class UnknownMetric(KeyError):
    """A metric name that is not one of METRIC_NAMES; ``str()`` is one line naming the valid ones."""

    def __str__(self) -> str:
        return str(self.args[0])


def check_metric(name: str) -> str:
    """``name`` if it is a metric we report, else UnknownMetric with one line naming the valid ones."""
    if name not in METRIC_NAMES:
        raise UnknownMetric(f"unknown metric {name!r}; choose one of {', '.join(METRIC_NAMES)}")
    return name


def higher_is_better(name: str) -> bool:
    """False for error metrics (mae, rmse), True for the rest; UnknownMetric for a name we do not report."""
    return check_metric(name) not in _LOWER_IS_BETTER


def metric_value(report: dict, name: str) -> float | None:
    """One scalar metric from a report (None when undefined: null or NaN); raises KeyError naming the valid metrics
    and ValueError when the value is not a number (text, a boolean, a list)."""
    check_metric(name)
    if name not in report:
        raise KeyError(f"report has no {name!r}; it has {', '.join(k for k in METRIC_NAMES if k in report)}")
    value = report[name]
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} is {value!r:.40}, not a number")
    return None if math.isnan(value) else float(value)
