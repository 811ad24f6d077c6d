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
    auto_ensemble,
    candidate_model_dirs,
    display_name,
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
        self.announced = False  # the "remaining rows get the prior" warning is logged once per run

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
    """Candidates best first (the single-model order), the ensemble to try (if any), and why."""

    ranked: list[Candidate]
    ensemble: Ensemble | None
    reason: str


def plan_models(run: RunSettings) -> ModelPlan:
    """Which model folders to try, in order, and the ensemble: ensemble.json, else equally good reports."""
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
    if run.ensemble:
        ensemble = auto_ensemble(ranked, run.metric, defaults.ENSEMBLE_TOLERANCE, defaults.ENSEMBLE_MAX_MEMBERS)
    reason = pick_reason(ranked, run.metric)
    return ModelPlan(ranked, ensemble, f"ensemble of {ensemble.reason}; single-model fallback: {reason}" if ensemble else reason)


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


class RenderedRows:
    """The rows' rendered prompts, tokenised on first use; until then their lengths are estimates.

    A 100k-row file is not tokenised up front (that alone can outlast the time limit): lengths come from characters
    times a tokens-per-character ratio measured on an even sample of rows, and each row is rendered when its chunk
    is scored. ``lengths[i]`` becomes exact once row ``i`` is rendered.
    """

    def __init__(self, renderer, prompts: list[str], limit: int | None = None):
        self.renderer = renderer
        self.prompts = prompts
        self.limit = int(limit or renderer.max_tokens)
        self._rendered: dict[int, object] = {}
        overhead = len(renderer.render("").input_ids)
        filled = [i for i, p in enumerate(prompts) if p.strip()]
        step = max(1, len(filled) // defaults.LENGTH_SAMPLE_ROWS)
        sample = [self[i] for i in filled[::step][: defaults.LENGTH_SAMPLE_ROWS]]
        whole = [(len(r.input_ids) - overhead, len(r.text)) for r in sample if not r.truncated]
        chars = sum(c for _, c in whole)
        ratio = sum(t for t, _ in whole) / chars if chars else 1.0
        self.lengths = [len(self._rendered[i].input_ids) if i in self._rendered
                        else min(self.limit, overhead + int(ratio * len(p)) + 1) for i, p in enumerate(prompts)]

    def __getitem__(self, i: int):
        if i not in self._rendered:
            rendered = self.renderer.render(self.prompts[i], self.limit)
            self._rendered[i] = rendered
            if hasattr(self, "lengths"):
                self.lengths[i] = len(rendered.input_ids)
        return self._rendered[i]

    def ids(self, rows: list[int]) -> list[list[int]]:
        return [self[i].input_ids for i in rows]

    def shorten_to(self, limit: int) -> None:
        """Lower the length limit (vLLM started with a shorter context): longer rendered rows are redone lazily."""
        self.limit = min(self.limit, int(limit))
        for i in [i for i, r in self._rendered.items() if len(r.input_ids) > self.limit]:
            del self._rendered[i]
        self.lengths = [min(n, self.limit) for n in self.lengths]

    @property
    def truncated(self) -> int:
        return sum(r.truncated for r in self._rendered.values())


@dataclass
class OpenModel:
    """A loaded model ready to score: its candidate entry, its rows (rendered lazily) and engine."""

    candidate: Candidate
    engine: object
    rendered: RenderedRows
    engine_reason: str
    engine_fallback: str | None = None
    load_s: float = 0.0
    processed: set = field(default_factory=set)
    vllm_rows: int | None = None  # rows vLLM scored before it failed mid-run


def _build_hf(path: Path, run: RunSettings, tokenizer, device: str):
    """Transformers engine on ``device``; out of GPU memory while loading -> the same model on the CPU, and why."""
    from submission.engine_hf import TransformersEngine, is_out_of_memory, release_accelerator_memory

    try:
        return TransformersEngine(path, device=device, token_budget=run.token_budget, tokenizer=tokenizer), None
    except Exception as error:  # noqa: BLE001 - only out-of-memory on an accelerator is handled here
        if device == "cpu" or not is_out_of_memory(error):
            raise
        reason = f"out of memory loading {path} on {device} ({type(error).__name__}: {error}); using transformers on cpu"
        log.warning(reason)
        release_accelerator_memory()
        return TransformersEngine(path, device="cpu", token_budget=run.token_budget, tokenizer=tokenizer), reason


def _join(*reasons: str | None) -> str | None:
    return "; then ".join(r for r in reasons if r) or None


def open_model(candidate: Candidate, prompts: list[str], run: RunSettings, tokens_factor: int = 1) -> OpenModel:
    """Tokenizer -> rows (rendered lazily) -> engine chosen by estimated time; failures fall back to transformers."""
    from submission import engine_vllm
    from submission.engine_hf import load_tokenizer, resolve_device
    from submission.prompting import PromptRenderer

    started = time.perf_counter()
    tokenizer = load_tokenizer(candidate.path)
    rows = RenderedRows(PromptRenderer(tokenizer, max_tokens=run.max_tokens), prompts)
    tokens = sum(rows.lengths) * tokens_factor
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
            rows.shorten_to(engine.max_prompt_tokens)
    if engine is None:
        engine, oom = _build_hf(candidate.path, run, tokenizer, device)
        fallback = _join(fallback, oom)
    return OpenModel(candidate, engine, rows, reason, fallback, time.perf_counter() - started)


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
    measured = measured_throughput(engine)
    if measured:
        return measured
    return defaults.ENGINE_ESTIMATES.get(f"{engine.name}/{'cuda' if engine.device.startswith('cuda') else 'cpu'}",
                                         defaults.ENGINE_ESTIMATES["hf/cpu"]).tokens_per_s


def measured_throughput(engine) -> float | None:
    """Tokens/s this engine has reached in this run, or None before anything was scored (tests replace this)."""
    if getattr(engine, "seconds", 0) > 0 and engine.tokens_scored > 0:
        return engine.tokens_scored / engine.seconds
    return None


def score_model(model: OpenModel, rows: list[int], deadline: Deadline, run: RunSettings,
                probs: np.ndarray, done: np.ndarray, allowed: list, generate: bool = False,
                max_chunks: int | None = None) -> None:
    """Fill ``probs[rows]`` and ``done[rows]`` chunk by chunk while the deadline allows (at most ``max_chunks``).

    Written in place so that an interruption keeps everything scored so far; rows a chunk ran over are marked in
    ``model.processed`` (a generative judge may process a row and still write no score). A vLLM engine that fails
    here hands this chunk and the rest to transformers.
    """
    lengths = model.rendered.lengths
    device_kind = "cuda" if model.engine.device.startswith("cuda") else "cpu"
    chunk_tokens = run.chunk_tokens or defaults.CHUNK_TOKENS[device_kind]
    for chunk in plan_chunks(rows, lengths, chunk_tokens)[:max_chunks]:
        need = sum(lengths[i] for i in chunk) / _estimate(model.engine)
        if generate:
            need *= 4  # a rationale costs several forwards; a cautious guess until measured
        if not deadline.allows(need):
            if not deadline.announced:
                log.warning("deadline: %.1fs left, next chunk needs ~%.1fs; remaining rows get the prior",
                            deadline.remaining(), need)
                deadline.announced = True
            break
        _before_chunk()
        try:
            out = _score_chunk(model, chunk, generate)
        except Exception as error:  # noqa: BLE001 - a failing vLLM gives way to transformers; others raise
            if model.engine.name != "vllm":
                raise
            _replace_failed_vllm(model, run, error)
            out = _score_chunk(model, chunk, generate)  # the same chunk again, now on transformers
        if generate:
            for i, text in zip(chunk, out, strict=True):
                score = extract_score_from_text(text, allowed[i])
                if score is not None:
                    probs[i] = np.eye(len(LABELS))[LABELS.index(score)]
                    done[i] = True
        else:
            probs[chunk] = probabilities_from_label_logits(out, [allowed[i] for i in chunk])
            done[chunk] = True
        model.processed.update(chunk)


def _score_chunk(model: OpenModel, chunk: list[int], generate: bool):
    """The engine's texts (generative judge) or label logits for one chunk of rows."""
    ids = model.rendered.ids(chunk)
    if generate:
        return model.engine.generate_texts(ids, defaults.GENERATE_MAX_NEW_TOKENS)
    return model.engine.label_logits(ids)


def _replace_failed_vllm(model: OpenModel, run: RunSettings, error: BaseException):
    """vLLM failed while scoring: free it and switch this model to transformers for the rest of the run."""
    from submission.engine_hf import release_accelerator_memory, resolve_device

    reason = (f"vLLM failed while scoring after {len(model.processed)} rows ({type(error).__name__}: {error}); "
              "using transformers for the rest")
    log.warning(reason)
    failed = model.engine
    model.engine = None
    failed.llm = None  # drop vLLM's GPU memory before transformers loads
    release_accelerator_memory()
    model.engine, oom = _build_hf(model.candidate.path, run, failed.tokenizer, resolve_device(run.device))
    model.engine.tokens_scored, model.engine.seconds = failed.tokens_scored, failed.seconds
    model.engine_fallback = _join(model.engine_fallback, reason, oom)
    model.vllm_rows = len(model.processed)
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
            factor = len(plan.ensemble.members) if plan.ensemble else 1
            primary = _open_first(plan.ranked, prompts, run, meta, factor=factor)
            opened.append(primary)
            generate = primary.candidate.mode == "generate"
            strategy = "generate" if generate else "single"
            probs, done = np.zeros((n, len(LABELS))), np.zeros(n, dtype=bool)
            member_probs.append((weights.get(primary.candidate.path.resolve(), 1.0), probs, done))
            # The first chunk measures this machine's throughput; the ensemble decision rests on it.
            score_model(primary, to_score, deadline, run, probs, done, allowed, generate, max_chunks=1)
            primary_path = primary.candidate.path.resolve()
            rest = [c for c in plan.ranked if c.path.resolve() in weights and c.path.resolve() != primary_path]
            if plan.ensemble and not generate:
                if primary_path not in weights or not rest:
                    why = f"ensemble members did not load; {display_name(primary.candidate.path)} alone"
                else:
                    strategy, why = _ensemble_fits(primary, rest, deadline, to_score)
                meta["ensemble"] = {
                    "source": str(plan.ensemble.path) if plan.ensemble.path else "auto",
                    "reason": plan.ensemble.reason,
                    "members": [str(m.path) for m in plan.ensemble.members],
                    "weights": [m.weight for m in plan.ensemble.members],
                    "first_chunk_tokens_per_s": _rounded(measured_throughput(primary.engine)),
                    "strategy": strategy,
                    "why": why,
                }
                meta["ensemble_decision"] = why
            score_model(primary, [i for i in to_score if i not in primary.processed], deadline, run, probs, done,
                        allowed, generate)
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
                    run.metric: m.candidate.value, "mode": m.candidate.mode, "engine": m.engine.name,
                    "engine_fallback": m.engine_fallback, "vllm_rows_before_failure": m.vllm_rows} for m in opened],
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
        "truncated_rows": primary.rendered.truncated,
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


def _ensemble_fits(primary: OpenModel, rest: list[Candidate], deadline: Deadline, rows: list[int]) -> tuple[str, str]:
    """``ensemble`` when rows x members fit the time left at the first chunk's measured throughput, else ``single``.

    The need counts the primary's rows still to score plus every other member's rows and load time (taken as the
    primary's). The first chunk includes warm-up, so the measured throughput errs low, on the safe side.
    """
    tps = measured_throughput(primary.engine)
    if not tps:
        return "single", "the first chunk was not scored (no time); no throughput measured"
    lengths = primary.rendered.lengths
    left = sum(lengths[i] for i in rows if i not in primary.processed)
    every = sum(lengths[i] for i in rows)
    need = left / tps + len(rest) * (every / tps + primary.load_s)
    fits = deadline.allows(need)
    why = (f"{len(rows)} rows x {len(rest) + 1} members need ~{need:.1f}s at {tps:.0f} tokens/s (first chunk); "
           f"{'' if fits else 'only '}{deadline.remaining():.1f}s left")
    return ("ensemble" if fits else "single"), why


def _rounded(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


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
