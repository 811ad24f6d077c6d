"""Test CSV -> validated predictions CSV: pick model(s), pick an engine, score in chunks against a deadline, write.

This is the orchestration behind ``run.py``; :func:`predict` reads top to bottom as its named steps. The pieces it
calls (model ranking, renderer, engines, scorer, priors, the meta schema) live in their own modules. Row-level
trouble (an empty or unparseable prompt, no time left, a generative judge that wrote no score, NaN or infinite
logits) is scored by a prior and counted in the meta file; file-level trouble raises
:class:`submission.data.DataError` or FileNotFoundError. SIGTERM or SIGINT at any moment, while models are
planned, loaded, started or scoring, stops the work and still gives a complete file.
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
    artefact_problem,
    auto_ensemble,
    candidate_model_dirs,
    display_name,
    ensemble_path,
    model_dir_problem,
    pick_reason,
    rank_candidates,
    read_ensemble,
    read_report,
)
from submission.data import DataError, validate_predictions, write_predictions, write_text_atomic
from submission.engines import ScoringEngine
from submission.priors import ClassPrior
from submission.prompting import RenderedRows
from submission.run_meta import EnsembleMeta, ModelMeta, RunMeta, SkippedModel, Timings, meta_path_for
from submission.scoring import (
    LABELS,
    Decision,
    decide,
    extract_score_from_text,
    finite_rows,
    probabilities_from_label_logits,
)
from submission.sections import Sections, parse_prompt

log = logging.getLogger(__name__)

MODEL_DIR_ENV = "AIJ_MODEL_DIR"
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
    """Scores plus everything the meta file reports (``meta``: :meth:`RunMeta.to_dict`)."""

    ids: list[str]
    scores: list[int]
    probabilities: np.ndarray
    meta: dict = field(default_factory=dict)


class Interrupted(BaseException):
    """Raised from the SIGTERM/SIGINT handler; BaseException so engine code that catches Exception lets it through."""


class NonFiniteScores(RuntimeError):
    """A model whose label logits were NaN or infinite on every row it scored (e.g. fp16 overflow): skipped."""


class Deadline:
    """Wall-clock budget from the run's start; keeps a margin for writing the files.

    ``clock`` and ``before_chunk`` (called before each chunk is scored) let tests move time and deliver signals
    chunk by chunk without sleeping.
    """

    def __init__(self, limit_s: float, clock: Callable[[], float] = time.monotonic, started: float | None = None,
                 before_chunk: Callable[[], None] | None = None):
        self.clock = clock
        self.started = clock() if started is None else started
        self.limit_s = float(limit_s)
        self.margin_s = min(defaults.WRITE_MARGIN_S, 0.1 * self.limit_s)
        self.before_chunk = before_chunk or (lambda: None)
        self.interrupted: str | None = None  # "SIGTERM" / "SIGINT" once a signal arrived
        self.raise_on_signal = False  # True while models load and score: a signal then raises Interrupted
        self.announced = False  # the "remaining rows get the prior" warning is logged once per run

    def elapsed(self) -> float:
        return self.clock() - self.started

    def remaining(self) -> float:
        """Seconds left for scoring (the write margin already taken off)."""
        return self.limit_s - self.margin_s - self.elapsed()

    def allows(self, seconds: float) -> bool:
        return self.interrupted is None and self.remaining() >= seconds


@dataclass
class ContestRows:
    """The test rows, each prompt parsed once: its sections carry the allowed labels and the criterion.

    ``allowed``, ``empty`` and ``to_score`` (rows with a prompt; empty ones go straight to the prior) are derived
    once here: a 100k-row file is indexed row by row afterwards.
    """

    ids: list[str]
    prompts: list[str]
    sections: list[Sections]
    allowed: list[tuple[int, ...]] = field(init=False)
    stated: list[tuple[int, ...]] = field(init=False)  # the independent reading the written scores are checked on
    empty: np.ndarray = field(init=False)
    to_score: list[int] = field(init=False)

    def __post_init__(self):
        self.allowed = [s.allowed for s in self.sections]
        self.stated = [s.stated for s in self.sections]
        self.empty = np.array([not p.strip() for p in self.prompts], dtype=bool)
        self.to_score = [int(i) for i in np.flatnonzero(~self.empty)]

    @classmethod
    def parse(cls, frame) -> ContestRows:
        """From ``frame["id"]`` / ``frame["prompt"]`` (PromptRows or a DataFrame); a non-text prompt is empty."""
        prompts = [p if isinstance(p, str) else "" for p in frame["prompt"]]
        return cls([str(i) for i in frame["id"]], prompts, [parse_prompt(p) for p in prompts])

    def __len__(self) -> int:
        return len(self.ids)


# -- model choice ------------------------------------------------------------------------------------------------
def default_roots() -> list[Path]:
    """The bundle's models/, then ./models, then runs/*/merged (here and in the bundle)."""
    roots = [BUNDLE_ROOT / "models", Path("models"), Path("runs"), BUNDLE_ROOT / "runs"]
    unique: list[Path] = []
    for root in roots:
        if root.resolve() not in [r.resolve() for r in unique]:
            unique.append(root)
    return unique


