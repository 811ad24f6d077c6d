"""Training configuration: a validated pydantic model, presets as YAML in trainer/configs/, `--set` overrides."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
EXPERIMENTS = {"1": "exp1_lora", "2": "exp2_balanced", "3": "exp3_full", "4": "exp4_enhanced", "demo": "demo"}


class ConfigError(ValueError):
    """A user-fixable configuration problem; the message is one line."""


class TrainConfig(BaseModel):
    """Everything one training run needs besides the data and the base model."""

    model_config = ConfigDict(extra="forbid")

    name: str
    method: Literal["lora", "qlora", "full"] = "lora"
    lora_r: int = Field(16, ge=1)
    lora_alpha: int = Field(32, ge=1)
    lora_dropout: float = Field(0.05, ge=0, lt=1)
    target_modules: str | list[str] = "all-linear"
    modules_to_save: list[str] = Field(default_factory=list)
    learning_rate: float = Field(2e-4, gt=0)
    epochs: float = Field(3, gt=0)
    max_steps: int = -1
    batch_size: int = Field(8, ge=1)
    grad_accum: int = Field(1, ge=1)
    max_tokens: int = Field(2048, ge=64)
    scheduler: Literal["linear", "cosine", "cosine_with_min_lr", "constant"] = "linear"
    min_lr_ratio: float = Field(0.0, ge=0, le=1)
    warmup_ratio: float = Field(0.0, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0)
    balance: Literal["none", "oversample", "class_weights"] = "none"
    val_fraction: float = Field(0.15, gt=0, lt=1)
    seed: int = 42
    gradient_checkpointing: bool = False
    backend: Literal["auto", "peft", "unsloth"] = "auto"
    metric: str = "qwk"
    logging_steps: int = Field(10, ge=1)
    save_steps: int = Field(0, ge=0)
    merge_dtype: Literal["float16", "bfloat16", "float32"] = "float16"

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, value: str) -> str:
        from submission.metrics import METRIC_NAMES

        if value not in METRIC_NAMES:
            raise ValueError(f"unknown metric {value!r}; choose one of {', '.join(METRIC_NAMES)}")
        return value


def _parse_override(item: str) -> tuple[str, object]:
    if "=" not in item:
        raise ConfigError(f"--set {item!r}: expected key=value")
    key, raw = item.split("=", 1)
    # YAML typing: 3e-3 -> float, true -> bool, [a, b] -> list, anything else stays a string.
    try:
        value = yaml.safe_load(raw) if raw else ""
    except yaml.YAMLError:
        value = raw
    if isinstance(value, str) and raw and raw[0].isdigit():
        try:
            value = float(raw)
        except ValueError:
            pass
    return key.strip(), value


def load_config(experiment: str, config_path: Path | None = None, overrides: list[str] | None = None) -> TrainConfig:
    """Preset for ``experiment`` (1-4, demo), then the YAML at ``config_path``, then ``key=value`` overrides."""
    if experiment not in EXPERIMENTS:
        raise ConfigError(f"unknown experiment {experiment!r}; choose one of {', '.join(EXPERIMENTS)} or all")
    data = yaml.safe_load((CONFIG_DIR / f"{EXPERIMENTS[experiment]}.yaml").read_text(encoding="utf-8"))
    if config_path is not None:
        if not Path(config_path).is_file():
            raise ConfigError(f"--config {config_path}: file not found")
        data.update(yaml.safe_load(Path(config_path).read_text(encoding="utf-8")) or {})
    for item in overrides or []:
        key, value = _parse_override(item)
        data[key] = value
    try:
        return TrainConfig(**data)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"config {where}: {first['msg']}") from None


def config_json(config: TrainConfig) -> str:
    return json.dumps(config.model_dump(), indent=2, ensure_ascii=False)
