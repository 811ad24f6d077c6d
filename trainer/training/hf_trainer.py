"""The transformers ``Trainer`` glue: tokenised rows, the left-padding collator, the Trainer subclass with the
objective's loss, the progress callback and the training arguments (the recipe that wires them: trainer/training/train.py;
the objective itself: trainer/training/losses.py).

transformers is imported inside the functions (the Trainer subclass is made by :func:`judge_trainer_class`), so
importing this module stays cheap.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time
from pathlib import Path

from trainer.training.config import TrainConfig
from trainer.training.rundir import RunDir

log = logging.getLogger("trainer.training.train")  # the recipe's logger (train.py): one name for a run's lines


class TrainingDiverged(RuntimeError):
    """The loss or the gradients stopped being finite (a learning rate far too high); the message is one line."""


# -- data -------------------------------------------------------------------------------------------------------
class ExampleDataset:
    """Tokenised rows: input_ids, labels and a per-row loss weight."""

    def __init__(self, rows: list[dict]):
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict:
        return self.rows[index]


def tokenise(frame, renderer, max_tokens: int, weights: dict[int, float] | None = None,
             labels: tuple[int, ...] | None = None) -> ExampleDataset:
    """Rows -> training examples from the runtime's own renderer (only score + end token carry labels).
    ``labels``: the judge's label set (LABELS; LABELS_0_4 for 0-4 data: masks and soft rows one column longer).

    A row without a score (soft label only) is its prompt alone: no labels, its answer position is the last token.
    Optional columns: ``p_-1``..``p_3`` (teacher's soft label), ``row_weight`` (multiplies the loss weight).
    """
    import math

    from submission.prompts.sections import parse_prompt
    from submission.scoring.decoding import LABELS, allowed_mask
    from submission.scoring.probabilities import PROBABILITY_COLUMNS
    from trainer.training.losses import NO_GOLD

    labels_set = labels or LABELS
    soft_columns = list(PROBABILITY_COLUMNS)
    has_soft_columns = all(c in frame.columns for c in soft_columns)
    rows = []
    for index, (prompt, score) in enumerate(zip(frame["prompt"], frame["score"], strict=True)):
        labelled = not (isinstance(score, float) and math.isnan(score))
        if labelled:
            example = renderer.training_example(prompt, int(score), max_tokens)
            input_ids, labels = example.input_ids, example.labels
        else:
            input_ids = renderer.render(prompt, max_tokens).input_ids
            labels = [-100] * len(input_ids)
        soft = [float(frame[c].iloc[index]) for c in soft_columns] if has_soft_columns else [math.nan] * len(labels_set)
        has_soft = not any(math.isnan(v) for v in soft)
        weight = float(weights.get(int(score), 1.0)) if weights and labelled else 1.0
        if "row_weight" in frame.columns:
            weight *= float(frame["row_weight"].iloc[index])
        rows.append({
            "input_ids": input_ids,
            "labels": labels,
            "weight": weight,
            # tokens after the answer position (the one whose next-token logits hold the label distribution)
            "answer_offset": sum(label != -100 for label in labels),
            "allowed": allowed_mask(parse_prompt(prompt, labels_set).allowed, labels_set).tolist(),
            "soft": soft if has_soft else [0.0] * len(labels_set),
            "has_soft": has_soft,
            "gold": int(score) if labelled else NO_GOLD,
        })
    return ExampleDataset(rows)


class LeftPadCollator:
    """Left-pads a batch (as the engine does) with position ids counting real tokens only."""

    def __init__(self, pad_id: int):
        self.pad_id = pad_id

    def __call__(self, rows: list[dict]) -> dict:
        import torch

        longest = max(len(r["input_ids"]) for r in rows)
        ids = torch.full((len(rows), longest), self.pad_id, dtype=torch.long)
        labels = torch.full((len(rows), longest), -100, dtype=torch.long)
        mask = torch.zeros((len(rows), longest), dtype=torch.long)
        for i, row in enumerate(rows):
            n = len(row["input_ids"])
            ids[i, longest - n :] = torch.as_tensor(row["input_ids"])
            labels[i, longest - n :] = torch.as_tensor(row["labels"])
            mask[i, longest - n :] = 1
        batch = {
            "input_ids": ids,
            "attention_mask": mask,
            "position_ids": (mask.cumsum(dim=1) - 1).clamp(min=0),
            "labels": labels,
            "weight": torch.tensor([r["weight"] for r in rows], dtype=torch.float32),
        }
        if all("answer_offset" in r for r in rows):
            batch.update({
                "answer_offset": torch.tensor([r["answer_offset"] for r in rows], dtype=torch.long),
                "allowed": torch.tensor([r["allowed"] for r in rows], dtype=torch.bool),
                "soft": torch.tensor([r["soft"] for r in rows], dtype=torch.float32),
                "has_soft": torch.tensor([r["has_soft"] for r in rows], dtype=torch.bool),
                "gold": torch.tensor([r["gold"] for r in rows], dtype=torch.long),
            })
        return batch


# -- trainer ----------------------------------------------------------------------------------------------------
def judge_trainer_class():
    """The ``transformers.Trainer`` subclass that trains with :func:`trainer.training.losses.labelled_loss`."""
    from transformers import Trainer

    class JudgeTrainer(Trainer):
        """transformers Trainer with the labelled-window loss; counts tokens for the progress line."""

        tokens_seen = 0

        def __init__(self, *args, objective=None, **kwargs):
            super().__init__(*args, **kwargs)
            self.objective = objective  # trainer/training/losses.py Objective, or None for plain cross-entropy
            self.step_rows = None
            # Our compute_loss consumes num_items_in_batch, so the Trainer must always count it and must never
            # divide by the accumulation steps itself (training_step skips that division exactly when this is True).
            self.model_accepts_loss_kwargs = True

        def get_batch_samples(self, epoch_iterator, num_batches, device):
            """The step's micro-batches; with row-level loss terms also their row counts (over all ranks)."""
            batches, num_items_in_batch = super().get_batch_samples(epoch_iterator, num_batches, device)
            if self.objective is not None and batches:
                import torch

                from trainer.training.losses import ROW_COUNTS, step_counts

                counts = step_counts(batches)
                if self.args.world_size > 1:
                    mine = torch.tensor([counts[name] for name in ROW_COUNTS], device=device)
                    total = self.accelerator.gather(mine).view(-1, len(ROW_COUNTS)).sum(dim=0)
                    counts.update({name: int(value) for name, value in zip(ROW_COUNTS, total, strict=True)})
                self.step_rows = counts
            return batches, num_items_in_batch

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            from trainer.training.losses import labelled_loss

            loss, tokens = labelled_loss(model, inputs, normaliser=num_items_in_batch, objective=self.objective,
                                         counts=self.step_rows if num_items_in_batch is not None else None)
            if num_items_in_batch is not None:
                # num_items_in_batch is the all-rank count (average_tokens_across_devices) while DDP averages the
                # ranks' gradients: undo that average so the step is the mean over every labelled token.
                loss = loss * self.accelerator.num_processes
            self.tokens_seen += int(tokens)
            if self.nonfinite_loss is None and not math.isfinite(float(loss.detach())):
                self.nonfinite_loss = float(loss.detach())  # raised before the optimizer step (all ranks agree there)
            return (loss, None) if return_outputs else loss

        nonfinite_loss = None

    return JudgeTrainer


def progress_callback(run: RunDir):
    """One honest progress line per logging step (tqdm on a TTY) and ``metrics.jsonl``; set ``.trainer`` after."""
    from transformers import TrainerCallback

    class ProgressCallback(TrainerCallback):
        """One tqdm line on a TTY (else a log line per logging step) and metrics.jsonl on the main process."""

        def __init__(self):
            self.bar = None
            self.start = time.perf_counter()
            self.trainer = None
            self.last = {}

        def on_train_begin(self, args, state, control, **kwargs):
            self.start = time.perf_counter()
            if state.is_world_process_zero and sys.stderr.isatty():
                from tqdm.auto import tqdm

                self.bar = tqdm(total=state.max_steps, initial=state.global_step, dynamic_ncols=True, file=sys.stderr)

        def on_step_end(self, args, state, control, **kwargs):
            if self.bar is not None:
                self.bar.update(state.global_step - self.bar.n)
                self.bar.set_postfix_str(self._line(state), refresh=False)

        def _line(self, state) -> str:
            elapsed = time.perf_counter() - self.start
            tokens = getattr(self.trainer, "tokens_seen", 0)
            tps = tokens / max(elapsed, 1e-9)
            loss, lr = self.last.get("loss"), self.last.get("learning_rate")
            loss_s = f"{loss:.4f}" if isinstance(loss, float) else "-"
            lr_s = f"{lr:.2e}" if isinstance(lr, float) else "-"
            return f"step {state.global_step}/{state.max_steps} | loss {loss_s} | lr {lr_s} | tok/s {tps:,.0f} | {elapsed:.0f}s"

        def on_log(self, args, state, control, logs=None, **kwargs):
            if not state.is_world_process_zero or not logs:
                return
            self.last.update({k: v for k, v in logs.items() if isinstance(v, (int, float))})
            elapsed = time.perf_counter() - self.start
            record = {"step": state.global_step, "epoch": state.epoch, **logs, "elapsed_s": round(elapsed, 3)}
            record["tokens_per_s"] = round(getattr(self.trainer, "tokens_seen", 0) / max(elapsed, 1e-9), 1)
            run.append_metrics(record)
            if self.bar is None:
                log.info(self._line(state))

        def on_train_end(self, args, state, control, **kwargs):
            if self.bar is not None:
                self.bar.close()

    return ProgressCallback()


def divergence_callback():
    """Stops training with :class:`TrainingDiverged` before an optimizer step on a non-finite loss or gradient.

    Checked where the gradients are synchronised (every DDP rank sees the same ones, so all stop together), before
    the weights are touched: no NaN weights get saved or merged. Set ``.trainer`` after adding it.
    """
    import torch
    from transformers import TrainerCallback

    class DivergenceGuard(TrainerCallback):
        trainer = None

        def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
            grads = [p.grad for p in (model or self.trainer.model).parameters() if p.grad is not None]
            finite_grads = all(bool(torch.isfinite(g).all()) for g in grads)
            loss = getattr(self.trainer, "nonfinite_loss", None)
            if finite_grads and loss is None:
                return
            what = f"loss {loss}" if loss is not None else "non-finite gradients"
            log.error("step %d/%d | loss %s | training diverged", state.global_step + 1, state.max_steps,
                      "nan" if loss is None else f"{loss:.4f}")
            raise TrainingDiverged(f"training diverged at step {state.global_step + 1} ({what}); nothing was saved "
                                   f"from it: lower learning_rate (now {args.learning_rate:g}) or max_grad_norm")

    return DivergenceGuard()


def training_arguments(config: TrainConfig, checkpoints: Path, precision: str, batch_size: int, grad_accum: int):
    """The ``TrainingArguments`` of one run at this batch split (the out-of-memory retry halves the batch)."""
    from transformers import TrainingArguments

    scheduler_kwargs = {"min_lr_rate": config.min_lr_ratio} if config.scheduler == "cosine_with_min_lr" else {}
    import torch

    report_to = ["wandb"] if config.wandb_project else []
    cpu = not torch.cuda.is_available()
    # On CPU, transformers only enters DDP with use_cpu + an explicit gloo backend (else each rank trains alone).
    distributed_cpu = {"use_cpu": True, "ddp_backend": "gloo"} if cpu and int(os.environ.get("WORLD_SIZE", "1")) > 1 else {}
    return TrainingArguments(
        **distributed_cpu,
        dataloader_pin_memory=not cpu,
        output_dir=str(checkpoints),
        per_device_train_batch_size=batch_size,
        gradient_accumulation_steps=grad_accum,
        learning_rate=config.learning_rate,
        num_train_epochs=config.epochs,
        max_steps=config.max_steps,
        lr_scheduler_type=config.scheduler,
        lr_scheduler_kwargs=scheduler_kwargs,
        warmup_steps=float(config.warmup_ratio),  # a float in [0, 1) is a ratio of the total steps
        weight_decay=config.weight_decay,
        max_grad_norm=config.max_grad_norm,
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        logging_steps=config.logging_steps,
        save_strategy="steps",
        save_steps=config.save_steps,
        save_total_limit=config.save_total_limit,
        seed=config.seed,
        data_seed=config.seed,
        report_to=report_to,
        run_name=config.resolved_run_name(),
        remove_unused_columns=False,
        disable_tqdm=True,
        train_sampling_strategy="sequential" if config.curriculum else "random",
        dataloader_num_workers=0,
        ddp_find_unused_parameters=False,
        logging_nan_inf_filter=False,  # a diverging run logs nan (the default would show the previous losses' mean)
        average_tokens_across_devices=True,  # num_items_in_batch = labelled tokens over all ranks (compute_loss)
    )