@dataclass
class ModelPlan:
    """Candidates best first (the single-model order), the ensemble to try (if any), and why; ``skipped``: model
    folders (and an ensemble.json) left out before loading, with the reason."""

    ranked: list[Candidate]
    ensemble: Ensemble | None
    reason: str
    skipped: list[SkippedModel] = field(default_factory=list)

    def weight(self, path: Path) -> float:
        """The ensemble weight of a model folder (1.0 outside an ensemble)."""
        weights = {m.path.resolve(): m.weight for m in self.ensemble.members} if self.ensemble else {}
        return weights.get(Path(path).resolve(), 1.0)

    def is_member(self, path: Path) -> bool:
        return bool(self.ensemble) and Path(path).resolve() in {m.path.resolve() for m in self.ensemble.members}


def _skip_before_loading(path: Path, reason: str, skipped: list[SkippedModel]) -> None:
    log.warning("skipping %s: %s", path, reason)
    skipped.append(SkippedModel(str(path), reason))


def _usable(paths: list[Path], metric: str, skipped: list[SkippedModel]) -> list[Path]:
    """The model folders whose layout and JSON artefacts are sound; the others go to ``skipped`` with the reason."""
    usable = []
    for path in paths:
        problem = model_dir_problem(path) or artefact_problem(path, metric)
        if problem:
            _skip_before_loading(path, problem, skipped)
        else:
            usable.append(path)
    return usable


def _checked_ensemble(roots: list[Path], metric: str, skipped: list[SkippedModel]) -> Ensemble | None:
    """ensemble.json with its unusable members left out (missing, broken, weight <= 0); None when it is malformed
    or no member is left (then the models are ranked as if there were no ensemble.json)."""
    path = ensemble_path(roots)
    if path is None:
        return None
    try:
        ensemble = read_ensemble(path)
    except ValueError as error:
        _skip_before_loading(path, f"{error}; ignoring the ensemble", skipped)
        return None
    members = []
    for member in ensemble.members:
        if member.weight <= 0:
            _skip_before_loading(member.path, f"ensemble weight {member.weight:g} in {ensemble.path}: must be > 0; "
                                 "member left out", skipped)
        elif _usable([member.path], metric, skipped):
            members.append(member)
    if not members:
        _skip_before_loading(ensemble.path, "no usable member; ignoring the ensemble", skipped)
        return None
    ensemble.members = members
    return ensemble


