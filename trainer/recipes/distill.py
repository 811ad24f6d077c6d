"""Soft labels from a bigger judge: the teacher's probability of each score the rubric allows, per row id.

    python -m trainer distill --teacher runs/demo/merged --data data/synth/train.csv --out soft_labels.csv
    python -m trainer distill --teacher models/cot-judge --data unlabelled.csv --out soft.csv --samples 8

The teacher runs through the runtime's own path (:func:`submission.scoring.scorer.score_prompts`: renderer, engine choice
vLLM on a GPU / transformers elsewhere, vLLM -> transformers fallback), rendered with the TEACHER's tokenizer:
labels are scores, not token ids, so teacher and student may tokenise differently. A scoring teacher gives its
label distribution renormalised over the rubric (one forward); a free-text teacher (``judge.json``
``{"mode": "generate"}``) gives the empirical distribution of ``samples`` sampled verdicts.

Training reads the file with ``soft_labels: PATH`` (trainer/training/config.py); the loss is in trainer/training/losses.py.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from submission.scoring.probabilities import PROBABILITY_COLUMNS, write_probabilities

log = logging.getLogger("trainer.recipes.distill")


def _progress(total: int, desc: str):
    """A tqdm bar on a TTY; elsewhere a log line per update (STYLE: one honest progress line)."""
    from tqdm.auto import tqdm

    if sys.stderr.isatty():
        return tqdm(total=total, desc=desc, unit="row", file=sys.stderr, dynamic_ncols=True)

    class Lines:
        n = 0

        def update(self, k: int) -> None:
            self.n += k
            log.info("%s: %d/%d rows", desc, self.n, total)

        def close(self) -> None:
            pass

    return Lines()


class TeacherError(ValueError):
    """The teacher folder cannot be used (not a model folder, malformed JSON, weights or config that do not load)."""


def teacher_probabilities(
    teacher_dir: str | Path,
    prompts: list[str],
    engine: str = "auto",
    device: str | None = None,
    max_tokens: int | None = None,
    samples: int = 8,
    temperature: float = 1.0,
    seed: int = 0,
    max_new_tokens: int | None = None,
    tensor_parallel_size: int = 1,
    prefix_sharing: bool = True,
) -> tuple[np.ndarray, str]:
    """([N, 5] teacher probabilities over LABELS, zero outside each rubric; the teacher's mode).

    A free-text teacher's row where no sample names an allowed score is all zeros (the caller leaves it out).
    ``tensor_parallel_size`` > 1 splits a vLLM teacher over that many GPUs (no transformers fallback then);
    ``prefix_sharing`` False scores every row on its own (the runtime's ``--no-prefix-sharing``).
    :class:`TeacherError` (one line) when the teacher folder is unusable or does not load.
    """
    from submission.choice.autopick import artefact_problem, model_dir_problem
    from submission.runtime import settings
    from submission.scoring.scorer import ModelLoadError, Sampling, ScoringSettings, score_prompts

    teacher_dir = Path(teacher_dir)
    problem = model_dir_problem(teacher_dir) or artefact_problem(teacher_dir, settings.DEFAULT_METRIC)
    if problem:
        raise TeacherError(problem)
    scoring = ScoringSettings(engine=engine, device=device, max_tokens=max_tokens or settings.MAX_PROMPT_TOKENS,
                              tensor_parallel_size=tensor_parallel_size, prefix_sharing=prefix_sharing)
    sampling = Sampling(samples, temperature, seed, max_new_tokens or settings.GENERATE_MAX_NEW_TOKENS)
    bar = None

    def progress(model, done: int, total: int, deadline) -> None:
        nonlocal bar
        bar = bar or _progress(total, f"teacher ({model.candidate.mode})")
        bar.update(done - bar.n)

    try:
        # The runtime's own path: renderer, engine choice, chunks, vLLM -> transformers fallback, NaN rows unscored.
        model = score_prompts(teacher_dir, prompts, scoring, sampling=sampling, progress=progress)
    except ModelLoadError as error:  # a corrupt teacher (config, weights, tokenizer) is the user's to fix
        raise TeacherError(f"{teacher_dir}: the teacher does not load ({error})") from error
    finally:
        if bar is not None:
            bar.close()
    log.info("teacher %s: mode %s, engine %s (%s); prompt tokens %d computed of %d submitted", teacher_dir,
             model.candidate.mode, model.engine.name, model.engine_fallback or model.engine_reason,
             model.tokens_computed, model.tokens_scored)
    return model.probs, model.candidate.mode


def soft_label_frame(ids, probs: np.ndarray) -> pd.DataFrame:
    """``id,p_-1,p_0,p_1,p_2,p_3`` for the rows with any probability mass (the others are left out)."""
    probs = np.asarray(probs, dtype=np.float64)
    kept = probs.sum(axis=1) > 0
    frame = pd.DataFrame(probs[kept], columns=list(PROBABILITY_COLUMNS))
    frame.insert(0, "id", np.asarray(list(ids), dtype=object)[kept])
    return frame


def write_soft_labels(path: str | Path, soft: pd.DataFrame) -> Path:
    """Write :func:`soft_label_frame` output with the runtime's own writer (submission/scoring/probabilities.py)."""
    return write_probabilities(path, soft["id"].tolist(), soft[list(PROBABILITY_COLUMNS)].to_numpy(dtype=np.float64))


def read_soft_labels(path: str | Path) -> pd.DataFrame:
    """The distill output, checked: columns ``id,p_-1..p_3``, unique ids, non-negative rows summing to 1."""
    from submission.data import DataError

    path = Path(path)
    if not path.is_file():
        raise DataError(f"soft_labels {path}: file not found")
    from trainer.data.split import read_id_csv

    frame = read_id_csv(path, encoding="utf-8-sig")
    missing = [c for c in ("id", *PROBABILITY_COLUMNS) if c not in frame.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)}; expected id,{','.join(PROBABILITY_COLUMNS)}")
    if frame["id"].duplicated().any():
        raise DataError(f"{path}: duplicate id {frame.loc[frame['id'].duplicated(), 'id'].iloc[0]!r}")
    values = frame[list(PROBABILITY_COLUMNS)].to_numpy(dtype=np.float64)
    bad = ~np.isfinite(values).all(axis=1) | (values < 0).any(axis=1) | (np.abs(values.sum(axis=1) - 1) > 1e-4)
    if bad.any():
        row = int(bad.argmax())
        raise DataError(f"{path}: row {row + 1} (id {frame['id'].iloc[row]!r}): probabilities must be >= 0 and sum to 1")
    return frame[["id", *PROBABILITY_COLUMNS]]


def read_gold_rows(train_path: str | Path) -> pd.DataFrame:
    """The rows of a train CSV that carry a gold score (others, soft-label-only rows, are dropped), score as int."""
    from submission.data import read_train_csv_maybe_unlabelled

    frame = read_train_csv_maybe_unlabelled(train_path)
    frame = frame[frame["score"].notna()].reset_index(drop=True)
    return frame.assign(score=frame["score"].astype(int))


def read_rows_with_soft_labels(train_path: str | Path, soft_path: str | Path) -> pd.DataFrame:
    """Train rows (``score`` may be empty) joined with their soft labels by id: id, prompt, score (float, NaN where
    unlabelled), p_-1..p_3 (NaN where the teacher gave none). A row with neither is an error."""
    from submission.data import DataError, read_train_csv_maybe_unlabelled

    frame = read_train_csv_maybe_unlabelled(train_path)
    soft = read_soft_labels(soft_path)
    frame = frame.merge(soft, on="id", how="left")
    orphan = frame["score"].isna() & frame[PROBABILITY_COLUMNS[0]].isna()
    if orphan.any():
        row = int(orphan.to_numpy().argmax())
        raise DataError(f"{train_path}: row {row + 1} (id {frame['id'].iloc[row]!r}) has no score and no soft label "
                        f"in {soft_path}")
    unknown = set(soft["id"]) - set(frame["id"])
    if unknown:
        log.warning("%s: %d soft-label ids are not in %s (ignored)", soft_path, len(unknown), train_path)
    return frame


def attach_soft_labels(frame: pd.DataFrame, soft: pd.DataFrame) -> pd.DataFrame:
    """Soft-label columns for rows built after the join (augmented copies): a label-preserving copy
    (trainer/data/augment.py: LABEL_PRESERVING_SUFFIXES) takes its source row's distribution; other new rows (hard negatives) get none."""
    from trainer.data.augment import keeps_source_label, source_id

    lookup = soft.set_index("id")[list(PROBABILITY_COLUMNS)]
    sources = [source_id(i) if keeps_source_label(i) else None for i in frame["id"]]
    values = np.full((len(frame), len(PROBABILITY_COLUMNS)), np.nan)
    for i, key in enumerate(sources):
        if key is not None and key in lookup.index:
            values[i] = lookup.loc[key].to_numpy()
    out = frame.drop(columns=[c for c in PROBABILITY_COLUMNS if c in frame.columns])
    return pd.concat([out.reset_index(drop=True), pd.DataFrame(values, columns=list(PROBABILITY_COLUMNS))], axis=1)
