"""Prompts -> label probabilities with one model: the one scoring path of the runtime, evaluation and distillation.

    from submission.scoring.scorer import ScoringSettings, score_prompts
    scored = score_prompts("runs/demo/merged", prompts, ScoringSettings(engine="auto", device="cuda"))
    scored.probs  # [N, 5] over LABELS, renormalised over each prompt's rubric; zeros where scored[i] is False

The steps, each a function below: open the model (:func:`open_model`: tokenizer, rows rendered lazily, engine
chosen by estimated time, vLLM that does not start and out-of-memory on load fall back to transformers), cut the
rows into chunks longest first (:func:`plan_chunks`), score chunk by chunk while the :class:`Deadline` allows
(:func:`score_model`: a vLLM failing mid-run hands the rest to transformers, NaN/inf rows are left unscored). The
runtime (submission/runtime/runtime.py) drives the same functions for each ensemble member; ``trainer evaluate`` and
``trainer distill`` call :func:`score_prompts`.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from submission.choice.autopick import Candidate, display_name, read_report
from submission.engines.devices import device_kind
from submission.engines.protocol import ENGINE_NAMES, ScoringEngine
from submission.prompts.prompting import RenderedRows
from submission.prompts.sections import LABELS, Sections, parse_prompt
from submission.runtime import settings as defaults
from submission.scoring.decoding import finite_rows, probabilities_from_label_logits, probabilities_from_texts

log = logging.getLogger("submission.runtime.runtime")  # the runtime's progress and fallback lines keep their logger name


@dataclass
class ScoringSettings:
    """How one model scores; every field has a default that works (the runtime's RunSettings extends it)."""

    engine: str = "auto"  # auto (by estimated time) | vllm | hf
    device: str | None = None
    max_tokens: int = defaults.MAX_PROMPT_TOKENS
    token_budget: int | None = None
    enforce_eager: bool = False
    chunk_tokens: int | None = None
    tensor_parallel_size: int = 1  # vLLM only: GPUs one model is split over (a 32B teacher); no transformers fallback
    prefix_sharing: bool = True  # rows sharing a long prefix: one chunk, computed once (engines/prefix_sharing.py)


@dataclass(frozen=True)
class Sampling:
    """A free-text judge's verdicts drawn ``samples`` times per row (the score is their empirical distribution)
    instead of one greedy text; for a teacher's soft labels (trainer/recipes/distill.py)."""

    samples: int = 8
    temperature: float = 1.0
    seed: int = 0
    max_new_tokens: int = defaults.GENERATE_MAX_NEW_TOKENS


class ModelLoadError(RuntimeError):
    """:func:`score_prompts`: the model folder did not load (config, weights, tokenizer); ``__cause__`` says why."""


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
    labels: tuple[int, ...] = LABELS  # the judge's label set the sections were read with (LABELS_0_4: a 0-4 judge)
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
    def parse(cls, frame, labels: tuple[int, ...] = LABELS) -> ContestRows:
        """From ``frame["id"]`` / ``frame["prompt"]`` (PromptRows or a DataFrame); a non-text prompt is empty.
        ``labels``: the judge's label set (a 0-4 judge's rows allow 4 where their rubric states it)."""
        prompts = [p if isinstance(p, str) else "" for p in frame["prompt"]]
        return cls([str(i) for i in frame["id"]], prompts, [parse_prompt(p, labels) for p in prompts], labels)

    def with_labels(self, labels: tuple[int, ...]) -> ContestRows:
        """The same rows read for a judge with another label set (themselves when it is the same)."""
        if tuple(labels) == self.labels:
            return self
        return ContestRows.parse({"id": self.ids, "prompt": self.prompts}, tuple(labels))

    def __len__(self) -> int:
        return len(self.ids)


# -- engines -----------------------------------------------------------------------------------------------------
def choose_engine(requested: str, device: str, tokens: int, vllm_installed: bool) -> tuple[str, str]:
    """``hf`` or ``vllm`` and why: by estimated total time (start-up + tokens / throughput), see settings.py."""
    if requested == "hf":
        return "hf", "requested"
    if requested == "vllm":
        return "vllm", "requested"
    if device_kind(device) != "cuda":
        return "hf", f"device {device}: vLLM needs a GPU"
    if not vllm_installed:
        return "hf", "vLLM not installed"
    estimates = {name: defaults.ENGINE_ESTIMATES[f"{name}/cuda"].seconds(tokens) for name in ENGINE_NAMES}
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
    sampling: Sampling | None = None  # a generative judge: sampled verdicts instead of one greedy text
    processed: set = field(default_factory=set)
    non_finite: set = field(default_factory=set)  # rows whose label logits were NaN/inf (scored by the prior)
    vllm_rows: int | None = None  # rows vLLM scored before it failed mid-run
    probs: np.ndarray = field(init=False)
    scored: np.ndarray = field(init=False)
    earlier_tokens: int = 0  # counters of an engine this model replaced (vLLM that failed mid-run)
    earlier_seconds: float = 0.0
    earlier_computed: int = 0

    def __post_init__(self):
        n = len(self.rendered.prompts)
        self.probs, self.scored = np.zeros((n, len(self.labels))), np.zeros(n, dtype=bool)

    @property
    def labels(self) -> tuple[int, ...]:
        """The judge's label set (the columns of ``probs``): LABELS, or LABELS_0_4 for a 0-4 judge."""
        return self.candidate.labels

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
    def tokens_computed(self) -> int:
        """Prompt tokens the engine(s) really computed (shared prefixes once; vLLM: less its prefix-cache hits)."""
        return self.earlier_computed + getattr(self.engine, "tokens_computed", self.engine.tokens_scored)

    @property
    def seconds(self) -> float:
        return self.earlier_seconds + self.engine.seconds


def _build_hf(path: Path, run: ScoringSettings, tokenizer, device: str, labels: tuple[int, ...] = LABELS):
    """Transformers engine on ``device``; out of GPU memory while loading -> the same model on the CPU, and why."""
    from submission.engines.devices import is_out_of_memory, release_accelerator_memory
    from submission.engines.engine_hf import TransformersEngine

    try:
        return TransformersEngine(path, device=device, token_budget=run.token_budget, tokenizer=tokenizer,
                                  prefix_sharing=run.prefix_sharing, labels=labels), None
    except Exception as error:  # noqa: BLE001 - only out-of-memory on an accelerator is handled here
        if device == "cpu" or not is_out_of_memory(error):
            raise
        reason = f"out of memory loading {path} on {device} ({type(error).__name__}: {error}); using transformers on cpu"
        log.warning(reason)
        release_accelerator_memory()
        return TransformersEngine(path, device="cpu", token_budget=run.token_budget, tokenizer=tokenizer,
                                  prefix_sharing=run.prefix_sharing, labels=labels), reason


def _join(*reasons: str | None) -> str | None:
    return "; then ".join(r for r in reasons if r) or None


def open_model(candidate: Candidate, rows: ContestRows, run: ScoringSettings, weight: float = 1.0,
               tokens_factor: int = 1, sampling: Sampling | None = None) -> OpenModel:
    """Tokenizer -> rows (rendered lazily) -> engine chosen by estimated time; failures fall back to transformers.

    ``tokens_factor``: how many passes over the rows the engine is sized for (ensemble members, sampled verdicts).
    """
    from submission.engines import engine_vllm
    from submission.engines.devices import resolve_device
    from submission.engines.engine_hf import load_tokenizer
    from submission.prompts.prompting import PromptRenderer

    started = time.perf_counter()
    labels = candidate.labels
    if labels != rows.labels:
        raise ValueError(f"{display_name(candidate.path)} scores {labels[0]}..{labels[-1]}, the rows were read for "
                         f"{rows.labels[0]}..{rows.labels[-1]} (judge.json max_score)")
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
                                            tokens_hint=sum(rendered.lengths) + len(rows),
                                            tensor_parallel_size=run.tensor_parallel_size,
                                            prefix_sharing=run.prefix_sharing, labels=labels)
        except (ImportError, engine_vllm.EngineStartError) as error:
            if run.tensor_parallel_size > 1:  # a model that needs several GPUs would not fit transformers on one
                raise
            fallback = f"vLLM unavailable ({type(error).__name__}: {error}); using transformers"
            log.warning(fallback)
        else:
            rendered.shorten_to(engine.max_prompt_tokens)
    if engine is None:
        engine, oom = _build_hf(candidate.path, run, tokenizer, device, labels)
        fallback = _join(fallback, oom)
    return OpenModel(candidate, engine, tokenizer, rendered, weight, reason, fallback, time.perf_counter() - started,
                     sampling)