def plan_models(run: RunSettings) -> ModelPlan:
    """Which model folders to try, in order, and the ensemble: ensemble.json, else equally good reports.

    Every folder and JSON artefact is checked here, before anything loads: an explicit ``--model-dir`` that cannot
    be used is a DataError (one line); among several candidates an unusable one is skipped with the reason.
    """
    explicit = run.model_dir or os.environ.get(MODEL_DIR_ENV)
    if explicit:
        path = Path(explicit)
        if not path.exists():
            raise FileNotFoundError(f"model dir {path} does not exist")
        problem = model_dir_problem(path) or artefact_problem(path, run.metric)
        if problem:
            raise DataError(f"--model-dir / ${MODEL_DIR_ENV}: {problem}")
        return ModelPlan([Candidate(path, read_report(path))], None, "explicit --model-dir / $" + MODEL_DIR_ENV)
    roots = [Path(run.models)] if run.models else default_roots()
    if run.models and not Path(run.models).exists():
        raise FileNotFoundError(f"--models {run.models} does not exist")
    skipped: list[SkippedModel] = []
    ensemble = _checked_ensemble(roots, run.metric, skipped) if run.ensemble else None
    if ensemble:
        members = rank_candidates([m.path for m in ensemble.members], run.metric)
        reason = f"ensemble {ensemble.path} ({len(members)} members); single-model fallback: " + pick_reason(members, run.metric)
        return ModelPlan(members, ensemble, reason, skipped)
    found = candidate_model_dirs(roots)
    if not found:
        where = ", ".join(str(r) for r in roots)
        raise FileNotFoundError(f"no model folder (config.json + *.safetensors) under {where}; pass --models DIR"
                                + "".join(f"; {s.error}" for s in skipped))
    found = _usable(found, run.metric, skipped)
    if not found:
        raise FileNotFoundError("no model could be loaded: " + "; ".join(s.error for s in skipped))
    ranked = rank_candidates(found, run.metric)
    if run.ensemble:
        ensemble = auto_ensemble(ranked, run.metric, defaults.ENSEMBLE_TOLERANCE, defaults.ENSEMBLE_MAX_MEMBERS)
    reason = pick_reason(ranked, run.metric)
    return ModelPlan(ranked, ensemble, f"ensemble of {ensemble.reason}; single-model fallback: {reason}" if ensemble else reason,
                     skipped)


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
    """A loaded model ready to score: its candidate entry, rows (rendered lazily), engine, and what it scored.

    ``probs[i]``/``scored[i]`` are filled in place chunk by chunk, so an interruption keeps everything scored so far;
    ``processed`` holds the rows a chunk ran over (a generative judge may process a row and write no score).
    """

    candidate: Candidate
    engine: ScoringEngine
    tokenizer: object
    rendered: RenderedRows
    weight: float
    engine_reason: str
    engine_fallback: str | None = None
    load_s: float = 0.0
    processed: set = field(default_factory=set)
    non_finite: set = field(default_factory=set)  # rows whose label logits were NaN/inf (scored by the prior)
    vllm_rows: int | None = None  # rows vLLM scored before it failed mid-run
    probs: np.ndarray = field(init=False)
    scored: np.ndarray = field(init=False)
    earlier_tokens: int = 0  # counters of an engine this model replaced (vLLM that failed mid-run)
    earlier_seconds: float = 0.0

    def __post_init__(self):
        n = len(self.rendered.prompts)
        self.probs, self.scored = np.zeros((n, len(LABELS))), np.zeros(n, dtype=bool)

    @property
    def generate(self) -> bool:
        return self.candidate.mode == "generate"

    def only_non_finite(self) -> bool:
        """Every row this model ran over gave NaN/inf logits: a broken model, not a row-level problem."""
        return bool(self.non_finite) and not self.scored.any()

    @property
    def tokens_scored(self) -> int:
        return self.earlier_tokens + self.engine.tokens_scored

    @property
    def seconds(self) -> float:
        return self.earlier_seconds + self.engine.seconds


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


def open_model(candidate: Candidate, rows: ContestRows, run: RunSettings, weight: float = 1.0,
               tokens_factor: int = 1) -> OpenModel:
    """Tokenizer -> rows (rendered lazily) -> engine chosen by estimated time; failures fall back to transformers."""
    from submission import engine_vllm
    from submission.engine_hf import load_tokenizer, resolve_device
    from submission.prompting import PromptRenderer

    started = time.perf_counter()
    tokenizer = load_tokenizer(candidate.path)
    rendered = RenderedRows(PromptRenderer(tokenizer, max_tokens=run.max_tokens), rows.prompts, rows.sections)
    tokens = sum(rendered.lengths) * tokens_factor
    device = resolve_device(run.device)
    name, reason = choose_engine(run.engine, device, tokens, engine_vllm.vllm_available())
    fallback = None
    engine = None
    if name == "vllm":
        try:
            engine = engine_vllm.VllmEngine(candidate.path, tokenizer, run.max_tokens + 1, run.enforce_eager,
                                            tokens_hint=sum(rendered.lengths) + len(rows))
        except (ImportError, engine_vllm.EngineStartError) as error:
            fallback = f"vLLM unavailable ({type(error).__name__}: {error}); using transformers"
            log.warning(fallback)
        else:
            rendered.shorten_to(engine.max_prompt_tokens)
    if engine is None:
        engine, oom = _build_hf(candidate.path, run, tokenizer, device)
        fallback = _join(fallback, oom)
    return OpenModel(candidate, engine, tokenizer, rendered, weight, reason, fallback, time.perf_counter() - started)


