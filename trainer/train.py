"""One training run: split, tokenise, train (response-only loss), save; then merge and evaluate (trainer/merge.py).

    python -m trainer train --experiment demo --train-path data/synth/train.csv --base-model runs/tiny --output-dir runs
    accelerate launch --num_processes 2 --cpu -m trainer train --experiment demo ...   # DDP (gloo on CPU)

Backend: Unsloth when CUDA is present and it imports (trainer/backend_unsloth.py), else PEFT + transformers Trainer.
Unsloth, bitsandbytes and xformers are only imported inside the CUDA branch.

Loss: batches are LEFT-padded (as the inference engine pads), so every row's target (score tokens + <|im_end|>) sits
at the end; the forward asks the model for logits at the last few positions only (``logits_to_keep``), i.e. the
lm_head runs only where labels are (plus at most a couple of masked slots), never over the 151k vocab x sequence.
Going through the model's own forward keeps DDP, PEFT and Unsloth wrappers in the loop. The loss is a mean per
labelled token over the whole optimizer step (all accumulated micro-batches on all ranks): each micro-batch's summed
loss is divided by the Trainer's ``num_items_in_batch``, so batch 8 x accumulation 1 and 2 x 4 give the same step.
"""

from __future__ import annotations

import logging
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from submission.hashing import file_sha256
from trainer.config import TrainConfig
from trainer.rundir import RunDir

log = logging.getLogger("trainer.train")


