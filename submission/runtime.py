"""Test CSV -> validated predictions CSV: pick model(s), pick an engine, score in chunks against a deadline, write.

This is the orchestration behind ``run_optimized.py``; the pieces it calls (model ranking, renderer, engines, scorer,
priors) live in their own modules. Row-level trouble (an empty or unparseable prompt, no time left, a generative
judge that wrote no score) is scored by a prior and counted in the meta file; file-level trouble raises
:class:`submission.data.DataError` or FileNotFoundError. SIGTERM stops scoring and still writes a complete file.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from submission import settings as defaults
from submission.autopick import (
    Candidate,
    Ensemble,
    candidate_model_dirs,
    find_ensemble,
    pick_reason,
    rank_candidates,
    read_report,
)
from submission.data import validate_predictions, write_predictions
from submission.priors import ClassPrior
from submission.scoring import LABELS, Decision, decide, extract_score_from_text, probabilities_from_label_logits

log = logging.getLogger(__name__)

MODEL_DIR_ENV = "AIJ_MODEL_DIR"
REPORT_NAME = "validation_report.json"
# Test hook: seconds to sleep before each chunk, so a subprocess test can deliver SIGTERM mid-run.
CHUNK_SLEEP_ENV = "AIJ_TEST_CHUNK_SLEEP_S"
BUNDLE_ROOT = Path(__file__).resolve().parent.parent


@dataclass
class RunSettings:
    """What one prediction run does; every field has a default that works."""

    model_dir: Path | None = None  # explicit single model (also $AIJ_MODEL_DIR): no ranking, no ensemble
    models: Path | None = None  # where to look for model folders / ensemble.json
    engine: str = "auto"
    device: str | None = None
    max_tokens: int = defaults.MAX_PROMPT_TOKENS
    token_budget: int | None = None
    time_limit_s: float = defaults.DEFAULT_TIME_LIMIT_S
    metric: str = defaults.DEFAULT_METRIC
    ensemble: bool = True
    enforce_eager: bool = False
    chunk_tokens: int | None = None


@dataclass
class RunResult:
    """Scores plus everything the meta file reports."""

    ids: list[str]
    scores: list[int]
    probabilities: np.ndarray
    meta: dict = field(default_factory=dict)


class Interrupted(BaseException):
    """Raised from the SIGTERM handler; BaseException so engine code that catches Exception lets it through."""


class Deadline:
    """Wall-clock budget from the run's start; keeps a margin for writing the files."""

    def __init__(self, limit_s: float, clock: Callable[[], float] = time.monotonic, started: float | None = None):
        self.clock = clock
        self.started = clock() if started is None else started
        self.limit_s = float(limit_s)
        self.margin_s = min(defaults.WRITE_MARGIN_S, 0.1 * self.limit_s)
        self.interrupted: str | None = None

    def elapsed(self) -> float:
        return self.clock() - self.started

    def remaining(self) -> float:
        """Seconds left for scoring (the write margin already taken off)."""
        return self.limit_s - self.margin_s - self.elapsed()

    def allows(self, seconds: float) -> bool:
        return self.interrupted is None and self.remaining() >= seconds


# -- model choice ------------------------------------------------------------------------------------------------
def default_roots() -> list[Path]:
    """The bundle's models/, then ./models, then runs/*/merged (here and in the bundle)."""
    roots = [BUNDLE_ROOT / "models", Path("models"), Path("runs"), BUNDLE_ROOT / "runs"]
    unique: list[Path] = []
    for root in roots:
        if root.resolve() not in [r.resolve() for r in unique]:
            unique.append(root)
    return unique


def find_model_dir(explicit: str | os.PathLike | None = None, roots: tuple[Path, ...] = ()) -> Path:
    """``explicit``, else $AIJ_MODEL_DIR, else the best-ranked model folder under the default roots."""
    chosen = explicit or os.environ.get(MODEL_DIR_ENV)
    if chosen:
        path = Path(chosen)
        if not path.is_dir():
            raise FileNotFoundError(f"model dir {path} does not exist")
        return path
    found = candidate_model_dirs(list(roots) or default_roots())
    if not found:
        raise FileNotFoundError(f"no model found: pass --models DIR, --model-dir DIR or set {MODEL_DIR_ENV}")
    return rank_candidates(found, defaults.DEFAULT_METRIC)[0].path