def _replace_failed_vllm(model: OpenModel, run: RunSettings, error: BaseException) -> None:
    """vLLM failed while scoring: close it and switch this model to transformers for the rest of the run."""
    from submission.engine_hf import resolve_device

    reason = (f"vLLM failed while scoring after {len(model.processed)} rows ({type(error).__name__}: {error}); "
              "using transformers for the rest")
    log.warning(reason)
    failed = model.engine
    failed.close()  # frees vLLM's GPU memory before transformers loads
    model.earlier_tokens, model.earlier_seconds = model.tokens_scored, model.seconds
    model.engine, oom = _build_hf(model.candidate.path, run, model.tokenizer, resolve_device(run.device))
    model.engine_fallback = _join(model.engine_fallback, reason, oom)
    model.vllm_rows = len(model.processed)


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


def measured_throughput(model: OpenModel) -> float | None:
    """Tokens/s this model's engine(s) reached in this run, or None before anything was scored."""
    if model.seconds > 0 and model.tokens_scored > 0:
        return model.tokens_scored / model.seconds
    return None


def _estimate(model: OpenModel) -> float:
    """Tokens/s: measured on this run once a chunk has been scored, else the settings table."""
    device = "cuda" if model.engine.device.startswith("cuda") else "cpu"
    return measured_throughput(model) or defaults.ENGINE_ESTIMATES.get(
        f"{model.engine.name}/{device}", defaults.ENGINE_ESTIMATES["hf/cpu"]).tokens_per_s


def score_model(model: OpenModel, rows: list[int], deadline: Deadline, run: RunSettings,
                max_chunks: int | None = None) -> None:
    """Score ``model``'s rows not yet processed, chunk by chunk while the deadline allows (at most ``max_chunks``).

    A vLLM engine that fails here hands this chunk and the rest to transformers.
    """
    rows = [i for i in rows if i not in model.processed]
    total = len(model.processed) + len(rows)
    lengths = model.rendered.lengths
    device_kind = "cuda" if model.engine.device.startswith("cuda") else "cpu"
    chunk_tokens = run.chunk_tokens or defaults.CHUNK_TOKENS[device_kind]
    for chunk in plan_chunks(rows, lengths, chunk_tokens)[:max_chunks]:
        need = sum(lengths[i] for i in chunk) / _estimate(model)
        if model.generate:
            need *= 4  # a rationale costs several forwards; a cautious guess until measured
        if not deadline.allows(need):
            if not deadline.announced:
                log.warning("deadline: %.1fs left, next chunk needs ~%.1fs; remaining rows get the prior",
                            deadline.remaining(), need)
                deadline.announced = True
            break
        deadline.before_chunk()
        try:
            out = _score_chunk(model, chunk)
        except Exception as error:  # noqa: BLE001 - a failing vLLM gives way to transformers; others raise
            if model.engine.name != "vllm":
                raise
            _replace_failed_vllm(model, run, error)
            out = _score_chunk(model, chunk)  # the same chunk again, now on transformers
        _store_chunk(model, chunk, out)
        model.processed.update(chunk)
        log_progress(model, len(model.processed), total, deadline)


def _score_chunk(model: OpenModel, chunk: list[int]):
    """The engine's texts (generative judge) or label logits for one chunk of rows."""
    ids = model.rendered.ids(chunk)
    if model.generate:
        return model.engine.generate_texts(ids, defaults.GENERATE_MAX_NEW_TOKENS)
    return model.engine.label_logits(ids)