# -- provenance -------------------------------------------------------------------------------------------------
def library_versions() -> dict[str, str | None]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for name in ("torch", "transformers", "peft", "trl", "accelerate", "datasets", "unsloth"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def git_sha() -> str | None:
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, cwd=Path(__file__).parent
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() or None


# -- devices and precision --------------------------------------------------------------------------------------
def pick_precision(config: TrainConfig) -> str:
    import torch

    if config.precision != "auto":
        return config.precision
    if not torch.cuda.is_available():
        return "fp32"
    return "bf16" if torch.cuda.is_bf16_supported() else "fp16"


def torch_dtype(precision: str):
    import torch

    return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[precision]


def use_unsloth(config: TrainConfig) -> bool:
    if config.backend == "peft":
        return False
    import torch

    from trainer import backend_unsloth

    if not torch.cuda.is_available():
        # auto stays PEFT on the CPU; an explicit request runs Unsloth's CPU fallback (text LoRA / full FT).
        if config.backend == "unsloth":
            backend_unsloth.import_unsloth_on_cpu()
            return True
        return False

    ok = backend_unsloth.available()
    if config.backend == "unsloth" and not ok:
        raise RuntimeError("backend unsloth requested but `import unsloth` failed")
    return ok


# -- data -------------------------------------------------------------------------------------------------------
class ExampleDataset:
    """Tokenised rows: input_ids, labels and a per-row loss weight."""

    def __init__(self, rows: list[dict]):
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict:
        return self.rows[index]


def tokenise(frame, renderer, max_tokens: int, weights: dict[int, float] | None = None) -> ExampleDataset:
    """Rows -> training examples from the runtime's own renderer (only score + end token carry labels).

    A row without a score (soft label only) is its prompt alone: no labels, its answer position is the last token.
    Optional columns: ``p_-1``..``p_3`` (teacher's soft label), ``row_weight`` (multiplies the loss weight).
    """
    import math

    from submission.scoring import LABELS, allowed_mask
    from submission.sections import parse_prompt
    from trainer.losses import NO_GOLD

    soft_columns = [f"p_{label}" for label in LABELS]
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
        soft = [float(frame[c].iloc[index]) for c in soft_columns] if has_soft_columns else [math.nan] * len(LABELS)
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
            "allowed": allowed_mask(parse_prompt(prompt).allowed).tolist(),
            "soft": soft if has_soft else [0.0] * len(LABELS),
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


class LabelledWindow:
    """The model's logits over the trailing window that holds every labelled target of a left-padded batch.

    ``logits`` is ``[B, W, V]`` (float32), ``targets`` ``[B, W]`` with -100 where a position carries no label,
    ``row_weight`` ``[B]`` (class weights; 1.0 by default). Loss terms read this and return a per-token or per-row
    tensor; :func:`labelled_loss` sums the terms and divides by one normaliser.
    """

    def __init__(self, logits, targets, row_weight, kept_logits=None):
        self.logits, self.targets, self.row_weight = logits, targets, row_weight
        self.kept_logits = kept_logits  # [B, W + 1, V]: ``logits`` plus the last position (no target after it)

    def answer_label_logits(self, answer_offset, label_ids):
        """``[B, 5]`` label-token logits at each row's answer position, ``answer_offset`` tokens before the end
        (the position whose next token is the score: where the runtime reads the label distribution)."""
        import torch

        kept = self.kept_logits
        position = kept.shape[1] - 1 - answer_offset.to(kept.device)
        return kept[torch.arange(kept.shape[0], device=kept.device), position][:, label_ids].float()

    @property
    def labelled(self):
        """``[B, W]`` bool: where a target token is."""
        return self.targets != -100


def labelled_window(model, inputs: dict) -> LabelledWindow:
    """One forward through the model's own ``forward`` (DDP/PEFT/Unsloth stay in the loop), logits only at the end."""
    labels = inputs["labels"]
    targets = labels[:, 1:]  # position t predicts token t+1
    has_label = (targets != -100).any(dim=0)
    first = int(has_label.nonzero()[0]) if has_label.any() else targets.shape[1] - 1
    window = targets.shape[1] - first  # labelled target positions are within the last `window` of `targets`
    out = model(
        input_ids=inputs["input_ids"],
        attention_mask=inputs["attention_mask"],
        position_ids=inputs["position_ids"],
        logits_to_keep=window + 1,
        use_cache=False,
    )
    logits = out.logits[:, :-1, :].float()  # [B, window, V]: predictions for targets[:, first:]
    return LabelledWindow(logits, targets[:, first:], inputs["weight"].to(logits.device), out.logits)


def token_cross_entropy(window: LabelledWindow):
    """``[B, W]`` class-weighted cross-entropy of each labelled target token, 0 elsewhere."""
    import torch.nn.functional as F

    targets = window.targets
    token_loss = F.cross_entropy(
        window.logits.reshape(-1, window.logits.shape[-1]), targets.reshape(-1), ignore_index=-100, reduction="none"
    ).view_as(targets)
    return token_loss * window.row_weight.unsqueeze(1) * window.labelled


def labelled_loss(model, inputs: dict, normaliser=None, objective=None, counts: dict | None = None):
    """(loss, tokens): summed weighted cross-entropy of the labelled tokens divided by ``normaliser``.

    ``normaliser`` is the number of labelled tokens the loss is a mean over: the whole accumulated (and, under DDP,
    all-rank) batch during training, this batch's own count when None. Dividing every micro-batch by the same global
    count makes any split of the same rows (batch x accumulation x ranks) give the same loss and gradients. Class
    weights (mean 1 over the rows) scale each row's tokens, they do not change the normaliser. ``tokens`` counts the
    batch's real (unpadded) tokens for throughput.

    ``objective`` (trainer/losses.py, from ``soft_labels``/``loss: ce_mse``) adds per-row terms read at the answer
    position, each a mean over its own rows of the step (``counts``; this batch's own when None).
    """
    import torch

    from trainer.losses import labelled_token_count, step_counts

    window = labelled_window(model, inputs)
    summed = token_cross_entropy(window).sum()
    count = labelled_token_count(inputs) if normaliser is None else normaliser
    tokens = torch.as_tensor(int(inputs["attention_mask"].sum()))
    if objective is None:
        loss = summed / torch.as_tensor(count, dtype=summed.dtype, device=summed.device).clamp(min=1)
        return loss, tokens
    counts = dict(counts or step_counts([inputs]), tokens=float(count))
    label_logits = window.answer_label_logits(inputs["answer_offset"], objective.label_ids)
    return objective.combine(summed, objective.row_terms(label_logits, inputs), counts), tokens


# -- model ------------------------------------------------------------------------------------------------------
def build_peft_model(config: TrainConfig, precision: str):
    """(model, tokenizer) on the PEFT/transformers path; 4-bit base only when ``method: qlora``."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(config.base_model, trust_remote_code=False)
    kwargs = {"dtype": torch_dtype(precision), "trust_remote_code": False}
    if config.method == "qlora":
        # bitsandbytes >= 0.49 runs nf4 on the CPU too (slow, but the same code path the GPU takes).
        import importlib.util

        if importlib.util.find_spec("bitsandbytes") is None:
            raise RuntimeError("method qlora (4-bit base) needs bitsandbytes (pip install bitsandbytes==0.50.2); "
                               "use method lora without it")
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch_dtype(precision)
        )
    model = AutoModelForCausalLM.from_pretrained(config.base_model, **kwargs)
    if config.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
    if not config.is_lora:
        return model, tokenizer
    from peft import LoraConfig, get_peft_model

    if config.method == "qlora":
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=config.gradient_checkpointing)
    lora = LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=list(config.target_modules),
        modules_to_save=list(config.modules_to_save) or None,
        task_type="CAUSAL_LM",
    )
    # Seed right before the adapters are drawn, as Unsloth's get_peft_model does (transformers.set_seed(random_state)):
    # both backends then start from the same LoRA A matrices, so their first steps can be compared.
    from transformers import set_seed

    set_seed(config.seed)
    model = get_peft_model(model, lora)
    if config.gradient_checkpointing:
        model.enable_input_require_grads()
    return model, tokenizer


def difficulty_scores(model, dataset: ExampleDataset, collator) -> list[float]:
    """Per-row loss of the current (base) model on the target: the curriculum's difficulty score."""
    import torch

    scores = []
    model.eval()
    with torch.no_grad():
        for row in dataset.rows:
            batch = {k: v.to(model.device) for k, v in collator([row]).items()}
            scores.append(float(labelled_loss(model, batch)[0]))
    model.train()
    return scores


def curriculum_order(model, dataset: ExampleDataset, collator) -> ExampleDataset:
    """Rows sorted easy -> hard by :func:`difficulty_scores` (ties keep their order)."""
    scores = difficulty_scores(model, dataset, collator)
    order = sorted(range(len(dataset)), key=lambda i: scores[i])
    log.info("curriculum: difficulty %.3f (easiest) .. %.3f (hardest)", scores[order[0]], scores[order[-1]])
    return ExampleDataset([dataset[i] for i in order])


# -- trainer ----------------------------------------------------------------------------------------------------
def _make_trainer_class():
    from transformers import Trainer

    class JudgeTrainer(Trainer):
        """transformers Trainer with the labelled-window loss; counts tokens for the progress line."""

        tokens_seen = 0

        def __init__(self, *args, objective=None, **kwargs):
            super().__init__(*args, **kwargs)
            self.objective = objective  # trainer/losses.py Objective, or None for plain cross-entropy
            self.step_rows = None
            # Our compute_loss consumes num_items_in_batch, so the Trainer must always count it and must never
            # divide by the accumulation steps itself (training_step skips that division exactly when this is True).
            self.model_accepts_loss_kwargs = True

        def get_batch_samples(self, epoch_iterator, num_batches, device):
            """The step's micro-batches; with row-level loss terms also their row counts (over all ranks)."""
            batches, num_items_in_batch = super().get_batch_samples(epoch_iterator, num_batches, device)
            if self.objective is not None and batches:
                import torch

                from trainer.losses import ROW_COUNTS, step_counts

                counts = step_counts(batches)
                if self.args.world_size > 1:
                    mine = torch.tensor([counts[name] for name in ROW_COUNTS], device=device)
                    total = self.accelerator.gather(mine).view(-1, len(ROW_COUNTS)).sum(dim=0)
                    counts.update({name: int(value) for name, value in zip(ROW_COUNTS, total, strict=True)})
                self.step_rows = counts
            return batches, num_items_in_batch

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            loss, tokens = labelled_loss(model, inputs, normaliser=num_items_in_batch, objective=self.objective,
                                         counts=self.step_rows if num_items_in_batch is not None else None)
            if num_items_in_batch is not None:
                # num_items_in_batch is the all-rank count (average_tokens_across_devices) while DDP averages the
                # ranks' gradients: undo that average so the step is the mean over every labelled token.
                loss = loss * self.accelerator.num_processes
            self.tokens_seen += int(tokens)
            return (loss, None) if return_outputs else loss

    return JudgeTrainer


def _make_progress_callback(run: RunDir):
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


def training_arguments(config: TrainConfig, checkpoints: Path, precision: str, batch_size: int, grad_accum: int):
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
        average_tokens_across_devices=True,  # num_items_in_batch = labelled tokens over all ranks (compute_loss)
    )


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def train_run(config: TrainConfig, resume: bool = False, callbacks=(), validation_ids=None,
              row_weights: dict[str, float] | None = None) -> Path:
    """Train one config into ``config.run_dir()``; returns the run dir (merge/evaluate are separate steps).

    ``resume``: continue from the run's last checkpoint with its saved validation split. ``validation_ids``: hold
    exactly these ids out (k-fold, hard rounds) instead of a seeded split. ``row_weights`` (by id) multiply rows'
    loss weights (hard-example rounds, trainer/hard_examples.py).
    """
    from submission.prompting import PromptRenderer
    from trainer import split, training_data

    run = RunDir(config.run_dir())
    run.path.mkdir(parents=True, exist_ok=True)
    rows = training_data.load_and_split(config, run.val_ids_path if resume else None, validation_ids)
    train_frame, val_frame = rows.train, rows.val
    precision = pick_precision(config)
    unsloth = use_unsloth(config)
    if config.wandb_project:
        os.environ["WANDB_PROJECT"] = config.wandb_project  # WANDB_MODE=offline from the caller is honoured
    if is_main_process():
        run.write_val_ids(val_frame["id"])
        run.write_prior(split.class_prior(train_frame))
        run.write_record({
            "config": config.model_dump(),
            "backend": "unsloth" if unsloth else "peft",
            "precision": precision,
            "versions": library_versions(),
            "git_sha": git_sha(),
            "data_sha256": file_sha256(config.train_path),
            "rows": {"train": len(train_frame), "val": len(val_frame),
                     **({"soft_only": len(rows.unlabelled)} if config.soft_labels else {})},
            "split": training_data.split_record(config, rows),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "world_size": int(os.environ.get("WORLD_SIZE", "1")),
        })
        if not resume:
            run.start_metrics()

    if unsloth:
        from trainer import backend_unsloth

        model, tokenizer = backend_unsloth.load_model(config, torch_dtype(precision))
    else:
        model, tokenizer = build_peft_model(config, precision)

    fit_frame = training_data.fit_rows(config, rows, row_weights)
    weights = split.class_weights(train_frame["score"]) if config.balance == "class_weights" else None
    renderer = PromptRenderer(tokenizer, max_tokens=config.max_tokens)
    dataset = tokenise(fit_frame, renderer, config.max_tokens, weights)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    if config.curriculum:
        dataset = curriculum_order(model, dataset, LeftPadCollator(pad_id))

    from submission.scoring import label_token_ids
    from trainer.losses import Objective

    objective = Objective.from_config(config, label_token_ids(tokenizer))
    batch_size, grad_accum = config.batch_size, config.grad_accum
    started = time.perf_counter()
    while True:
        args = training_arguments(config, run.checkpoints, precision, batch_size, grad_accum)
        trainer = _make_trainer_class()(
            model=model, args=args, train_dataset=dataset, data_collator=LeftPadCollator(pad_id), objective=objective
        )
        progress = _make_progress_callback(run)
        progress.trainer = trainer
        trainer.add_callback(progress)
        for callback in callbacks:
            trainer.add_callback(callback)
        try:
            trainer.train(resume_from_checkpoint=True if resume and run.has_checkpoint() else None)
            break
        except Exception as error:  # noqa: BLE001 - only CUDA OOM is retried
            from submission.engine_hf import is_out_of_memory

            if not (is_out_of_memory(error) and batch_size > 1):
                raise
            import torch

            torch.cuda.empty_cache()
            batch_size, grad_accum = batch_size // 2, grad_accum * 2
            resume = True
            log.warning("CUDA out of memory: retrying with batch %d x accumulation %d", batch_size, grad_accum)

    seconds = time.perf_counter() - started
    if is_main_process():
        merged_by = save_trained(trainer.model, tokenizer, config, run, unsloth)
        run.update_record(
            train_seconds=round(seconds, 2),
            effective_batch={"per_device": batch_size, "grad_accum": grad_accum},
            global_steps=trainer.state.global_step,
            world_size=trainer.args.world_size,  # what the Trainer actually ran with
            parallel_mode=str(trainer.args.parallel_mode.value),
            merged_by=merged_by,
        )
    trainer.accelerator.wait_for_everyone()
    return run.path


def save_trained(model, tokenizer, config: TrainConfig, run: RunDir, unsloth: bool) -> str | None:
    """Save what training made; returns who wrote ``merged/`` (None: a LoRA adapter that ``merge_run`` merges).

    PEFT LoRA: ``adapter/`` only. Full fine-tuning: ``merged/`` in fp16 directly ("full_finetuning"). Unsloth LoRA:
    ``adapter/`` plus Unsloth's own fp16 merge ("unsloth"), which ``merge_run`` then keeps instead of merging again.
    """
    from trainer.merge import save_merged_model

    model = getattr(model, "module", model)
    if unsloth and config.is_lora:
        from trainer import backend_unsloth

        model.save_pretrained(str(run.adapter))
        backend_unsloth.save_merged(model, tokenizer, run.merged)
        return "unsloth"
    if config.is_lora:
        model.save_pretrained(str(run.adapter), safe_serialization=True)
        tokenizer.save_pretrained(str(run.adapter))
        return None
    save_merged_model(model, tokenizer, run.merged)
    return "full_finetuning"
