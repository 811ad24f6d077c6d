"""Evaluation: scoring a run with the runtime's code, metrics, judge checks, reports and plots."""