def _replace_failed_vllm(model: OpenModel, run: ScoringSettings, error: BaseException) -> None:
    """vLLM failed while scoring: close it and switch this model to transformers for the rest of the run."""
    from submission.engines.devices import resolve_device

    reason = (f"vLLM failed while scoring after {len(model.processed)} rows ({type(error).__name__}: {error}); "
              "using transformers for the rest")
    log.warning(reason)
    failed = model.engine
    failed.close()  # frees vLLM's GPU memory before transformers loads
    model.earlier_tokens, model.earlier_seconds = model.tokens_scored, model.seconds
    model.earlier_computed = model.tokens_computed
    model.engine, oom = _build_hf(model.candidate.path, run, model.tokenizer, resolve_device(run.device), model.labels)
    model.engine_fallback = _join(model.engine_fallback, reason, oom)
    model.vllm_rows = len(model.processed)


def close_engines(opened: list[OpenModel]) -> None:
    """Close every opened model's engine (idempotent); their counters stay readable for the meta file."""
    for model in opened:
        model.engine.close()


# -- scoring -----------------------------------------------------------------------------------------------------
def plan_chunks(indices: list[int], lengths: list[int], chunk_tokens: int,
                texts: list[str] | None = None) -> list[list[int]]:
    """Rows longest first, cut into chunks of about ``chunk_tokens`` prompt tokens (at least one row each).

    ``texts``: rows whose texts share a long prefix (one answer, several criteria) go into one chunk, so the engine
    can compute that prefix once; a group larger than a chunk fills chunks of its own.
    """
    from submission.engines.prefix_sharing import text_groups

    units = [[i] for i in indices] if texts is None else text_groups(indices, texts)
    chunks: list[list[int]] = []
    current: list[int] = []
    total = 0
    for unit in sorted(units, key=lambda u: -max(lengths[i] for i in u)):
        if current and total + sum(lengths[i] for i in unit) > chunk_tokens:
            chunks.append(current)
            current, total = [], 0
        for i in sorted(unit, key=lambda i: -lengths[i]):
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
    return measured_throughput(model) or defaults.ENGINE_ESTIMATES.get(
        f"{model.engine.name}/{device_kind(model.engine.device)}", defaults.ENGINE_ESTIMATES["hf/cpu"]).tokens_per_s