def _store_chunk(model: OpenModel, chunk: list[int], out) -> None:
    """Label probabilities for the chunk's rows (renormalised over each rubric), or the score a judge wrote."""
    allowed = model.rendered.sections
    if model.generate:
        for i, text in zip(chunk, out, strict=True):
            score = extract_score_from_text(text, allowed[i].allowed)
            if score is not None:
                model.probs[i] = np.eye(len(LABELS))[LABELS.index(score)]
                model.scored[i] = True
    else:
        rubrics = [allowed[i].allowed for i in chunk]
        good = finite_rows(out, rubrics)
        model.probs[chunk] = probabilities_from_label_logits(out, rubrics)
        model.scored[chunk] = good
        if not good.all():
            model.non_finite.update(i for i, g in zip(chunk, good, strict=True) if not g)
            log.warning("%s: %d of %d rows gave NaN or infinite label logits; they get the prior",
                        display_name(model.candidate.path), int((~good).sum()), len(chunk))


def log_progress(model: OpenModel, done_rows: int, total_rows: int, deadline: Deadline) -> None:
    """One stderr line per scored chunk: rows done / total, tokens/s, elapsed, time left before --time-limit."""
    tps = measured_throughput(model)
    log.info("%s: %d/%d rows (%.0f%%), %s tokens/s, elapsed %.1fs, %.1fs left before --time-limit",
             display_name(model.candidate.path), done_rows, total_rows, 100.0 * done_rows / max(total_rows, 1),
             f"{tps:,.0f}" if tps else "n/a", deadline.elapsed(), max(deadline.remaining() + deadline.margin_s, 0.0))


@contextmanager
def signals_interrupt(deadline: Deadline):
    """While inside, SIGTERM and SIGINT are recorded on the deadline (``interrupted``); while
    ``deadline.raise_on_signal`` (models loading and scoring) the first one also raises :class:`Interrupted`, so the
    run stops and writes what it has. Later signals are only recorded: they cannot cut the writing short. Main
    thread only (elsewhere a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        if deadline.interrupted is None:
            deadline.interrupted = signal.Signals(signum).name
        if deadline.raise_on_signal:
            deadline.raise_on_signal = False
            raise Interrupted()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


sigterm_interrupts = signals_interrupt  # the name before SIGINT was handled too


# -- the run, step by step -----------------------------------------------------------------------------------------
@dataclass
class Scoring:
    """What the scoring steps did, kept when SIGTERM cuts them short: models opened (primary first) or skipped,
    whether the ensemble runs, and the ensemble's entry in the meta file."""

    opened: list[OpenModel] = field(default_factory=list)
    skipped: list[SkippedModel] = field(default_factory=list)
    strategy: str = "single"
    ensemble: EnsembleMeta | None = None

    def skip(self, candidate: Candidate, error: BaseException) -> None:
        log.warning("skipping model %s: %s: %s", candidate.path, type(error).__name__, error)
        self.skipped.append(SkippedModel(str(candidate.path), f"{type(error).__name__}: {error}"))

    def nothing_loaded(self) -> FileNotFoundError:
        return FileNotFoundError("no model could be loaded: " + "; ".join(s.error for s in self.skipped))


def predict(frame, run: RunSettings, deadline: Deadline | None = None) -> RunResult:
    """Scores for test rows (``frame["id"]``, ``frame["prompt"]``: PromptRows or a DataFrame): always one valid
    score per row, the meta says how. The steps, in order, each a function below; writing the files is the
    caller's last step (:func:`write_outputs`). A signal at any step after the rows are parsed ends the work and
    the rows not scored get the prior (the rubric's middle when no model was loaded yet)."""
    deadline = deadline or Deadline(run.time_limit_s)
    started, scoring, plan = time.perf_counter(), Scoring(), None
    with signals_interrupt(deadline):
        rows = ContestRows.parse(frame)
        try:
            deadline.raise_on_signal = True
            if deadline.interrupted:
                raise Interrupted()  # the signal came while the file was read
            plan = plan_models(run)
            scoring.skipped.extend(plan.skipped)
            primary = open_primary(plan, rows, run, scoring, deadline)  # scores one chunk: measures throughput
            members = choose_strategy(plan, primary, rows, deadline, scoring)
            score_model(primary, rows.to_score, deadline, run)
            score_members(plan, members, rows, deadline, run, scoring)
        except Interrupted:
            log.warning("%s: writing what is scored, the rest gets the prior", deadline.interrupted)
        finally:
            deadline.raise_on_signal = False
            close_engines(scoring.opened)  # their counters stay readable for the meta
        settle_scoring(scoring)
        if not scoring.opened and not deadline.interrupted:
            raise scoring.nothing_loaded()
        prior = fallback_prior(plan, scoring)
        probabilities, fallback = blend_with_prior(scoring.opened, rows, prior)
        decision = decision_rule(plan, scoring)
        scores = decide_scores(probabilities, fallback, rows, decision, prior)
        validate_predictions(rows.ids, scores, rows.stated)  # the prompt's own text, read independently
        meta = describe_run(run, rows, plan, scoring, decision, scores, fallback, prior, deadline, started)
    return RunResult(rows.ids, scores, probabilities, meta.to_dict())