@dataclass
class ModelPlan:
    """Candidates best first, the ensemble to try (if any), and why."""

    ranked: list[Candidate]
    ensemble: Ensemble | None
    reason: str


def plan_models(run: RunSettings) -> ModelPlan:
    """Which model folders to try, in order, and the ensemble (ensemble.json) when one applies."""
    explicit = run.model_dir or os.environ.get(MODEL_DIR_ENV)
    if explicit:
        path = Path(explicit)
        if not path.is_dir():
            raise FileNotFoundError(f"model dir {path} does not exist")
        return ModelPlan([Candidate(path, read_report(path))], None, "explicit --model-dir / $" + MODEL_DIR_ENV)
    roots = [Path(run.models)] if run.models else default_roots()
    if run.models and not Path(run.models).exists():
        raise FileNotFoundError(f"--models {run.models} does not exist")
    ensemble = find_ensemble(roots) if run.ensemble else None
    if ensemble:
        members = rank_candidates([m.path for m in ensemble.members], run.metric)
        reason = f"ensemble {ensemble.path} ({len(members)} members); single-model fallback: " + pick_reason(members, run.metric)
        return ModelPlan(members, ensemble, reason)
    found = candidate_model_dirs(roots)
    if not found:
        where = ", ".join(str(r) for r in roots)
        raise FileNotFoundError(f"no model folder (config.json + *.safetensors) under {where}; pass --models DIR")
    ranked = rank_candidates(found, run.metric)
    return ModelPlan(ranked, None, pick_reason(ranked, run.metric))


def load_decision(model_dir: Path) -> Decision:
    """The decision rule stored in the model's validation report (argmax when there is none)."""
    return Decision.from_dict(read_report(Path(model_dir)).get("decision"))


# -- engines -----------------------------------------------------------------------------------------------------
def choose_engine(requested: str, device: str, tokens: int, vllm_installed: bool) -> tuple[str, str]:
    """``hf`` or ``vllm`` and why: by estimated total time (start-up + tokens / throughput), see settings.py."""
    if requested == "hf":
        return "hf", "requested"
    if requested == "vllm":
        return "vllm", "requested"
    if not device.startswith("cuda"):
        return "hf", f"device {device}: vLLM needs a GPU"
    if not vllm_installed:
        return "hf", "vLLM not installed"
    estimates = {name: defaults.ENGINE_ESTIMATES[f"{name}/cuda"].seconds(tokens) for name in ("hf", "vllm")}
    best = min(estimates, key=estimates.get)
    return best, f"estimated {', '.join(f'{k} {v:.0f}s' for k, v in estimates.items())} for {tokens} tokens"


@dataclass
class OpenModel:
    """A loaded model ready to score: its candidate entry, renderer output and engine."""

    candidate: Candidate
    engine: object
    rendered: list
    engine_reason: str
    engine_fallback: str | None = None
    load_s: float = 0.0
    processed: set = field(default_factory=set)


def _build_hf(path: Path, run: RunSettings, tokenizer, device: str):
    from submission.engine_hf import TransformersEngine

    return TransformersEngine(path, device=device, token_budget=run.token_budget, tokenizer=tokenizer)


def open_model(candidate: Candidate, prompts: list[str], run: RunSettings, tokens_factor: int = 1) -> OpenModel:
    """Tokenizer -> rendered prompts -> engine chosen by estimated time; vLLM failures fall back to transformers."""
    from submission import engine_vllm
    from submission.engine_hf import load_tokenizer, resolve_device
    from submission.prompting import PromptRenderer

    started = time.perf_counter()
    tokenizer = load_tokenizer(candidate.path)
    renderer = PromptRenderer(tokenizer, max_tokens=run.max_tokens)
    rendered = [renderer.render(p if isinstance(p, str) else "") for p in prompts]
    tokens = sum(len(r.input_ids) for r in rendered) * tokens_factor
    device = resolve_device(run.device)
    name, reason = choose_engine(run.engine, device, tokens, engine_vllm.vllm_available())
    fallback = None
    engine = None
    if name == "vllm":
        try:
            engine = engine_vllm.VllmEngine(candidate.path, tokenizer, run.max_tokens + 1, run.enforce_eager)
        except (ImportError, engine_vllm.EngineStartError) as error:
            fallback = f"vLLM unavailable ({type(error).__name__}: {error}); using transformers"
            log.warning(fallback)
        else:
            limit = engine.max_prompt_tokens
            rendered = [r if len(r.input_ids) <= limit else renderer.render(p if isinstance(p, str) else "", limit)
                        for r, p in zip(rendered, prompts, strict=True)]
    if engine is None:
        engine = _build_hf(candidate.path, run, tokenizer, device)
    return OpenModel(candidate, engine, rendered, reason, fallback, time.perf_counter() - started)


