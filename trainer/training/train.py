"""The training recipe: split, tokenise, build the model, train, save (merge and evaluate: trainer/recipes/pipeline.py).

    python -m trainer train --experiment demo --train-path data/synth/train.csv --base-model runs/tiny --output-dir runs
    accelerate launch --num_processes 2 --cpu -m trainer train --experiment demo ...   # DDP (gloo on CPU)

Backend: Unsloth when CUDA is present and it imports (trainer/training/backend_unsloth.py), else PEFT + transformers Trainer.
Unsloth, bitsandbytes and xformers are only imported inside the CUDA branch.

This module only wires: the loss (the labelled-token window, response-only) is trainer/training/losses.py, the transformers
Trainer glue (dataset, collator, Trainer subclass, progress line, training arguments) trainer/training/hf_trainer.py.
"""

from __future__ import annotations

import contextlib
import logging
import os
import platform
import shutil
import subprocess
import time
from pathlib import Path

from submission.hashing import file_sha256
from trainer.training.config import TrainConfig
from trainer.training.hf_trainer import (  # noqa: F401 - ExampleDataset, tokenise and the rest are imported from here too
    ExampleDataset,
    LeftPadCollator,
    TrainingDiverged,
    divergence_callback,
    judge_trainer_class,
    progress_callback,
    tokenise,
    training_arguments,
)
from trainer.training.losses import labelled_loss, labelled_window  # noqa: F401 - re-exported (tests, benches)
from trainer.training.rundir import RunDir, RunDirError

_make_trainer_class = judge_trainer_class  # the name tests/one_step.py knows

log = logging.getLogger("trainer.training.train")


# -- provenance -------------------------------------------------------------------------------------------------
def library_versions() -> dict[str, str | None]:
    from submission.versions import package_versions

    names = ("torch", "transformers", "peft", "trl", "accelerate", "datasets", "unsloth")
    return {"python": platform.python_version(), **package_versions(names)}


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

    from trainer.training import backend_unsloth

    if not torch.cuda.is_available():
        # auto stays PEFT on the CPU; an explicit request runs Unsloth's CPU fallback (text LoRA / full FT).
        if config.backend == "unsloth":
            backend_unsloth.import_unsloth_on_cpu()
            return True
        return False

    if config.backend == "unsloth":
        backend_unsloth.require()
        return True
    return backend_unsloth.available()


# -- model ------------------------------------------------------------------------------------------------------
PICKLED_WEIGHTS = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")


class BaseModelError(ValueError):
    """``--base-model`` cannot be used (no such folder, pickled weights only, not loadable offline); one line."""


def check_base_model(base_model: str) -> None:
    """BaseModelError unless ``base_model`` is a safetensors model folder or reads as an HF id (``org/name``)."""
    path = Path(base_model).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise BaseModelError(f"--base-model {base_model}: not a model folder (no config.json)")
        if not any(path.glob("*.safetensors")):
            pickled = sorted(p.name for p in path.iterdir() if p.suffix in PICKLED_WEIGHTS)
            if pickled:
                raise BaseModelError(f"--base-model {base_model}: only pickled weights ({pickled[0]}), which can run "
                                     "code when loaded; convert the model to safetensors (save_pretrained("
                                     "safe_serialization=True)) and pass that folder")
            raise BaseModelError(f"--base-model {base_model}: no *.safetensors weights in the folder")
    elif path.exists():
        raise BaseModelError(f"--base-model {base_model}: not a folder")
    elif base_model.startswith(("/", ".", "~")) or base_model.count("/") != 1:
        raise BaseModelError(f"--base-model {base_model}: folder not found (nor an HF id such as Qwen/Qwen3-0.6B)")