def log_progress(model: OpenModel, done_rows: int, total_rows: int, deadline: Deadline) -> None:
    """One stderr line per scored chunk: rows done / total, tokens/s, elapsed, time left before --time-limit (the
    last only under a finite limit)."""
    tps = measured_throughput(model)
    left = (f", {max(deadline.remaining() + deadline.margin_s, 0.0):.1f}s left before --time-limit"
            if math.isfinite(deadline.limit_s) else "")
    log.info("%s: %d/%d rows (%.0f%%), %s tokens/s, elapsed %.1fs%s",
             display_name(model.candidate.path), done_rows, total_rows, 100.0 * done_rows / max(total_rows, 1),
             f"{tps:,.0f}" if tps else "n/a", deadline.elapsed(), left)


def score_model(model: OpenModel, rows: list[int], deadline: Deadline, run: ScoringSettings,
                max_chunks: int | None = None, progress: Callable = log_progress) -> None:
    """Score ``model``'s rows not yet processed, chunk by chunk while the deadline allows (at most ``max_chunks``).

    A vLLM engine that fails here hands this chunk and the rest to transformers. ``progress(model, done, total,
    deadline)`` runs after each chunk (default: :func:`log_progress`).
    """
    rows = [i for i in rows if i not in model.processed]
    total = len(model.processed) + len(rows)
    lengths = model.rendered.lengths
    chunk_tokens = run.chunk_tokens or defaults.CHUNK_TOKENS[device_kind(model.engine.device)]
    texts = model.rendered.prompts if run.prefix_sharing else None
    for chunk in plan_chunks(rows, lengths, chunk_tokens, texts)[:max_chunks]:
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
        progress(model, len(model.processed), total, deadline)


