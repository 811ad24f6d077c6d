"""One training run: split, encode with the shared renderer, train (LoRA or full), save, merge, evaluate.

The loss is response-only and computed only where labels are: the transformer body runs over the whole
sequence, but the 151,936-wide output head is applied just at the few positions that predict the score and
``<|im_end|>`` (DESIGN.md §5), which saves most of the memory and time of a default causal-LM loss.

Backends: Unsloth when CUDA is present and ``unsloth`` imports (trainer/backend_unsloth.py), else PEFT +
transformers' Trainer (every CPU path and test). Unsloth, bitsandbytes and xformers are never imported on CPU.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from trainer.config import TrainConfig, config_json

log = logging.getLogger(__name__)
SECRET_ENV = ("WANDB_API_KEY", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")


# -- data -------------------------------------------------------------------------------------------------------
def split_train_val(frame: pd.DataFrame, val_fraction: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Stratified by score when every score has at least two rows, else a plain seeded split."""
    from sklearn.model_selection import train_test_split

    counts = frame["score"].value_counts()
    stratify = frame["score"] if counts.min() >= 2 else None
    train, val = train_test_split(frame, test_size=val_fraction, random_state=seed, stratify=stratify)
    return train.reset_index(drop=True), val.reset_index(drop=True)


def oversample(frame: pd.DataFrame, seed: int) -> pd.DataFrame:
    """Repeat rows of rare scores until every score has as many rows as the most common one; drops nothing."""
    target = frame["score"].value_counts().max()
    rng = np.random.default_rng(seed)
    parts = [frame]
    for _, group in frame.groupby("score"):
        missing = target - len(group)
        if missing > 0:
            parts.append(group.iloc[rng.integers(0, len(group), size=missing)])
    return pd.concat(parts, ignore_index=True).sample(frac=1.0, random_state=seed).reset_index(drop=True)


def class_prior(frame: pd.DataFrame) -> dict:
    """Score distribution overall and per criterion (the runtime's fallback when it must guess)."""
    from submission.sections import parse_prompt

    def dist(scores: pd.Series) -> dict[str, float]:
        shares = scores.value_counts(normalize=True)
        return {str(k): round(float(v), 6) for k, v in sorted(shares.items())}

    criteria = frame["prompt"].map(lambda p: parse_prompt(p).criterion)
    return {
        "overall": dist(frame["score"]),
        "by_criterion": {c: dist(g["score"]) for c, g in frame.groupby(criteria) if c},
    }


def file_sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def provenance() -> dict:
    """Library versions and git SHA for training_config.json."""
    import peft
    import torch
    import transformers

    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        sha = None
    return {"python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__,
            "peft": peft.__version__, "git_sha": sha}


# -- model ------------------------------------------------------------------------------------------------------
def use_unsloth(config: TrainConfig) -> bool:
    """Unsloth only on CUDA and only when it imports; `backend: peft` forces the portable path."""
    import importlib.util

    import torch

    if config.backend == "peft" or not torch.cuda.is_available():
        return False
    return importlib.util.find_spec("unsloth") is not None or config.backend == "unsloth"