# -- scoring -----------------------------------------------------------------------------------------------------
def plan_chunks(indices: list[int], lengths: list[int], chunk_tokens: int) -> list[list[int]]:
    """Rows longest first, cut into chunks of about ``chunk_tokens`` prompt tokens (at least one row each)."""
    chunks: list[list[int]] = []
    current: list[int] = []
    total = 0
    for i in sorted(indices, key=lambda i: -lengths[i]):
        if current and total + lengths[i] > chunk_tokens:
            chunks.append(current)
            current, total = [], 0
        current.append(i)
        total += lengths[i]
    if current:
        chunks.append(current)
    return chunks


def _before_chunk() -> None:
    pause = float(os.environ.get(CHUNK_SLEEP_ENV, "0") or 0)
    if pause > 0:
        time.sleep(pause)


def _estimate(engine) -> float:
    """Tokens/s: measured on this run once a chunk has been scored, else the settings table."""
    if getattr(engine, "seconds", 0) > 0 and engine.tokens_scored > 0:
        return engine.tokens_scored / engine.seconds
    return defaults.ENGINE_ESTIMATES.get(f"{engine.name}/{'cuda' if engine.device.startswith('cuda') else 'cpu'}",
                                         defaults.ENGINE_ESTIMATES["hf/cpu"]).tokens_per_s


def score_model(model: OpenModel, rows: list[int], deadline: Deadline, run: RunSettings,
                probs: np.ndarray, done: np.ndarray, allowed: list, generate: bool = False) -> None:
    """Fill ``probs[rows]`` and ``done[rows]`` chunk by chunk while the deadline allows.

    Written in place so that an interruption keeps everything scored so far; rows a chunk ran over are marked in
    ``model.processed`` (a generative judge may process a row and still write no score).
    """
    lengths = [len(r.input_ids) for r in model.rendered]
    engine = model.engine
    device_kind = "cuda" if engine.device.startswith("cuda") else "cpu"
    chunk_tokens = run.chunk_tokens or defaults.CHUNK_TOKENS[device_kind]
    for chunk in plan_chunks(rows, lengths, chunk_tokens):
        need = sum(lengths[i] for i in chunk) / _estimate(engine)
        if generate:
            need *= 4  # a rationale costs several forwards; a cautious guess until measured
        if not deadline.allows(need):
            log.warning("deadline: %.1fs left, next chunk needs ~%.1fs; remaining rows get the prior",
                        deadline.remaining(), need)
            break
        _before_chunk()
        ids = [model.rendered[i].input_ids for i in chunk]
        if generate:
            texts = engine.generate_texts(ids, defaults.GENERATE_MAX_NEW_TOKENS)
            for i, text in zip(chunk, texts, strict=True):
                score = extract_score_from_text(text, allowed[i])
                if score is not None:
                    probs[i] = np.eye(len(LABELS))[LABELS.index(score)]
                    done[i] = True
        else:
            try:
                logits = engine.label_logits(ids)
            except Exception as error:  # noqa: BLE001 - a failing vLLM gives way to transformers; others raise
                if engine.name != "vllm":
                    raise
                engine = _replace_failed_vllm(model, run, error)
                logits = engine.label_logits([model.rendered[i].input_ids for i in chunk])
            probs[chunk] = probabilities_from_label_logits(logits, [allowed[i] for i in chunk])
            done[chunk] = True
        model.processed.update(chunk)


def _replace_failed_vllm(model: OpenModel, run: RunSettings, error: BaseException):
    """vLLM failed while scoring: switch this model to transformers for the rest of the run."""
    from submission.engine_hf import resolve_device

    reason = f"vLLM failed while scoring ({type(error).__name__}: {error}); using transformers"
    log.warning(reason)
    failed = model.engine
    model.engine = _build_hf(model.candidate.path, run, failed.tokenizer, resolve_device(run.device))
    model.engine.tokens_scored, model.engine.seconds = failed.tokens_scored, failed.seconds
    model.engine_fallback = reason
    return model.engine


