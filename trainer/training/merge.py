"""Adapters -> one fp16 safetensors folder the runtime loads (``RUN_DIR/merged/``), with tokenizer and model card.

    python -m trainer merge runs/exp1_lora

Each run is merged once: a run whose ``merged/`` was written at training time (full fine-tuning, or Unsloth's own
merge; ``merged_by`` in training_config.json) keeps it, and only its model card is refreshed.

Tied embeddings: a LoRA run that trains ``embed_tokens`` (modules_to_save) trains a copy of the input embeddings
while the output head keeps the original matrix. Saving such a model as "tied" would silently swap the head on
reload, so the merged model is untied whenever the two differ (checked by tests/trainer/training/test_trainer_merge.py).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from trainer.training.rundir import RunDir, scrub_secrets, write_json

log = logging.getLogger("trainer.training.merge")


def untie_if_diverged(model) -> bool:
    """Give the output head its own weight (and mark the config untied) when it no longer equals the input embedding."""
    import torch

    inp, out = model.get_input_embeddings(), model.get_output_embeddings()
    if out is None or inp.weight is out.weight:
        return False
    if inp.weight.shape == out.weight.shape and torch.equal(inp.weight, out.weight):
        return False
    out.weight = torch.nn.Parameter(out.weight.detach().clone())
    model.config.tie_word_embeddings = False
    if hasattr(model.config, "get_text_config"):
        model.config.get_text_config().tie_word_embeddings = False
    return True


def save_merged_model(model, tokenizer, out_dir: Path, dtype=None) -> Path:
    """Save weights (fp16 unless ``dtype`` says otherwise) + tokenizer (with its chat template) into ``out_dir``."""
    import torch

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    untie_if_diverged(model)
    model = model.to(dtype or torch.float16)
    model.config.use_cache = True
    model.save_pretrained(str(out_dir), safe_serialization=True)
    tokenizer.save_pretrained(str(out_dir))
    return out_dir


TIED_MODULES = ("lm_head", "embed_tokens")


def untie_for_adapter(model, adapter_dir: Path) -> bool:
    """Give a tied head its own copy when the adapter puts LoRA on the head or the input embedding.

    Merging LoRA into one side of a tied pair writes the delta into the shared matrix: the head's delta then also
    shifts every input embedding (and the saved config stays tied), so the merged model is not the trained one. The
    training forward never did that (the delta applied to one side only); the copy makes the merge do the same.
    """
    import torch

    try:
        adapter = json.loads((Path(adapter_dir) / "adapter_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    targets = adapter.get("target_modules") or []
    targets = [targets] if isinstance(targets, str) else list(targets)
    touched = any(t.split(".")[-1] in TIED_MODULES or t in TIED_MODULES for t in targets)
    inp, out = model.get_input_embeddings(), model.get_output_embeddings()
    if not touched or out is None or inp.weight is not out.weight:
        return False
    out.weight = torch.nn.Parameter(out.weight.detach().clone())
    model.config.tie_word_embeddings = False
    if hasattr(model.config, "get_text_config"):
        model.config.get_text_config().tie_word_embeddings = False
    log.info("untied the output head before merging: the adapter puts LoRA on %s", ", ".join(targets))
    return True


def merge_adapter(base_model: str, adapter_dir: Path, out_dir: Path) -> Path:
    """Load the base in fp32, apply the PEFT adapter, merge, save fp16."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base = AutoModelForCausalLM.from_pretrained(base_model, dtype=torch.float32, trust_remote_code=False)
    untie_for_adapter(base, adapter_dir)
    model = PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()
    tokenizer_src = adapter_dir if (adapter_dir / "tokenizer_config.json").is_file() else base_model
    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_src), trust_remote_code=False)
    return save_merged_model(model, tokenizer, out_dir)


def merge_run(run_dir: str | Path) -> Path:
    """``RUN_DIR/adapter`` -> ``RUN_DIR/merged`` unless training already wrote ``merged/``; returns ``merged/``."""
    run = RunDir(run_dir)
    record = run.read_record()
    if record.get("merged_by") and run.has_merged_weights():
        log.info("%s: merged at training time (%s); not merging again", run.merged, record["merged_by"])
    elif run.has_adapter():
        merge_adapter(record["config"]["base_model"], run.adapter, run.merged)
        run.update_record(merged_by="peft")
    elif not run.has_merged_weights():
        raise FileNotFoundError(f"{run.path}: neither {run.ADAPTER}/ nor merged weights found; train first")
    if record.get("max_score") == 4:  # trained on 0-4 rows: the runtime scores it -1..4 (submission Candidate.labels)
        from submission.choice.autopick import JUDGE_NAME

        write_json(run.merged / JUDGE_NAME, {"max_score": 4})
    write_model_card(run)
    return run.merged


def base_architecture(run: RunDir) -> str:
    """The merged model's architecture (``LlamaForCausalLM``, ``Qwen3ForCausalLM``...) from its config.json."""
    try:
        config = json.loads((run.merged / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "unknown architecture"
    return ", ".join(config.get("architectures") or [config.get("model_type", "unknown architecture")])


def write_model_card(run: RunDir) -> Path:
    """``merged/README.md``: what was trained on what, and how it scored (when evaluated)."""
    record = run.read_record()
    config = record["config"]
    lines = [
        f"# {config.get('run_name') or config['name']} — aij-judge",
        "",
        f"A judge ({base_architecture(run)}) fine-tuned to emit one score (0..3, or -1) for an AI Journey "
        "Agent-as-Judge prompt.",
        "Load with `submission/run_optimized.py --model-dir <this folder>`.",
        "",
        f"- base model: `{config['base_model']}`",
        f"- method: {config['method']} ({record.get('backend')}, {record.get('precision')})",
        f"- train data: `{config['train_path']}` sha256 `{record.get('data_sha256')}`",
        f"- rows: {record.get('rows')}; steps: {record.get('global_steps')}; train time: {record.get('train_seconds')} s",
        f"- merged by: {record.get('merged_by')}; git: {record.get('git_sha')}",
        "",
        "## Config",
        "",
        "```json",
        json.dumps(config, indent=2, ensure_ascii=False),
        "```",
    ]
    report = run.read_report()
    if report:
        from trainer.evaluation.metrics import format_table
        from trainer.evaluation.report import minus_one_cell

        lines += ["", "## Validation", "", f"decision: `{json.dumps(report.get('decision'))}`", "", "```",
                  format_table(report), "```"]
        minus_one = minus_one_cell(report)
        if minus_one is not None:
            lines += ["", f"-1 precision/recall under this decision: {minus_one} (validation rows + "
                          f"{report['not_applicable']['augmented_rows']} not-applicable rows made from them)"]
    run.merged.mkdir(parents=True, exist_ok=True)
    run.model_card_path.write_text(scrub_secrets("\n".join(lines)) + "\n", encoding="utf-8")
    return run.model_card_path
