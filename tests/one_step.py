"""One optimizer step of the project's Trainer over fixed rows, reporting the logged loss and the gradients.

Imported by tests/trainer/training/test_trainer_accumulation.py (in-process splits) and run under ``accelerate launch`` by the same
test's DDP case, where each rank trains its shard of the rows and rank 0 prints the result as JSON:

    accelerate launch --num_processes 2 --cpu tests/one_step.py MODEL_DIR ROWS_CSV METHOD BATCH ACCUM OUT_JSON
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

STEP_SETTINGS = {"max_steps": 1, "logging_steps": 1, "lora_dropout": 0.0, "learning_rate": 1e-3,
                 "max_grad_norm": 1e6, "precision": "fp32", "max_tokens": 512, "seed": 0}  # no clipping, no dropout


def one_step(model_dir, frame, method: str, batch_size: int, grad_accum: int, out_dir, **settings) -> dict:
    """Train one step (rows in file order) -> {"loss", "grad_norm", "grads": {name: tensor before the step}}.

    ``settings`` are extra TrainConfig fields (e.g. ``soft_labels``/``distill_alpha``: the trainer's Objective then
    reads the frame's ``p_-1``..``p_3`` columns; rows with an empty score are soft-label only)."""
    from transformers import TrainerCallback, set_seed

    from submission.prompts.prompting import PromptRenderer
    from submission.scoring.decoding import label_token_ids
    from trainer.training.config import TrainConfig
    from trainer.training.losses import Objective
    from trainer.training.train import (
        LeftPadCollator,
        _make_trainer_class,
        build_peft_model,
        tokenise,
        training_arguments,
    )

    config = TrainConfig(method=method, base_model=str(model_dir), batch_size=batch_size, grad_accum=grad_accum,
                         output_dir=str(out_dir), **{**STEP_SETTINGS, **settings})
    set_seed(0)  # the LoRA initialisation must be the same for every split
    model, tokenizer = build_peft_model(config, "fp32")
    dataset = tokenise(frame, PromptRenderer(tokenizer, max_tokens=512), 512)
    args = training_arguments(config, Path(out_dir), "fp32", batch_size, grad_accum)
    args.train_sampling_strategy = "sequential"  # fixed micro-batches, so label counts differ between them
    seen: dict = {"logs": {}}

    class Record(TrainerCallback):
        def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
            seen["grads"] = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}

        def on_log(self, args, state, control, logs=None, **kwargs):
            seen["logs"].update(logs or {})

    objective = Objective.from_config(config, label_token_ids(tokenizer))
    trainer = _make_trainer_class()(model=model, args=args, train_dataset=dataset, objective=objective,
                                    data_collator=LeftPadCollator(tokenizer.pad_token_id))
    trainer.add_callback(Record())
    trainer.train()
    return {"loss": seen["logs"]["loss"], "grad_norm": float(seen["logs"]["grad_norm"]), "grads": seen["grads"],
            "world_size": trainer.args.world_size}


if __name__ == "__main__":
    import os

    import pandas as pd

    model_dir, rows_csv, method, batch, accum, out_json = sys.argv[1:7]
    frame = pd.read_csv(rows_csv, dtype={"id": str})
    result = one_step(model_dir, frame, method, int(batch), int(accum), Path(out_json).parent / "trainer_out")
    if int(os.environ.get("RANK", "0")) == 0:
        Path(out_json).write_text(json.dumps({k: result[k] for k in ("loss", "grad_norm", "world_size")}))
