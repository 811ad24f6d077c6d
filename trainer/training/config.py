"""Training configuration: one validated pydantic model, presets as YAML in ``trainer/configs/``.

    python -m trainer train --experiment 1 --train-path train.csv --base-model Qwen/Qwen3-0.6B --output-dir runs --dry-run
    python -m trainer train --experiment demo ... --set max_steps=100 --set learning_rate=1e-3

Resolution order: preset YAML, then ``--config`` YAML, then ``--set key=value`` (values parsed as YAML scalars, so
``1e-3`` is a float and ``true`` a bool), then the command-line paths. Every layer is validated by :class:`TrainConfig`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, NamedTuple

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"


class Preset(NamedTuple):
    """One ``--experiment`` value: its YAML in ``trainer/configs/`` and what it is, for ``--help``."""

    file: str  # trainer/configs/<file>.yaml; also the preset's ``name``, the default run name
    summary: str
    compared: bool = True  # one of the runs ``--experiment all`` trains and compares


# Every preset, by its --experiment value: the one list the CLI's choices and help are made from.
EXPERIMENTS: dict[str, Preset] = {
    "1": Preset("exp1_lora", "LoRA baseline"),
    "2": Preset("exp2_balanced", "class-balanced LoRA"),
    "3": Preset("exp3_full", "full fine-tune"),
    "4": Preset("exp4_enhanced", "enhanced LoRA"),
    "demo": Preset("demo", "LoRA + embeddings on the tiny CPU model", compared=False),
}
ALL_EXPERIMENTS = "all"  # --experiment all: every compared preset in turn, then one comparison table
COMPARED_EXPERIMENTS: tuple[str, ...] = tuple(key for key, preset in EXPERIMENTS.items() if preset.compared)


def presets_help(with_all: bool = False) -> str:
    """``1=LoRA baseline, 2=..., demo=...``: what each --experiment value is; ``with_all``: and what ``all`` runs."""
    text = ", ".join(f"{key}={preset.summary}" for key, preset in EXPERIMENTS.items())
    if with_all:
        text += f"; {ALL_EXPERIMENTS}={'+'.join(COMPARED_EXPERIMENTS)} in turn, then a comparison table"
    return text


class ConfigError(ValueError):
    """A user-fixable configuration problem; the message is one line."""


class TrainConfig(BaseModel):
    """Everything one training run needs; saved resolved in ``training_config.json``."""

    # allow_inf_nan=False: ``epochs: .inf`` or ``learning_rate: nan`` is a setting error, not a run that never ends.
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    name: str = "run"
    base_model: str = ""
    train_path: str = ""
    output_dir: str = "runs"
    run_name: str | None = None

    method: Literal["lora", "qlora", "full"] = "lora"
    backend: Literal["auto", "peft", "unsloth"] = "auto"
    lora_r: int = Field(16, ge=1)
    lora_alpha: int = Field(32, ge=1)
    lora_dropout: float = Field(0.0, ge=0.0, lt=1.0)
    target_modules: list[str] = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    modules_to_save: list[str] = []

    learning_rate: float = Field(2e-4, gt=0)
    epochs: float = Field(3.0, gt=0)
    max_steps: int = -1  # > 0 overrides epochs
    batch_size: int = Field(8, ge=1)
    grad_accum: int = Field(1, ge=1)
    scheduler: Literal["linear", "cosine", "cosine_with_min_lr", "constant", "constant_with_warmup"] = "linear"
    min_lr_ratio: float = Field(0.0, ge=0.0, le=1.0)  # floor for cosine_with_min_lr
    # < 1: transformers reads warmup_steps >= 1 as a step count, so a ratio of 1.0 silently became ONE warm-up step
    warmup_ratio: float = Field(0.0, ge=0.0, lt=1.0)
    weight_decay: float = Field(0.0, ge=0.0)
    max_grad_norm: float = Field(1.0, gt=0)
    max_tokens: int = Field(2048, ge=64)

    balance: Literal["none", "oversample", "class_weights"] = "none"
    augment: bool = False  # label-preserving variants + hard negatives of the TRAIN split (trainer/data/augment.py)
    augment_copies: int = Field(1, ge=0)
    hard_negatives: bool = True
    # Adds this share (of the train split's size) of rows labelled -1: a train row's task + answer with a criterion and
    # scale of another task family (trainer/data/augment.py); validation gets the same from its own rows to fit the P(-1)
    # threshold. 0 = off. For train data without -1 (the real split), else the judge can never say -1.
    augment_not_applicable: float = Field(0.0, ge=0.0, le=1.0)
    curriculum: bool = False  # train easy -> hard (base model's loss on the target), no shuffling
    reference_dropout: float = Field(0.0, ge=0.0, le=1.0)  # share of train rows copied without the reference
    val_fraction: float = Field(0.1, gt=0.0, lt=1.0)  # with split_by: the share of GROUPS held out
    split_by: Literal["none", "criterion", "family"] = "none"  # validation/k-fold on unseen criteria or families
    # Distillation (trainer/recipes/distill.py writes the file): alpha * KL(teacher || student) + (1 - alpha) * CE on gold.
    soft_labels: str | None = None  # CSV id,p_-1,p_0,p_1,p_2,p_3; rows of the train CSV without a score train on it alone
    distill_alpha: float = Field(0.5, ge=0.0, le=1.0)
    # ce: cross-entropy on the score tokens; ce_mse adds mse_weight * (expected score over 0..3 - gold)^2 (RAFT).
    loss: Literal["ce", "ce_mse"] = "ce"
    mse_weight: float = Field(1.0, ge=0.0)
    seed: int = Field(42, ge=0, le=2**32 - 1)  # numpy's and torch's seed range
    metric: str = "qwk"  # selection metric for thresholds and `report` (submission.choice.metrics.METRIC_NAMES)

    # Learning curve every N optimizer steps (train loss, train-sample accuracy, validation accuracy/QWK, predicted
    # classes; trainer/evaluation/learning_curve.py). 0 = off on the LM path; the judge head records ~10 points when 0.
    curve_steps: int = Field(0, ge=0)
    # Judge head (trainer/training/judge_head.py): a classifier on layer judge_head_layer (0 = the best probe layer on
    # validation), the layers above dropped; the top judge_head_train_layers layers + norm + score head train on the
    # cached output of the frozen layers below. method/lora_* do not apply to it.
    judge_head: bool = False
    judge_head_layer: int = Field(0, ge=0)
    judge_head_train_layers: int = Field(4, ge=0)
    judge_head_init: Literal["probe", "zero"] = "probe"
    judge_head_score_lr: float | None = Field(None, gt=0)  # the score head's own lr (default: learning_rate)
    feature_cache: str | None = None  # folder of per-row frozen last-token states (probe), shared by runs and benches

    gradient_checkpointing: bool = False
    precision: Literal["auto", "bf16", "fp16", "fp32"] = "auto"
    logging_steps: int = Field(10, ge=1)
    save_steps: int = Field(200, ge=1)
    save_total_limit: int = Field(2, ge=1)
    wandb_project: str | None = None

    @field_validator("name", "run_name")
    @classmethod
    def _one_path_component(cls, value: str | None) -> str | None:
        if value is not None:
            check_run_name(value)
        return value

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, value: str) -> str:
        from submission.choice.metrics import METRIC_NAMES

        if value not in METRIC_NAMES:
            raise ValueError(f"unknown metric {value!r}; choose one of {', '.join(METRIC_NAMES)}")
        return value

    @property
    def is_lora(self) -> bool:
        return self.method in ("lora", "qlora")

    def resolved_run_name(self) -> str:
        return self.run_name or self.name

    def run_dir(self) -> Path:
        return Path(self.output_dir) / self.resolved_run_name()


def check_run_name(name: str) -> str:
    """``name`` when it is one safe folder name (the run folder is OUTPUT_DIR/NAME); ValueError saying why not.

    Refused: empty, ``.``/``..``, a path separator (nested or absolute names), control characters, a leading ``-``
    or ``.`` (an option or a hidden folder: the trainer keeps its own ``.NAME.*`` files beside the run folder).
    """
    if not name or name in (".", "..") or "/" in name or "\\" in name or name.startswith(("-", ".")) or \
            any(ord(c) < 32 or ord(c) == 127 for c in name) or len(name.encode("utf-8")) > 200:
        raise ValueError(f"run name {name!r} must be one folder name (no '/', '\\' or '..', not starting with "
                         "'.' or '-', at most 200 bytes), e.g. exp1_lora")
    return name


def _one_line(error: ValidationError) -> str:
    parts = []
    for item in error.errors():
        where = ".".join(str(p) for p in item["loc"]) or "config"
        parts.append(f"{where}: {item['msg']}")
    return "; ".join(parts)


def preset_path(experiment: str) -> Path:
    if experiment not in EXPERIMENTS:
        raise ConfigError(f"unknown experiment {experiment!r}; choose one of {', '.join(EXPERIMENTS)} or "
                          f"{ALL_EXPERIMENTS}")
    return CONFIG_DIR / f"{EXPERIMENTS[experiment].file}.yaml"


def read_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of settings at the top level")
    return data


def parse_overrides(pairs: list[str]) -> dict:
    """``["lr=1e-3", "modules_to_save=[embed_tokens]"]`` -> typed dict (values read as YAML scalars/lists)."""
    out = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {pair!r}: expected key=value")
        try:
            out[key.strip()] = yaml.safe_load(value) if value.strip() else None
        except yaml.YAMLError:
            out[key.strip()] = value
    return out


def build_config(layers: list[dict]) -> TrainConfig:
    """Merge setting dicts left to right and validate; unknown keys and bad values raise ConfigError."""
    merged: dict = {}
    for layer in layers:
        merged.update(layer)
    try:
        return TrainConfig(**merged)
    except ValidationError as err:
        raise ConfigError(_one_line(err)) from None


def resolve_config(
    experiment: str, config_path: str | Path | None = None, overrides: list[str] | None = None, **paths
) -> TrainConfig:
    """Preset -> --config -> --set -> explicit paths (``train_path``, ``base_model``, ``output_dir``, ``run_name``)."""
    layers = [read_yaml(preset_path(experiment))]
    if config_path:
        layers.append(read_yaml(config_path))
    layers.append(parse_overrides(overrides or []))
    layers.append({k: v for k, v in paths.items() if v is not None})
    return build_config(layers)