def load_base(loader, base_model: str, **kwargs):
    """``loader.from_pretrained(base_model)``; a model that cannot be found or read is a BaseModelError."""
    try:
        return loader.from_pretrained(base_model, **kwargs)
    except OSError as err:  # transformers' "not found / not in the offline cache / no weights" errors
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise BaseModelError(f"--base-model {base_model}: cannot be loaded ({reason}); pass a model folder or an "
                             "HF id that is in the offline cache") from None


def build_peft_model(config: TrainConfig, precision: str):
    """(model, tokenizer) on the PEFT/transformers path; 4-bit base only when ``method: qlora``."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = load_base(AutoTokenizer, config.base_model, trust_remote_code=False)
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
    model = load_base(AutoModelForCausalLM, config.base_model, **kwargs)
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


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def train_run(config: TrainConfig, resume: bool = False, callbacks=(), validation_ids=None,
              row_weights: dict[str, float] | None = None) -> Path:
    """Train one config into ``config.run_dir()``; returns the run dir (merge/evaluate are separate steps).

    Nothing is lost: the main process holds the run folder's lock (a second training into it refuses), and a new
    run trains into ``.NAME.next`` beside it, swapped in only once training succeeded, so a failing re-run leaves
    the previous run as it was.

    ``resume``: continue from the run's last checkpoint with its saved validation split. ``validation_ids``: hold
    exactly these ids out (k-fold, hard rounds) instead of a seeded split. ``row_weights`` (by id) multiply rows'
    loss weights (hard-example rounds, trainer/recipes/hard_examples.py).
    """
    check_base_model(config.base_model)
    final = RunDir(config.run_dir())
    with final.lock() if is_main_process() else contextlib.nullcontext():
        staged = final.staging()
        if resume:  # an interrupted new run continues where it was written (staged), a finished one in place
            run = staged if staged.has_checkpoint() or (staged.is_run() and not final.is_run()) else final
            check_same_data(run, config)
        else:
            run = staged
            if is_main_process():
                shutil.rmtree(run.path, ignore_errors=True)  # a failed attempt's leftovers
        _train_into(run, config, resume, callbacks, validation_ids, row_weights)
        if run is staged and is_main_process():
            final.replace_with(staged)
    return final.path


def check_same_data(run: RunDir, config: TrainConfig) -> None:
    """RunDirError when ``--resume`` would continue ``run`` on another train CSV than the one it recorded."""
    if not run.is_run():
        return
    recorded = run.read_record().get("data_sha256")
    if recorded and recorded != file_sha256(config.train_path):
        raise RunDirError(f"--resume: {config.train_path} is not the data {run.path} was trained on (sha256 "
                          f"{recorded[:12]}...); resume with the same train CSV or train a new --run-name")


def _train_into(run: RunDir, config: TrainConfig, resume: bool, callbacks, validation_ids, row_weights) -> None:
    """:func:`train_run`'s work, written into ``run`` (the staged folder, or the run itself on ``--resume``)."""
    from submission.prompts.prompting import PromptRenderer
    from trainer.data import split, training_data

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
            **({"max_score": 4} if rows.max_score == 4 else {}),  # merge_run writes it to merged/judge.json
        })
        if not resume:
            run.start_metrics()

    if config.judge_head:
        return train_judge_head_run(config, run, rows, row_weights)
    if unsloth:
        from trainer.training import backend_unsloth

        model, tokenizer = backend_unsloth.load_model(config, torch_dtype(precision))
    else:
        model, tokenizer = build_peft_model(config, precision)

    fit_frame = training_data.fit_rows(config, rows, row_weights)
    weights = split.class_weights(train_frame["score"]) if config.balance == "class_weights" else None
    renderer = PromptRenderer(tokenizer, max_tokens=config.max_tokens)
    from submission.prompts.sections import labels_for

    labels = labels_for(rows.max_score)  # -1..3, or -1..4 for import-pollux --keep-0-4 data
    dataset = tokenise(fit_frame, renderer, config.max_tokens, weights, labels)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    if config.curriculum:
        dataset = curriculum_order(model, dataset, LeftPadCollator(pad_id))

    from submission.scoring.decoding import label_token_ids
    from trainer.training.losses import Objective

    objective = Objective.from_config(config, label_token_ids(tokenizer, labels))
    batch_size, grad_accum = config.batch_size, config.grad_accum
    started = time.perf_counter()
    while True:
        args = training_arguments(config, run.checkpoints, precision, batch_size, grad_accum)
        trainer = judge_trainer_class()(
            model=model, args=args, train_dataset=dataset, data_collator=LeftPadCollator(pad_id), objective=objective
        )
        progress, guard = progress_callback(run), divergence_callback()
        progress.trainer = guard.trainer = trainer
        trainer.add_callback(progress)
        trainer.add_callback(guard)
        for callback in callbacks:
            trainer.add_callback(callback)
        if config.curve_steps and is_main_process():
            from trainer.evaluation.learning_curve import curve_callback

            trainer.add_callback(curve_callback(run, renderer, train_frame, val_frame, label_token_ids(tokenizer),
                                                config.curve_steps, config.seed, config.max_tokens))
        try:
            trainer.train(resume_from_checkpoint=True if resume and run.has_checkpoint() else None)
            break
        except Exception as error:  # noqa: BLE001 - only CUDA OOM is retried
            from submission.engines.engine_hf import is_out_of_memory

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