def load_for_training(config: TrainConfig, base_model: str):
    """(model, tokenizer) ready to train on the PEFT path: LoRA-wrapped or fully trainable."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base_model)
    cuda = torch.cuda.is_available()
    dtype = (torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16) if cuda else torch.float32
    kwargs = {"dtype": dtype, "use_safetensors": True, "trust_remote_code": False}
    if config.method == "qlora":
        if not cuda:
            raise RuntimeError("QLoRA (4-bit base) needs CUDA and bitsandbytes; use method lora on CPU")
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                                           bnb_4bit_compute_dtype=dtype)
    model = AutoModelForCausalLM.from_pretrained(base_model, **kwargs)
    if config.gradient_checkpointing:
        model.gradient_checkpointing_enable()
        model.config.use_cache = False
    if config.method == "full":
        return model, tokenizer
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                      target_modules=config.target_modules, modules_to_save=config.modules_to_save or None,
                      task_type="CAUSAL_LM")
    return get_peft_model(model, lora), tokenizer


def body_and_head(model):
    """The transformer body and the output head of a (possibly PEFT-wrapped, possibly DDP-wrapped) causal LM."""
    model = getattr(model, "module", model)
    if hasattr(model, "get_base_model"):
        model = model.get_base_model()
    return model.model, model.get_output_embeddings()


def label_position_loss(model, input_ids, attention_mask, labels, class_weights=None):
    """Cross-entropy over the labelled positions only; the head never sees unlabelled positions."""
    import torch

    body, head = body_and_head(model)
    hidden = body(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
    targets = labels[:, 1:]
    where = targets != -100
    logits = head(hidden[:, :-1][where]).float()
    weight = None
    if class_weights is not None:
        weight = torch.ones(logits.shape[-1], device=logits.device)
        for token_id, w in class_weights.items():
            weight[token_id] = w
    return torch.nn.functional.cross_entropy(logits, targets[where], weight=weight)


# -- the run ----------------------------------------------------------------------------------------------------
@dataclass
class EncodedRows:
    rows: list[dict]
    tokens: int
    truncated: int


def encode(renderer, frame: pd.DataFrame, max_tokens: int) -> EncodedRows:
    rows, tokens, truncated = [], 0, 0
    for prompt, score in zip(frame["prompt"], frame["score"], strict=True):
        example = renderer.training_example(prompt, int(score), max_tokens)
        rows.append({"input_ids": example.input_ids, "labels": example.labels})
        tokens += len(example.input_ids)
        truncated += example.truncated
    return EncodedRows(rows, tokens, truncated)


def write_json(path: Path, data) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False), encoding="utf-8")


def train_run(config: TrainConfig, train_path: Path, base_model: str, run_dir: Path, resume: bool = False,
              wandb_project: str | None = None) -> Path:
    """Train one config into ``run_dir`` (adapter/ for LoRA, merged/ for full FT); returns run_dir."""
    from submission.data import read_train_csv
    from submission.prompting import PromptRenderer

    run_dir.mkdir(parents=True, exist_ok=True)
    frame = read_train_csv(train_path)
    train, val = split_train_val(frame, config.val_fraction, config.seed)
    val.to_csv(run_dir / "val.csv", index=False)
    val[["id"]].to_csv(run_dir / "val_ids.csv", index=False)
    write_json(run_dir / "class_prior.json", class_prior(train))
    if config.balance == "oversample":
        train = oversample(train, config.seed)

    unsloth = use_unsloth(config)
    if unsloth:
        from trainer.backend_unsloth import load_unsloth_model

        model, tokenizer = load_unsloth_model(config, base_model)
    else:
        model, tokenizer = load_for_training(config, base_model)
    renderer = PromptRenderer(tokenizer, max_tokens=config.max_tokens)
    encoded = encode(renderer, train, config.max_tokens)
    record = {
        "config": config.model_dump(),
        "base_model": str(base_model),
        "train_path": str(train_path),
        "data_sha256": file_sha256(train_path),
        "rows": {"train": len(train), "val": len(val)},
        "truncated_train_rows": encoded.truncated,
        "backend": "unsloth" if unsloth else "peft",
        "versions": provenance(),
        "wandb_project": wandb_project,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    write_json(run_dir / "training_config.json", record)
    log.info("training %s: %d rows (%d tokens, %d shortened), backend %s\n%s", config.name, len(train),
             encoded.tokens, encoded.truncated, record["backend"], config_json(config))

    seconds = fit(model, tokenizer, encoded, config, run_dir, resume, wandb_project)
    record["train_seconds"] = round(seconds, 1)
    record["tokens_per_s"] = round(encoded.tokens * max(config.epochs, 1) / max(seconds, 1e-9), 1)
    write_json(run_dir / "training_config.json", record)

    if config.method == "full":
        from trainer.merge import save_merged

        save_merged(model, tokenizer, run_dir / "merged", config.merge_dtype)
    elif unsloth:
        from trainer.backend_unsloth import save_unsloth_merged

        model.save_pretrained(run_dir / "adapter")
        save_unsloth_merged(model, tokenizer, run_dir / "merged")
    else:
        model.save_pretrained(run_dir / "adapter", safe_serialization=True)
        tokenizer.save_pretrained(run_dir / "adapter")
    return run_dir


def fit(model, tokenizer, encoded: EncodedRows, config: TrainConfig, run_dir: Path, resume: bool,
        wandb_project: str | None) -> float:
    """transformers.Trainer with the label-position loss; on CUDA OOM halve the batch and double accumulation."""
    import torch
    from transformers import PrinterCallback, Trainer, TrainingArguments

    from submission.engine_hf import is_out_of_memory
    from trainer.progress import ProgressCallback

    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    def collate(rows):
        longest = max(len(r["input_ids"]) for r in rows)
        ids = torch.full((len(rows), longest), pad_id, dtype=torch.long)
        labels = torch.full((len(rows), longest), -100, dtype=torch.long)
        mask = torch.zeros((len(rows), longest), dtype=torch.long)
        for i, r in enumerate(rows):
            n = len(r["input_ids"])
            ids[i, :n], labels[i, :n], mask[i, :n] = torch.tensor(r["input_ids"]), torch.tensor(r["labels"]), 1
        return {"input_ids": ids, "labels": labels, "attention_mask": mask}

    class_weights = None
    if config.balance == "class_weights":
        first_targets = [next(t for t in r["labels"] if t != -100) for r in encoded.rows]
        counts = pd.Series(first_targets).value_counts()
        class_weights = {int(t): float(len(first_targets) / (len(counts) * c)) for t, c in counts.items()}

    class LabelPositionTrainer(Trainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            loss = label_position_loss(model, inputs["input_ids"], inputs["attention_mask"], inputs["labels"],
                                       class_weights)
            return (loss, None) if return_outputs else loss

    if wandb_project:
        os.environ.setdefault("WANDB_PROJECT", wandb_project)
    batch, accum = config.batch_size, config.grad_accum
    cuda = torch.cuda.is_available()
    while True:
        args = TrainingArguments(
            output_dir=str(run_dir / "checkpoints"),
            per_device_train_batch_size=batch,
            gradient_accumulation_steps=accum,
            learning_rate=config.learning_rate,
            num_train_epochs=config.epochs,
            max_steps=config.max_steps,
            lr_scheduler_type=config.scheduler,
            lr_scheduler_kwargs={"min_lr_rate": config.min_lr_ratio} if config.scheduler == "cosine_with_min_lr" else {},
            warmup_steps=config.warmup_ratio,
            weight_decay=config.weight_decay,
            logging_steps=config.logging_steps,
            save_strategy="steps" if config.save_steps else "no",
            save_steps=config.save_steps or 500,
            save_total_limit=2,
            seed=config.seed,
            bf16=cuda and torch.cuda.is_bf16_supported(),
            fp16=cuda and not torch.cuda.is_bf16_supported(),
            use_cpu=not cuda,
            report_to=["wandb"] if wandb_project else [],
            disable_tqdm=True,
            remove_unused_columns=False,
            dataloader_num_workers=0,
            ddp_find_unused_parameters=False,
        )
        trainer = LabelPositionTrainer(model=model, args=args, train_dataset=encoded.rows, data_collator=collate,
                                       callbacks=[ProgressCallback(run_dir / "metrics.jsonl", encoded, batch * accum)])
        trainer.remove_callback(PrinterCallback)  # our progress line replaces its raw dicts on stdout
        start = time.perf_counter()
        try:
            checkpoint = resume and any((run_dir / "checkpoints").glob("checkpoint-*"))
            trainer.train(resume_from_checkpoint=True if checkpoint else None)
            return time.perf_counter() - start
        except Exception as error:  # noqa: BLE001 - only OOM is retried
            if not (cuda and is_out_of_memory(error)) or batch == 1:
                raise
            torch.cuda.empty_cache()
            batch, accum = batch // 2, accum * 2
            log.warning("CUDA out of memory: retrying with per-device batch %d, gradient accumulation %d", batch, accum)