def open_primary(plan: ModelPlan, rows: ContestRows, run: RunSettings, scoring: Scoring,
                 deadline: Deadline | None = None) -> OpenModel:
    """The best-ranked candidate that loads (engine sized for every ensemble member's pass); failures are listed.

    With ``deadline`` the model also scores its first chunk (which measures this machine's throughput), and a model
    whose first chunk is NaN/inf on every row is skipped like one that did not load.
    """
    factor = len(plan.ensemble.members) if plan.ensemble else 1
    for candidate in plan.ranked:
        try:
            model = open_model(candidate, rows, run, plan.weight(candidate.path), tokens_factor=factor)
        except Exception as error:  # noqa: BLE001 - a broken model folder is skipped with a warning
            scoring.skip(candidate, error)
            continue
        scoring.opened.append(model)
        scoring.strategy = "generate" if model.generate else "single"
        if deadline is None:
            return model
        score_model(model, rows.to_score, deadline, run, max_chunks=1)
        if not model.only_non_finite():
            return model
        scoring.opened.remove(model)
        scoring.skip(candidate, NonFiniteScores(
            f"all {len(model.non_finite)} rows of its first chunk gave NaN or infinite label logits"))
        model.engine.close()
    raise scoring.nothing_loaded()


def settle_scoring(scoring: Scoring) -> None:
    """After scoring (finished or interrupted): other members that gave only NaN/inf are moved to ``skipped``, and
    the strategy and the ensemble's entry say what really ran (a member that failed leaves ``single``)."""
    for model in list(scoring.opened[1:]):
        if model.only_non_finite():
            scoring.opened.remove(model)
            scoring.skip(model.candidate, NonFiniteScores(
                f"all {len(model.non_finite)} rows it scored gave NaN or infinite label logits"))
    if scoring.strategy == "ensemble" and len(scoring.opened) < 2:
        scoring.strategy = "single"
    ensemble = scoring.ensemble
    if ensemble is not None and ensemble.strategy != scoring.strategy and scoring.strategy != "generate":
        ensemble.strategy = scoring.strategy
        ensemble.why += f"; only {len(scoring.opened)} model scored, the other members failed (skipped_models)"


def fallback_prior(plan: ModelPlan | None, scoring: Scoring) -> ClassPrior:
    """The primary model's report prior; before any model loaded, the best candidate's; else the rubric middle."""
    if scoring.opened:
        return ClassPrior(scoring.opened[0].candidate.report.get("class_prior"))
    if plan is not None and plan.ranked:
        return ClassPrior(plan.ranked[0].report.get("class_prior"))
    return ClassPrior(None)


def choose_strategy(plan: ModelPlan, primary: OpenModel, rows: ContestRows, deadline: Deadline,
                    scoring: Scoring) -> list[Candidate]:
    """After the primary's first chunk: the other ensemble members to score, or [] (single model), and why."""
    if not plan.ensemble or primary.generate:
        return []
    path = primary.candidate.path.resolve()
    rest = [c for c in plan.ranked if plan.is_member(c.path) and c.path.resolve() != path]
    if not plan.is_member(path) or not rest:
        why = f"ensemble members did not load; {display_name(primary.candidate.path)} alone"
    else:
        scoring.strategy, why = ensemble_fits(primary, rest, deadline, rows.to_score)
    tps = measured_throughput(primary)
    scoring.ensemble = EnsembleMeta(
        source=str(plan.ensemble.path) if plan.ensemble.path else "auto", reason=plan.ensemble.reason,
        members=[str(m.path) for m in plan.ensemble.members], weights=[m.weight for m in plan.ensemble.members],
        first_chunk_tokens_per_s=None if tps is None else round(tps, 1), strategy=scoring.strategy, why=why)
    return rest if scoring.strategy == "ensemble" else []