@contextmanager
def sigterm_interrupts(deadline: Deadline):
    """While inside, SIGTERM marks the deadline and raises :class:`Interrupted` (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        deadline.interrupted = "SIGTERM"
        raise Interrupted()

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def predict(frame, run: RunSettings, deadline: Deadline | None = None) -> RunResult:
    """Scores for a test frame (``id``, ``prompt``): always one valid score per row, the meta says how."""
    from submission.sections import parse_prompt

    deadline = deadline or Deadline(run.time_limit_s)
    ids = frame["id"].tolist()
    prompts = [p if isinstance(p, str) else "" for p in frame["prompt"].tolist()]
    n = len(ids)
    sections = [parse_prompt(p) for p in prompts]
    allowed = [s.allowed for s in sections]
    empty = np.array([not p.strip() for p in prompts], dtype=bool)
    plan = plan_models(run)
    meta: dict = {"rows": n, "choice_reason": plan.reason, "skipped_models": [], "metric": run.metric,
                  "time_limit_s": run.time_limit_s}
    member_probs: list[tuple[float, np.ndarray, np.ndarray]] = []  # (weight, probs, scored mask)
    opened: list[OpenModel] = []
    strategy = "single"
    weights = {m.path.resolve(): m.weight for m in plan.ensemble.members} if plan.ensemble else {}
    to_score = [i for i in range(n) if not empty[i]]
    started = time.perf_counter()

    with sigterm_interrupts(deadline):
        try:
            primary = _open_first(plan.ranked, prompts, run, meta, factor=len(plan.ranked) if plan.ensemble else 1)
            opened.append(primary)
            generate = primary.candidate.mode == "generate"
            strategy = "generate" if generate else "single"
            probs, done = np.zeros((n, len(LABELS))), np.zeros(n, dtype=bool)
            member_probs.append((weights.get(primary.candidate.path.resolve(), 1.0), probs, done))
            score_model(primary, to_score, deadline, run, probs, done, allowed, generate)
            rest = [c for c in plan.ranked if c.path.resolve() != primary.candidate.path.resolve()]
            if plan.ensemble and rest and not generate:
                strategy, why = _ensemble_fits(primary, rest, deadline)
                meta["ensemble_decision"] = why
                if strategy == "ensemble":
                    for candidate in rest:
                        try:
                            model = open_model(candidate, prompts, run)
                        except Exception as error:  # noqa: BLE001 - a broken member is skipped, not fatal
                            _skip(meta, candidate, error)
                            continue
                        opened.append(model)
                        extra, extra_done = np.zeros((n, len(LABELS))), np.zeros(n, dtype=bool)
                        member_probs.append((weights.get(candidate.path.resolve(), 1.0), extra, extra_done))
                        score_model(model, to_score, deadline, run, extra, extra_done, allowed)
                    if len(member_probs) == 1:
                        strategy = "single"
        except Interrupted:
            log.warning("SIGTERM: writing what is scored, the rest gets the prior")
    if not opened:
        raise FileNotFoundError("no model could be loaded: " + "; ".join(s["error"] for s in meta["skipped_models"]))

    # Weighted mean over the members that scored each row.
    total = np.zeros((n, len(LABELS)))
    weight_sum = np.zeros(n)
    for weight, probs, mask in member_probs:
        total[mask] += weight * probs[mask]
        weight_sum[mask] += weight
    scored = weight_sum > 0
    total[scored] /= weight_sum[scored, None]

    primary = opened[0]
    prior = ClassPrior(primary.candidate.report.get("class_prior"))
    fallback_rows = ~scored
    for i in np.flatnonzero(fallback_rows):
        total[i] = prior.probabilities(sections[i].criterion, allowed[i])
    if strategy == "ensemble":
        decision = Decision.from_dict(plan.ensemble.decision)
    else:
        decision = Decision.from_dict(primary.candidate.report.get("decision"))
    scores = decide(total, allowed, decision)
    for i in np.flatnonzero(fallback_rows):
        scores[i] = prior.score(sections[i].criterion, allowed[i])
    validate_predictions(ids, scores, allowed)

    finished = time.perf_counter()
    processed = np.zeros(n, dtype=bool)
    processed[sorted(primary.processed)] = True
    tokens = sum(model.engine.tokens_scored for model in opened)
    engine_seconds = sum(model.engine.seconds for model in opened)
    no_text_score = fallback_rows & processed & ~empty
    unreached = fallback_rows & ~processed & ~empty
    reasons = {
        "empty_prompt": int(empty.sum()),
        "sigterm" if deadline.interrupted else "deadline": int(unreached.sum()),
        "no_score_in_text": int(no_text_score.sum()),
    }
    meta.update({
        "models": [{"path": str(m.candidate.path), "weight": weights.get(m.candidate.path.resolve(), 1.0),
                    run.metric: m.candidate.value, "mode": m.candidate.mode} for m in opened],
        "model_dirs": [str(m.candidate.path) for m in opened],
        "strategy": strategy,
        "engine": primary.engine.name,
        "engine_reason": primary.engine_reason,
        "engine_fallback": primary.engine_fallback,
        "vllm_start_failures": getattr(primary.engine, "start_failures", []),
        "device": primary.engine.device,
        "decision": decision.to_dict(),
        "tokens": int(tokens),
        "timings_s": {"load": round(sum(m.load_s for m in opened), 3), "engine": round(engine_seconds, 3),
                      "total": round(finished - started, 3), "since_start": round(deadline.elapsed(), 3)},
        "tokens_per_s": round(tokens / max(engine_seconds, 1e-9), 1),
        "score_distribution": {str(k): v for k, v in sorted(Counter(scores).items())},
        "truncated_rows": sum(r.truncated for r in primary.rendered),
        "unparsed_rows": sum(not s.parsed for s in sections),
        "fallback_rows": int(fallback_rows.sum()),
        "fallback_reasons": reasons,
        "fallback_prior": prior.source,
        "interrupted": deadline.interrupted,
        "oom_splits": sum(getattr(m.engine, "oom_splits", 0) for m in opened),
    })
    return RunResult(ids, scores, total, meta)


def _skip(meta: dict, candidate: Candidate, error: BaseException) -> None:
    log.warning("skipping model %s: %s: %s", candidate.path, type(error).__name__, error)
    meta["skipped_models"].append({"path": str(candidate.path), "error": f"{type(error).__name__}: {error}"})


def _open_first(ranked: list[Candidate], prompts, run: RunSettings, meta: dict, factor: int = 1) -> OpenModel:
    """The first candidate that loads; the others that failed are listed in the meta file."""
    for candidate in ranked:
        try:
            return open_model(candidate, prompts, run, tokens_factor=factor)
        except Exception as error:  # noqa: BLE001 - a broken model folder is skipped with a warning
            _skip(meta, candidate, error)
    raise FileNotFoundError("no model could be loaded: " + "; ".join(s["error"] for s in meta["skipped_models"]))


def _ensemble_fits(primary: OpenModel, rest: list[Candidate], deadline: Deadline) -> tuple[str, str]:
    """Ensemble when the other members' estimated time (this run's measured throughput) fits the time left."""
    engine = primary.engine
    tokens = sum(len(r.input_ids) for r in primary.rendered)
    if engine.seconds <= 0:
        return "single", "primary scored nothing; no throughput measured"
    tps = engine.tokens_scored / engine.seconds
    need = len(rest) * (tokens / tps + primary.load_s)
    if deadline.allows(need):
        return "ensemble", f"{len(rest)} more member(s) need ~{need:.1f}s at {tps:.0f} tokens/s; {deadline.remaining():.1f}s left"
    return "single", f"{len(rest)} more member(s) need ~{need:.1f}s; only {deadline.remaining():.1f}s left"


def meta_path_for(pred_path: str | os.PathLike) -> Path:
    """``predictions.csv`` -> ``predictions_meta.json`` beside it."""
    pred_path = Path(pred_path)
    return pred_path.with_name(f"{pred_path.stem}_meta.json")


def write_outputs(result: RunResult, pred_path: str | os.PathLike) -> Path:
    """Predictions (atomically) and the meta file; returns the meta path."""
    write_predictions(pred_path, result.ids, result.scores)
    meta_path = meta_path_for(pred_path)
    meta_path.write_text(json.dumps(result.meta, ensure_ascii=False, indent=2, default=str), encoding="utf-8")
    return meta_path
