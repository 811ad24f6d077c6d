"""Adapters -> one merged fp16 model folder the runtime loads: safetensors, tokenizer, chat template, model card."""

from __future__ import annotations

import json
import logging
from pathlib import Path

log = logging.getLogger(__name__)
ADAPTER_MARKERS = ("lora_", "modules_to_save", "base_layer", "original_module")


def _untie_if_diverged(model) -> None:
    """A trained copy of tied embeddings (LoRA modules_to_save) leaves input and output embeddings different:
    saving them as tied would silently replace the head on reload, so untie before saving."""
    inp, out = model.get_input_embeddings(), model.get_output_embeddings()
    if out is None or not getattr(model.config, "tie_word_embeddings", False):
        return
    if inp.weight.data_ptr() != out.weight.data_ptr():
        log.info("input and output embeddings diverged in training: saving them untied")
        model.config.tie_word_embeddings = False
        if hasattr(model.config, "get_text_config"):
            model.config.get_text_config().tie_word_embeddings = False


def save_merged(model, tokenizer, out_dir: Path, dtype: str = "float16") -> Path:
    """Save a plain (non-PEFT) model in ``dtype`` as safetensors with its tokenizer and chat template."""
    import torch

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model = getattr(model, "module", model)
    _untie_if_diverged(model)
    model = model.to(getattr(torch, dtype))
    model.config.use_cache = True
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    leftover = [k for k in adapter_keys(out_dir)]
    if leftover:
        raise RuntimeError(f"{out_dir}: adapter keys survived the merge: {leftover[:3]}")
    return out_dir


def adapter_keys(model_dir: Path) -> list[str]:
    """Tensor names in a folder's safetensors that belong to an adapter (must be empty for a merged model)."""
    from safetensors import safe_open

    keys = []
    for path in Path(model_dir).glob("*.safetensors"):
        with safe_open(str(path), framework="pt") as handle:
            keys += [k for k in handle.keys() if any(m in k for m in ADAPTER_MARKERS)]
    return keys


def merge_run(run_dir: Path, dtype: str | None = None) -> Path:
    """``RUN_DIR/adapter`` on top of its base model -> ``RUN_DIR/merged``; full-FT runs are merged already."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    run_dir = Path(run_dir)
    record = json.loads((run_dir / "training_config.json").read_text(encoding="utf-8"))
    dtype = dtype or record["config"].get("merge_dtype", "float16")
    merged = run_dir / "merged"
    if not (run_dir / "adapter").is_dir():
        if (merged / "config.json").is_file():
            return merged
        raise FileNotFoundError(f"{run_dir}: neither adapter/ nor merged/ found; was this run trained?")
    base = AutoModelForCausalLM.from_pretrained(record["base_model"], dtype=torch.float32, use_safetensors=True)
    model = PeftModel.from_pretrained(base, run_dir / "adapter").merge_and_unload()
    tokenizer = AutoTokenizer.from_pretrained(run_dir / "adapter")
    return save_merged(model, tokenizer, merged, dtype)


def write_model_card(run_dir: Path) -> Path:
    """``merged/README.md``: config, data hash and validation metrics (after evaluate)."""
    run_dir = Path(run_dir)
    record = json.loads((run_dir / "training_config.json").read_text(encoding="utf-8"))
    report_path = run_dir / "validation_report.json"
    report = json.loads(report_path.read_text(encoding="utf-8")) if report_path.is_file() else {}
    metrics = {k: report.get(k) for k in ("accuracy", "macro_f1", "qwk", "mae") if k in report}
    card = [
        f"# {record['config']['name']} — aij-judge merged model",
        "",
        f"Base model: `{record['base_model']}`; method: {record['config']['method']}; backend: {record['backend']}.",
        f"Training data sha256: `{record['data_sha256']}` ({record['rows']['train']} train / "
        f"{record['rows']['val']} validation rows).",
        "",
        "## Validation", "", "```json", json.dumps(metrics, indent=2), "```", "",
        "## Config", "", "```json", json.dumps(record["config"], indent=2, ensure_ascii=False), "```", "",
    ]
    path = run_dir / "merged" / "README.md"
    path.write_text("\n".join(card), encoding="utf-8")
    return path
