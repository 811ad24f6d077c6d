"""One training run's folder: where each file lives and how its records are read and written.

    runs/<run name>/
      training_config.json    resolved config + provenance (written when training starts, updated when it ends)
      metrics.jsonl           one JSON line per logging step (main process only)
      val_ids.csv             the validation split, by id
      class_prior.json        score shares of the train split (the runtime's fallback for unscorable rows)
      checkpoints/            Trainer checkpoints (``--resume``)
      adapter/                LoRA adapters (LoRA runs)
      merged/                 fp16 safetensors + tokenizer + README.md + validation_report.json: what ships
      validation_report.json  the merged model's report on the validation rows (copied into merged/)
      val_predictions.csv     label probabilities per validation id (trainer/evaluation/evaluate.py:save_predictions)
      plots/                  confusion_matrix.png, loss_curve.png, reliability_diagram.png, score_distribution.png

train, merge, evaluate, report, advanced, bench and build/bundle.py reach these files only through :class:`RunDir`.
The two names the runtime reads too (``merged/``, ``validation_report.json``) are defined in submission/choice/autopick.py,
because the runtime must not import trainer/. Every JSON or text record goes through :func:`scrub_secrets`.
"""

from __future__ import annotations

import json
import os
import re
from contextlib import contextmanager
from pathlib import Path

from submission.choice.autopick import MERGED_DIR, VALIDATION_REPORT_NAME, read_report