def ensemble_fits(primary: OpenModel, rest: list[Candidate], deadline: Deadline, rows: list[int]) -> tuple[str, str]:
    """``ensemble`` when rows x members fit the time left at the first chunk's measured throughput, else ``single``.

    The need counts the primary's rows still to score plus every other member's rows and load time (taken as the
    primary's). The first chunk includes warm-up, so the measured throughput errs low, on the safe side.
    """
    tps = measured_throughput(primary)
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


def score_members(plan: ModelPlan, members: list[Candidate], rows: ContestRows, deadline: Deadline,
                  run: RunSettings, scoring: Scoring) -> None:
    """Open and score each other ensemble member; one that does not load is skipped (single if none does)."""
    for candidate in members:
        # One engine at a time: the one that scored last frees its memory before the next member loads (two vLLM
        # engines would each ask for 90% of the same GPU).
        close_engines(scoring.opened)
        try:
            model = open_model(candidate, rows, run, plan.weight(candidate.path))
        except Exception as error:  # noqa: BLE001 - a broken member is skipped, not fatal
            scoring.skip(candidate, error)
            continue
        scoring.opened.append(model)
        score_model(model, rows.to_score, deadline, run)
    if members and len(scoring.opened) == 1:
        scoring.strategy = "single"


def close_engines(opened: list[OpenModel]) -> None:
    """Close every opened model's engine (idempotent); their counters stay readable for the meta file."""
    for model in opened:
        model.engine.close()


def blend_with_prior(opened: list[OpenModel], rows: ContestRows, prior: ClassPrior) -> tuple[np.ndarray, np.ndarray]:
    """Weighted mean of the members' probabilities over the members that scored each row; the prior for rows none
    scored. Returns the probabilities and the mask of those fallback rows."""
    total = np.zeros((len(rows), len(LABELS)))
    weight_sum = np.zeros(len(rows))
    for model in opened:
        total[model.scored] += model.weight * model.probs[model.scored]
        weight_sum[model.scored] += model.weight
    scored = weight_sum > 0
    total[scored] /= weight_sum[scored, None]
    for i in np.flatnonzero(~scored):
        total[i] = prior.probabilities(rows.sections[i].criterion, rows.allowed[i])
    return total, ~scored


def decision_rule(plan: ModelPlan | None, scoring: Scoring) -> Decision:
    """The ensemble's decision rule when the ensemble ran, else the primary model's (argmax when it has none, or
    when no model loaded)."""
    if not scoring.opened:
        return Decision()
    if scoring.strategy == "ensemble":
        return Decision.from_dict(plan.ensemble.decision)
    return Decision.from_dict(scoring.opened[0].candidate.report.get("decision"))


def decide_scores(probabilities: np.ndarray, fallback: np.ndarray, rows: ContestRows, decision: Decision,
                  prior: ClassPrior) -> list[int]:
    """One allowed score per row: the decision rule on scored rows, the prior's most likely label on the rest."""
    scores = decide(probabilities, rows.allowed, decision)
    for i in np.flatnonzero(fallback):
        scores[i] = prior.score(rows.sections[i].criterion, rows.allowed[i])
    return scores


def describe_run(run: RunSettings, rows: ContestRows, plan: ModelPlan | None, scoring: Scoring, decision: Decision,
                 scores: list[int], fallback: np.ndarray, prior: ClassPrior, deadline: Deadline,
                 started: float) -> RunMeta:
    """The meta file's content: the one place a :class:`RunMeta` is built (also when a signal came before any
    model loaded: no models, engine ``none``)."""
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
        device=device, dtype=getattr(primary.engine, "dtype", "unknown") if primary else "none",
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
    )


def _engine_settings(engine: ScoringEngine) -> dict:
    """The start-up settings worth reporting (vLLM's; the model path is in ``models``)."""
    started = getattr(engine, "settings", None) or {}
    return {k: v for k, v in started.items() if k != "model"}


def write_outputs(result: RunResult, pred_path: str | os.PathLike) -> Path:
    """Predictions, then the meta file, each atomically (:func:`submission.data.write_text_atomic`); returns the meta
    path. :class:`submission.data.OutputError` (one line) when either cannot be written."""
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
