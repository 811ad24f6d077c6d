"""What a run leaves behind: the meta file's content (the one place a RunMeta is built) and the atomic writes of the
predictions and the meta (README "Meta file")."""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from pathlib import Path

import numpy as np

from submission.data import write_predictions, write_text_atomic
from submission.engines.protocol import ScoringEngine
from submission.runtime.run_meta import ModelMeta, RunMeta, Timings, meta_path_for
from submission.scoring.decoding import LABELS, Decision
from submission.scoring.priors import ClassPrior
from submission.scoring.scorer import ContestRows, Deadline


def describe_run(run, rows: ContestRows, plan, scoring, decision: Decision, scores: list[int], fallback: np.ndarray,
                 prior: ClassPrior, deadline: Deadline, started: float) -> RunMeta:
    """The meta file's content: the one place a :class:`RunMeta` is built (also when a signal came before any
    model loaded: no models, engine ``none``). ``run``, ``plan`` and ``scoring`` are runtime.py's RunSettings,
    ModelPlan (or None) and Scoring."""
    opened = scoring.opened
    primary = opened[0] if opened else None
    processed = np.zeros(len(rows), dtype=bool)
    non_finite = np.zeros(len(rows), dtype=bool)
    if primary is not None:
        processed[sorted(primary.processed)] = True
    for model in opened:
        non_finite[sorted(model.non_finite)] = True
    empty = rows.empty
    tokens = sum(m.tokens_scored for m in opened)
    engine_seconds = sum(m.seconds for m in opened)
    cut_short = fallback & ~processed & ~empty & ~non_finite
    if primary is None:
        engine, engine_reason, engine_fallback, start_failures, device = (
            "none", f"{deadline.interrupted} before any model loaded", None, [], run.device or "auto")
    else:
        engine, engine_reason = primary.engine.name, primary.engine_reason
        engine_fallback, start_failures = primary.engine_fallback, primary.engine.start_failures
        device = primary.engine.device
    return RunMeta(
        rows=len(rows), choice_reason=plan.reason if plan else f"{deadline.interrupted} before the models were planned",
        skipped_models=scoring.skipped, metric=run.metric,
        time_limit_s=run.time_limit_s, ensemble=scoring.ensemble,
        ensemble_decision=scoring.ensemble.why if scoring.ensemble else None,
        models=[ModelMeta(str(m.candidate.path), m.weight, run.metric, m.candidate.value, m.candidate.mode,
                          m.engine.name, m.engine_fallback, m.vllm_rows) for m in opened],
        model_dirs=[str(m.candidate.path) for m in opened],
        strategy=scoring.strategy, engine=engine, engine_reason=engine_reason,
        engine_fallback=engine_fallback, vllm_start_failures=start_failures,
        device=device, dtype=primary.engine.dtype if primary else "none",
        engine_settings=_engine_settings(primary.engine) if primary else {}, decision=decision.to_dict(),
        tokens=int(tokens),
        timings_s=Timings(load=round(sum(m.load_s for m in opened), 3), engine=round(engine_seconds, 3),
                          total=round(time.perf_counter() - started, 3), since_start=round(deadline.elapsed(), 3)),
        tokens_per_s=round(tokens / max(engine_seconds, 1e-9), 1),
        score_distribution={str(k): v for k, v in sorted(Counter(scores).items())},
        truncated_rows=primary.rendered.truncated if primary else 0,
        unparsed_rows=sum(not s.parsed for s in rows.sections),
        fallback_rows=int(fallback.sum()),
        fallback_reasons={
            "empty_prompt": int(empty.sum()),
            deadline.interrupted.lower() if deadline.interrupted else "deadline": int(cut_short.sum()),
            "no_score_in_text": int((fallback & processed & ~empty & ~non_finite).sum()),
            "non_finite": int((fallback & non_finite & ~empty).sum()),
        },
        fallback_prior=prior.source, interrupted=deadline.interrupted,
        oom_splits=sum(m.engine.oom_splits for m in opened),
        tokens_computed=int(sum(m.tokens_computed for m in opened)), prefix_sharing=run.prefix_sharing,
        labels=None if rows.labels == LABELS else list(rows.labels),
    )


def _engine_settings(engine: ScoringEngine) -> dict:
    """The start-up settings worth reporting (vLLM's; the model path is in ``models``)."""
    started = getattr(engine, "settings", None) or {}
    return {k: v for k, v in started.items() if k != "model"}


def write_outputs(result, pred_path: str | os.PathLike) -> Path:
    """Predictions, then the meta file, each atomically (:func:`submission.data.write_text_atomic`); returns the meta
    path (``result``: runtime.py's RunResult). :class:`submission.data.OutputError` (one line) when either cannot be written."""
    write_predictions(pred_path, result.ids, result.scores)
    meta_path = meta_path_for(pred_path)
    text = json.dumps(_finite_json(result.meta), ensure_ascii=False, indent=2, default=str, allow_nan=False)
    write_text_atomic(meta_path, text)
    return meta_path


def _finite_json(value):
    """The meta with NaN/inf floats as null: the file stays strict JSON (``--time-limit inf`` from the API)."""
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_json(v) for v in value]
    return value
