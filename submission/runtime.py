"""Test CSV -> validated predictions CSV: render, score, decide, validate, write atomically, describe.

This is the orchestration behind ``run_optimized.py``; the pieces it calls (renderer, engines, scorer) live in
their own modules. Row-level trouble (an unparseable or empty prompt) is scored by fallback and counted in the meta
file; file-level trouble raises :class:`submission.data.DataError`.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from submission.data import validate_predictions, write_predictions
from submission.scoring import Decision, decide, probabilities_from_label_logits

log = logging.getLogger(__name__)

MODEL_DIR_ENV = "AIJ_MODEL_DIR"
REPORT_NAME = "validation_report.json"


@dataclass
class RunSettings:
    """What one prediction run does; every field has a default that works."""

    model_dir: Path | None = None
    engine: str = "hf"
    device: str | None = None
    max_tokens: int = 4096
    token_budget: int | None = None


@dataclass
class RunResult:
    """Scores plus everything the meta file reports."""

    ids: list[str]
    scores: list[int]
    probabilities: np.ndarray
    meta: dict = field(default_factory=dict)


def find_model_dir(explicit: str | os.PathLike | None = None, roots: tuple[Path, ...] = ()) -> Path:
    """``explicit``, else $AIJ_MODEL_DIR, else the first ``models/*`` or ``runs/*/merged`` with weights."""
    chosen = explicit or os.environ.get(MODEL_DIR_ENV)
    if chosen:
        path = Path(chosen)
        if not path.is_dir():
            raise FileNotFoundError(f"model dir {path} does not exist")
        return path
    here = Path(__file__).resolve().parent.parent
    for root in roots or (here / "models", Path("models"), Path("runs")):
        candidates = sorted(root.glob("*/config.json")) + sorted(root.glob("*/merged/config.json"))
        if candidates:
            return candidates[0].parent
    raise FileNotFoundError(f"no model found: pass --model-dir or set {MODEL_DIR_ENV}")


def load_decision(model_dir: Path) -> Decision:
    """The decision rule stored in the model's validation report (argmax when there is none)."""
    report = model_dir / REPORT_NAME
    if not report.is_file():
        return Decision()
    return Decision.from_dict(json.loads(report.read_text(encoding="utf-8")).get("decision"))


def predict(frame, settings: RunSettings) -> RunResult:
    """Scores for a test frame (``id``, ``prompt``) with one model."""
    from submission.engine_hf import TransformersEngine
    from submission.prompting import PromptRenderer

    started = time.perf_counter()
    model_dir = find_model_dir(settings.model_dir)
    engine = TransformersEngine(model_dir, device=settings.device, token_budget=settings.token_budget)
    loaded = time.perf_counter()
    renderer = PromptRenderer(engine.tokenizer, max_tokens=settings.max_tokens)
    rendered = renderer.render_many(frame["prompt"].tolist())
    allowed = [r.sections.allowed for r in rendered]
    label_logits = engine.label_logits([r.input_ids for r in rendered])
    probs = probabilities_from_label_logits(label_logits, allowed)
    decision = load_decision(model_dir)
    scores = decide(probs, allowed, decision)
    ids = frame["id"].tolist()
    validate_predictions(ids, scores, allowed)
    finished = time.perf_counter()
    tokens = sum(len(r.input_ids) for r in rendered)
    meta = {
        "model_dirs": [str(model_dir)],
        "engine": engine.name,
        "device": engine.device,
        "decision": decision.to_dict(),
        "rows": len(ids),
        "tokens": tokens,
        "timings_s": {"load": round(loaded - started, 3), "score": round(finished - loaded, 3)},
        "tokens_per_s": round(tokens / max(finished - loaded, 1e-9), 1),
        "score_distribution": {str(k): v for k, v in sorted(Counter(scores).items())},
        "truncated_rows": sum(r.truncated for r in rendered),
        "unparsed_rows": sum(not r.sections.parsed for r in rendered),
        "oom_splits": engine.oom_splits,
    }
    return RunResult(ids, scores, probs, meta)


def meta_path_for(pred_path: str | os.PathLike) -> Path:
    """``predictions.csv`` -> ``predictions_meta.json`` beside it."""
    pred_path = Path(pred_path)
    return pred_path.with_name(f"{pred_path.stem}_meta.json")


def write_outputs(result: RunResult, pred_path: str | os.PathLike) -> Path:
    """Predictions (atomically) and the meta file; returns the meta path."""
    write_predictions(pred_path, result.ids, result.scores)
    meta_path = meta_path_for(pred_path)
    meta_path.write_text(json.dumps(result.meta, ensure_ascii=False, indent=2), encoding="utf-8")
    return meta_path
