"""The schema of ``predictions_meta.json``: what a run did and why (README "Meta file" documents every field).

:class:`RunMeta` is built in one place (``runtime.describe_run``) and written beside the predictions; ``from_dict``
reads a meta file back and refuses one whose keys are not these.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path


@dataclass
class SkippedModel:
    """A model folder that did not load (the run went on without it)."""

    path: str
    error: str


@dataclass
class EnsembleMeta:
    """The ensemble that was considered: where it came from, its members, and whether it ran (``strategy``)."""

    source: str  # the ensemble.json path, or "auto" (equally good reports)
    reason: str
    members: list[str]
    weights: list[float]
    first_chunk_tokens_per_s: float | None
    strategy: str  # "ensemble" (ran) or "single" (did not fit the time left, or members did not load)
    why: str
    # Members are scored one after another, each engine closed before the next loads: never two engines at once.
    engines_at_once: int = 1


@dataclass
class ModelMeta:
    """One model that scored rows; ``value`` is written under the run's metric name (e.g. ``"qwk": 0.61``)."""

    path: str
    weight: float
    metric: str
    value: float | None
    mode: str  # "score" or "generate"
    engine: str
    engine_fallback: str | None
    vllm_rows_before_failure: int | None

    def to_dict(self) -> dict:
        return {"path": self.path, "weight": self.weight, self.metric: self.value, "mode": self.mode,
                "engine": self.engine, "engine_fallback": self.engine_fallback,
                "vllm_rows_before_failure": self.vllm_rows_before_failure}

    @classmethod
    def from_dict(cls, data: dict, metric: str) -> ModelMeta:
        data = dict(data)
        value = data.pop(metric)
        return cls(metric=metric, value=value, **data)


@dataclass
class Timings:
    """Seconds: loading models, inside the engines, this run's total, and since the process started."""

    load: float
    engine: float
    total: float
    since_start: float


@dataclass
class RunMeta:
    """Everything ``predictions_meta.json`` holds, in file order. ``ensemble``/``ensemble_decision`` are left out of
    the file when no ensemble was considered."""

    rows: int
    choice_reason: str
    skipped_models: list[SkippedModel]
    metric: str
    time_limit_s: float
    ensemble: EnsembleMeta | None
    ensemble_decision: str | None
    models: list[ModelMeta]
    model_dirs: list[str]
    strategy: str  # "single", "ensemble" or "generate"
    engine: str  # the first model's engine at the end of the run
    engine_reason: str
    engine_fallback: str | None
    vllm_start_failures: list[str]
    device: str
    dtype: str  # the primary engine's weights dtype on that device
    engine_settings: dict  # vLLM: the start-up settings that started (max_model_len, KV cache, eager, ...); hf: {}
    decision: dict  # {"rule": "argmax" | "thresholds", "thresholds": [...]}
    tokens: int
    timings_s: Timings
    tokens_per_s: float
    score_distribution: dict[str, int]
    truncated_rows: int
    unparsed_rows: int
    fallback_rows: int
    fallback_reasons: dict[str, int]  # empty_prompt, deadline (or sigterm), no_score_in_text
    fallback_prior: str  # "report" or "rubric_middle"
    interrupted: str | None
    oom_splits: int
    # Prompt tokens the engines really computed (``tokens`` were submitted): shared prefixes count once, vLLM's
    # prefix-cache hits not at all; and whether rows sharing a prefix were grouped (``--no-prefix-sharing``: off).
    tokens_computed: int = 0
    prefix_sharing: bool = True
    labels: list[int] | None = None  # a 0-4 judge's run only (judge.json max_score 4): [-1, 0, 1, 2, 3, 4]

    def to_dict(self) -> dict:
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["skipped_models"] = [asdict(s) for s in self.skipped_models]
        data["models"] = [m.to_dict() for m in self.models]
        data["timings_s"] = asdict(self.timings_s)
        if self.ensemble is None:
            del data["ensemble"]
        else:
            data["ensemble"] = asdict(self.ensemble)
        if self.ensemble_decision is None:
            del data["ensemble_decision"]
        if self.labels is None:  # the contest's -1..3: the meta as it always was
            del data["labels"]
        return data

    @classmethod
    def from_dict(cls, data: dict) -> RunMeta:
        """A meta file's content back as RunMeta; TypeError when a key is missing or unknown."""
        data = {"ensemble": None, "ensemble_decision": None, **data}
        data["skipped_models"] = [SkippedModel(**s) for s in data["skipped_models"]]
        data["models"] = [ModelMeta.from_dict(m, data["metric"]) for m in data["models"]]
        data["timings_s"] = Timings(**data["timings_s"])
        if data["ensemble"] is not None:
            data["ensemble"] = EnsembleMeta(**data["ensemble"])
        return cls(**data)


def meta_path_for(pred_path: str | os.PathLike) -> Path:
    """``predictions.csv`` -> ``predictions_meta.json`` beside it."""
    pred_path = Path(pred_path)
    return pred_path.with_name(f"{pred_path.stem}_meta.json")