def check_finite_weights(model) -> None:
    """TrainingDiverged when a trained weight is NaN or infinite (the last step can break them after a finite loss):
    such weights are never saved, merged or shipped."""
    import torch

    for name, parameter in model.named_parameters():
        if parameter.requires_grad and not bool(torch.isfinite(parameter.detach()).all()):
            raise TrainingDiverged(f"training diverged: weight {name} is not finite after the last step; nothing was "
                                   "saved from it: lower learning_rate or max_grad_norm")


def train_judge_head_run(config: TrainConfig, run: RunDir, rows, row_weights=None) -> Path:
    """The judge-head recipe (trainer/training/judge_head.py) in place of LM fine-tuning; writes ``merged/`` directly."""
    from transformers import AutoTokenizer

    from trainer.data import training_data
    from trainer.training import judge_head

    tokenizer = AutoTokenizer.from_pretrained(config.base_model, trust_remote_code=False)
    started = time.perf_counter()
    fit_frame = training_data.fit_rows(config, rows, row_weights)
    fit_frame = fit_frame[fit_frame["score"].notna()].reset_index(drop=True)
    made = judge_head.train_judge_head(config, run, rows.train, rows.val, tokenizer, fit_frame)
    run.update_record(train_seconds=round(time.perf_counter() - started, 2), merged_by="judge_head",
                      effective_batch={"per_device": config.batch_size, "grad_accum": config.grad_accum},
                      world_size=1, **made)
    return run.path


def save_trained(model, tokenizer, config: TrainConfig, run: RunDir, unsloth: bool) -> str | None:
    """Save what training made; returns who wrote ``merged/`` (None: a LoRA adapter that ``merge_run`` merges).

    PEFT LoRA: ``adapter/`` only. Full fine-tuning: ``merged/`` in fp16 directly ("full_finetuning"). Unsloth LoRA:
    ``adapter/`` plus Unsloth's own fp16 merge ("unsloth"), which ``merge_run`` then keeps instead of merging again.
    """
    from trainer.training.merge import save_merged_model

    model = getattr(model, "module", model)
    check_finite_weights(model)
    if unsloth and config.is_lora:
        from trainer.training import backend_unsloth

        model.save_pretrained(str(run.adapter))
        backend_unsloth.save_merged(model, tokenizer, run.merged)
        return "unsloth"
    if config.is_lora:
        model.save_pretrained(str(run.adapter), safe_serialization=True)
        tokenizer.save_pretrained(str(run.adapter))
        return None
    save_merged_model(model, tokenizer, run.merged)
    return "full_finetuning"