SECRET_ENV = ("WANDB_API_KEY", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")
# Other variables whose name says they hold a secret (AWS_SECRET_ACCESS_KEY, OPENAI_API_KEY, GITHUB_TOKEN, ...); a
# whole underscore-separated word must match, so TOKENIZERS_PARALLELISM is not one.
SECRET_NAME = re.compile(r"(^|_)(TOKEN|SECRET|PASSWORD|PASSWD|API_?KEY|ACCESS_KEY|SECRET_KEY|PRIVATE_KEY|CREDENTIALS?"
                         r"|AUTH)($|_)", re.IGNORECASE)


def secret_env_values(environ=None) -> dict[str, str]:
    """Secret-named environment variables -> their values (SECRET_ENV from 4 characters, others from 8)."""
    environ = os.environ if environ is None else environ
    found = {}
    for name, value in environ.items():
        if (name in SECRET_ENV and len(value) >= 4) or (SECRET_NAME.search(name) and len(value) >= 8):
            found[name] = value
    return found


def scrub_secrets(text: str) -> str:
    """Replace the value of any secret environment variable found in ``text`` (defence in depth for logs/configs)."""
    for name, value in sorted(secret_env_values().items(), key=lambda item: -len(item[1])):
        text = text.replace(value, f"<{name}>")
    return text


def scrub_value(data):
    """``data`` (JSON-like) with :func:`scrub_secrets` applied to every string in it, keys included.

    Structured, not on the serialised text: a secret whose value is ``null``, ``true`` or ``2`` must not rewrite the
    JSON syntax around it.
    """
    if isinstance(data, str):
        return scrub_secrets(data)
    if isinstance(data, dict):
        return {scrub_value(k) if isinstance(k, str) else k: scrub_value(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [scrub_value(v) for v in data]
    return data


def write_json(path: Path, data) -> None:
    """Indented UTF-8 JSON with secrets scrubbed."""
    Path(path).write_text(json.dumps(scrub_value(data), ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


class RunDirError(ValueError):
    """A user-fixable problem with a run folder (another training holds it, a resume on other data); one line."""


class RunDir:
    """The folder of one training run (``runs/<name>``); paths are attributes, records are read/written by methods."""

    RECORD = "training_config.json"
    METRICS = "metrics.jsonl"
    VAL_IDS = "val_ids.csv"
    PRIOR = "class_prior.json"
    VAL_PREDICTIONS = "val_predictions.csv"
    CHECKPOINTS = "checkpoints"
    ADAPTER = "adapter"
    PLOTS = "plots"
    MODEL_CARD = "README.md"

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.record_path = self.path / self.RECORD
        self.metrics_path = self.path / self.METRICS
        self.val_ids_path = self.path / self.VAL_IDS
        self.prior_path = self.path / self.PRIOR
        self.val_predictions_path = self.path / self.VAL_PREDICTIONS
        self.checkpoints = self.path / self.CHECKPOINTS
        self.adapter = self.path / self.ADAPTER
        self.merged = self.path / MERGED_DIR
        self.report_path = self.path / VALIDATION_REPORT_NAME
        self.merged_report_path = self.merged / VALIDATION_REPORT_NAME
        self.model_card_path = self.merged / self.MODEL_CARD
        self.plots = self.path / self.PLOTS

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    def __fspath__(self) -> str:
        return str(self.path)

    @property
    def name(self) -> str:
        return self.path.name

    @classmethod
    def all_in(cls, runs_dir: str | Path) -> list[RunDir]:
        """The run folders directly under ``runs_dir`` (those with a training record), sorted by name; hidden ones
        (a training's ``.NAME.next`` in progress or left by a failure) are not runs."""
        return [cls(p.parent) for p in sorted(Path(runs_dir).glob(f"*/{cls.RECORD}")) if not p.parent.name.startswith(".")]

    @classmethod
    def of_model_dir(cls, model_dir: str | Path) -> RunDir | None:
        """The run whose ``merged/`` is ``model_dir`` (None for a model folder outside a run)."""
        model_dir = Path(model_dir)
        return cls(model_dir.parent) if model_dir.name == MERGED_DIR else None

    # -- writing a run: one writer, and a new run replaces the old one only once it has trained ---------------------
    def staging(self) -> RunDir:
        """Where a training writes before :meth:`replace_with` swaps it in: ``OUTPUT_DIR/.NAME.next`` (kept when
        the training fails, so the previous run stays as it was and ``--resume`` can continue the new one)."""
        return RunDir(self.path.parent / f".{self.name}.next")

    def replace_with(self, staged: RunDir) -> None:
        """Make ``staged`` this run folder: the old one is renamed aside, the new one renamed in, the old one deleted."""
        import shutil

        old = self.path.parent / f".{self.name}.old"
        shutil.rmtree(old, ignore_errors=True)
        if self.path.exists():
            self.path.rename(old)
        staged.path.rename(self.path)
        shutil.rmtree(old, ignore_errors=True)

    @contextmanager
    def lock(self):
        """Hold ``OUTPUT_DIR/.NAME.lock`` while inside; RunDirError at once when another process holds it.

        An advisory ``flock``: it goes with the process (a killed training leaves no stale lock), and a second
        training into the same run folder refuses instead of interleaving its files with the first one's.
        """
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock_path = self.path.parent / f".{self.name}.lock"
        handle = open(lock_path, "a+", encoding="utf-8")  # noqa: SIM115 - held open for the whole block
        try:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise RunDirError(f"{self.path}: another training is writing this run folder (lock {lock_path}); "
                                  "wait for it to finish or pick another --run-name") from None
            handle.seek(0)
            handle.truncate()
            handle.write(f"{os.getpid()}\n")
            handle.flush()
            yield self
        finally:
            handle.close()  # closing releases the flock

    # -- what is there ----------------------------------------------------------------------------------------------
    def is_run(self) -> bool:
        return self.record_path.is_file()

    def has_merged_weights(self) -> bool:
        return (self.merged / "config.json").is_file() and any(self.merged.glob("*.safetensors"))

    def has_adapter(self) -> bool:
        return self.adapter.is_dir()

    def has_checkpoint(self) -> bool:
        return any(self.checkpoints.glob("checkpoint-*"))

    def size_mb(self) -> float | None:
        """Size of ``merged/`` in MB (None when not merged)."""
        if not self.merged.is_dir():
            return None
        return sum(f.stat().st_size for f in self.merged.rglob("*") if f.is_file()) / 1e6

    # -- training_config.json ----------------------------------------------------------------------------------
    def read_record(self) -> dict:
        """The run record: ``config`` (resolved TrainConfig), backend, precision, versions, rows, steps, ..."""
        return json.loads(self.record_path.read_text(encoding="utf-8"))

    def config(self) -> dict:
        return self.read_record()["config"]

    def write_record(self, record: dict) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        write_json(self.record_path, record)

    def update_record(self, **fields) -> dict:
        """Add or replace top-level fields of the record; returns the record written."""
        record = {**self.read_record(), **fields}
        write_json(self.record_path, record)
        return record

    # -- metrics.jsonl -----------------------------------------------------------------------------------------
    def start_metrics(self) -> None:
        """An empty metrics log (a fresh run; a resumed run keeps appending)."""
        self.metrics_path.write_text("", encoding="utf-8")

    def append_metrics(self, record: dict) -> None:
        with open(self.metrics_path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(scrub_value(record)) + "\n")

    def read_metrics(self) -> list[dict]:
        if not self.metrics_path.is_file():
            return []
        lines = self.metrics_path.read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines if line.strip()]

    # -- split, prior, report, predictions ---------------------------------------------------------------------
    def write_val_ids(self, ids) -> None:
        """The validation split as a one-column ``id`` CSV."""
        import pandas as pd

        self.path.mkdir(parents=True, exist_ok=True)
        pd.DataFrame({"id": list(ids)}).to_csv(self.val_ids_path, index=False)

    def read_val_ids(self) -> set[str]:
        from trainer.data.split import read_id_csv

        return set(read_id_csv(self.val_ids_path)["id"])

    def write_prior(self, prior: dict) -> None:
        write_json(self.prior_path, prior)

    def read_prior(self) -> dict:
        return json.loads(self.prior_path.read_text(encoding="utf-8")) if self.prior_path.is_file() else {}

    def write_report(self, report: dict) -> None:
        """The validation report, beside the run and inside ``merged/`` (where the runtime ranks models by it)."""
        write_json(self.report_path, report)
        write_json(self.merged_report_path, report)

    def read_report(self) -> dict:
        """The merged model's report (``merged/`` first, then the run's copy); {} when not evaluated."""
        return read_report(self.merged) or read_report(self.path)