def _score_chunk(model: OpenModel, chunk: list[int]):
    """The label logits for one chunk of rows, or (generative judge) each row's texts: one greedy, or sampled."""
    ids = model.rendered.ids(chunk)
    if not model.generate:
        return model.engine.label_logits(ids)
    sampling = model.sampling
    if sampling is None:
        return [[text] for text in model.engine.generate_texts(ids, defaults.GENERATE_MAX_NEW_TOKENS)]
    return model.engine.sample_texts(ids, sampling.max_new_tokens, sampling.samples, sampling.temperature,
                                     sampling.seed)


def _store_chunk(model: OpenModel, chunk: list[int], out) -> None:
    """Label probabilities for the chunk's rows (renormalised over each rubric), or the scores a judge wrote (one
    text: that score; several: their distribution; none allowed: unscored)."""
    rubrics = [model.rendered.sections[i].allowed for i in chunk]
    if model.generate:
        probs = probabilities_from_texts(out, rubrics, model.labels)
        model.probs[chunk] = probs
        model.scored[chunk] = probs.sum(axis=1) > 0
        return
    good = finite_rows(out, rubrics, model.labels)
    model.probs[chunk] = probabilities_from_label_logits(out, rubrics, model.labels)
    model.scored[chunk] = good
    if not good.all():
        model.non_finite.update(i for i, g in zip(chunk, good, strict=True) if not g)
        log.warning("%s: %d of %d rows gave NaN or infinite label logits; they get the prior",
                    display_name(model.candidate.path), int((~good).sum()), len(chunk))


# -- the one public call -------------------------------------------------------------------------------------------
def score_prompts(model_dir: str | Path, prompts, settings: ScoringSettings | None = None, *,
                  deadline: Deadline | None = None, sampling: Sampling | None = None,
                  progress: Callable = log_progress) -> OpenModel:
    """Score ``prompts`` (a sequence of str) with the model in ``model_dir``, exactly as the runtime scores a row.

    Returns the :class:`OpenModel`, its engine closed: ``probs`` [N, 5] (LABELS order, renormalised over each
    prompt's rubric), ``scored`` (False: empty prompt, NaN/inf logits, a judge that named no allowed score, no
    time left; those rows are zeros), ``rendered.sections`` (allowed labels, family), the engine and why
    (``engine.name``, ``engine_reason``, ``engine_fallback``). No ``deadline``: no time limit. A free-text judge
    (``judge.json`` mode ``generate``) writes one greedy verdict per row, or ``sampling.samples`` sampled ones.
    :class:`ModelLoadError` when the model does not load; errors while scoring raise as they are.
    """
    settings = settings or ScoringSettings()
    prompts = list(prompts)
    candidate = Candidate(Path(model_dir), read_report(Path(model_dir)))
    try:
        labels = candidate.labels  # a 0-4 judge reads its rows with 4 allowed where the rubric states it
    except ValueError as error:
        raise ModelLoadError(f"ValueError: {error}") from error
    rows = ContestRows.parse({"id": [str(i) for i in range(len(prompts))], "prompt": prompts}, labels)
    try:
        factor = sampling.samples if sampling is not None and candidate.mode == "generate" else 1
        model = open_model(candidate, rows, settings, tokens_factor=factor, sampling=sampling)
    except Exception as error:  # noqa: BLE001 - whatever stops the load is reported as one line, with its cause
        first_line = (str(error).strip().splitlines() or [""])[0]
        raise ModelLoadError(f"{type(error).__name__}: {first_line}") from error
    try:
        score_model(model, rows.to_score, deadline or Deadline(math.inf), settings, progress=progress)
    finally:
        model.engine.close()
    return model
