"""Test CSV -> validated predictions CSV: pick model(s), score them against a deadline, blend, decide, write.

This is the orchestration behind ``run.py``; :func:`predict` reads top to bottom as its named steps. The pieces it
calls live in their own modules: model ranking (autopick.py), scoring one model (scorer.py: engine choice and
fallbacks, chunks against the deadline), priors, the meta schema (run_meta.py). Row-level trouble (an empty or
unparseable prompt, no time left, a generative judge that wrote no score, NaN or infinite logits) is scored by a
prior and counted in the meta file; file-level trouble raises :class:`submission.data.DataError` or
FileNotFoundError. SIGTERM or SIGINT at any moment, while models are planned, loaded, started or scoring, stops
the work and still gives a complete file.

Why this module is over ~400 lines: the steps share three pieces of state, the model plan, the :class:`Scoring`
record (kept when a signal cuts the run short) and the deadline, and the meta file is built from all three. Model
planning, the ensemble strategy, signals and the meta stay together so one run reads in one file.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from submission.choice.autopick import (
    Candidate,
    Ensemble,
    artefact_problem,
    auto_ensemble,
    candidate_model_dirs,
    display_name,
    ensemble_path,
    log_collapsed,
    model_dir_problem,
    one_label_set,
    pick_reason,
    rank_candidates,
    read_ensemble,
    read_report,
)
from submission.data import DataError, validate_predictions
from submission.runtime import settings as defaults
from submission.runtime.run_meta import EnsembleMeta, SkippedModel
from submission.scoring.decoding import LABELS, Decision, decide
from submission.scoring.priors import ClassPrior
from submission.scoring.scorer import (  # noqa: F401 - the scoring names stay importable from here (public since before)
    ContestRows,
    Deadline,
    OpenModel,
    ScoringSettings,
    choose_engine,
    close_engines,
    log_progress,
    measured_throughput,
    open_model,
    plan_chunks,
    score_model,
)

log = logging.getLogger(__name__)

from submission.runtime.outputs import describe_run, write_outputs  # noqa: E402,F401 - the run's outputs

MODEL_DIR_ENV = "AIJ_MODEL_DIR"
BUNDLE_ROOT = Path(__file__).resolve().parents[2]


@dataclass
class RunSettings(ScoringSettings):
    """What one prediction run does: which models, the time limit, the metric, plus how each model scores
    (:class:`submission.scoring.scorer.ScoringSettings`: engine, device, max_tokens, token_budget, enforce_eager,
    chunk_tokens); every field has a default that works."""

    model_dir: Path | None = None  # explicit single model (also $AIJ_MODEL_DIR): no ranking, no ensemble
    models: Path | None = None  # where to look for model folders / ensemble.json
    time_limit_s: float = defaults.DEFAULT_TIME_LIMIT_S
    metric: str = defaults.DEFAULT_METRIC
    ensemble: bool = True


@dataclass
class RunResult:
    """Scores plus everything the meta file reports (``meta``: :meth:`RunMeta.to_dict`)."""

    ids: list[str]
    scores: list[int]
    probabilities: np.ndarray
    meta: dict = field(default_factory=dict)
    labels: tuple[int, ...] = LABELS  # the columns of ``probabilities`` (a 0-4 judge's run: -1..4)


class Interrupted(BaseException):
    """Raised from the SIGTERM/SIGINT handler; BaseException so engine code that catches Exception lets it through."""


class NonFiniteScores(RuntimeError):
    """A model whose label logits were NaN or infinite on every row it scored (e.g. fp16 overflow): skipped."""


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
    log_collapsed(ranked)
    return ModelPlan(ranked, ensemble, f"ensemble of {ensemble.reason}; single-model fallback: {reason}" if ensemble else reason,
                     skipped)


@contextmanager
def signals_interrupt(deadline: Deadline):
    """While inside, SIGTERM and SIGINT are recorded on the deadline (``interrupted``); while
    ``deadline.raise_on_signal`` (models loading and scoring) the first one also raises :class:`Interrupted`, so the
    run stops and writes what it has. Later signals are only recorded: they cannot cut the writing short. Main
    thread only (elsewhere a no-op). On the way out each signal gets back the handler it had before.

    A SIGINT that was ignored when the block started (a background job of a non-interactive shell, ``make test &``,
    ``nohup``-style parents) stays ignored, as Python itself leaves it: Ctrl-C was never meant to reach this run."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        if deadline.interrupted is None:
            deadline.interrupted = signal.Signals(signum).name
        if deadline.raise_on_signal:
            deadline.raise_on_signal = False
            raise Interrupted()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)
                if not (sig == signal.SIGINT and signal.getsignal(sig) == signal.SIG_IGN)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


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
            labels, dropped = one_label_set(plan.ranked, plan.ensemble)  # one judge label range per run
            plan.skipped += [SkippedModel(path, why) for path, why in dropped]
            rows = rows.with_labels(labels)
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
        validate_predictions(rows.ids, scores, rows.stated, rows.labels)  # the prompt's own text, read independently
        meta = describe_run(run, rows, plan, scoring, decision, scores, fallback, prior, deadline, started)
    return RunResult(rows.ids, scores, probabilities, meta.to_dict(), rows.labels)


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


def blend_with_prior(opened: list[OpenModel], rows: ContestRows, prior: ClassPrior) -> tuple[np.ndarray, np.ndarray]:
    """Weighted mean of the members' probabilities over the members that scored each row; the prior for rows none
    scored. Returns the probabilities and the mask of those fallback rows."""
    total = np.zeros((len(rows), len(rows.labels)))
    weight_sum = np.zeros(len(rows))
    for model in opened:
        total[model.scored] += model.weight * model.probs[model.scored]
        weight_sum[model.scored] += model.weight
    scored = weight_sum > 0
    total[scored] /= weight_sum[scored, None]
    for i in np.flatnonzero(~scored):
        total[i] = prior.probabilities(rows.sections[i].criterion, rows.allowed[i], rows.labels)
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
    scores = decide(probabilities, rows.allowed, decision, rows.labels)
    for i in np.flatnonzero(fallback):
        scores[i] = prior.score(rows.sections[i].criterion, rows.allowed[i], rows.labels)
    return scores
