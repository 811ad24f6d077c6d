"""Every Unsloth call we make, in one place (GPU image only; imported only when CUDA and unsloth are present).

Pinned: unsloth 2026.10.9. Unsloth must be imported before transformers in its process (it patches it), so
`train_run` imports this module before loading any model. tests/test_unsloth_contract.py checks that these calls
exist with these keyword names in the pinned release.
"""

from __future__ import annotations

from pathlib import Path

# (callable path, keyword arguments we pass) — the contract the test checks against the pinned wheel.
CALLS = {
    "FastLanguageModel.from_pretrained": ("model_name", "max_seq_length", "dtype", "load_in_4bit"),
    "FastLanguageModel.get_peft_model": ("r", "target_modules", "lora_alpha", "lora_dropout",
                                         "use_gradient_checkpointing", "random_state", "modules_to_save"),
    "save_pretrained_merged": ("save_method",),
}
TARGET_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def load_unsloth_model(config, base_model: str):
    """(model, tokenizer) from Unsloth: LoRA (or QLoRA when asked) on all projections; bf16 base by default."""
    import unsloth  # noqa: F401  (first: it patches transformers)
    from unsloth import FastLanguageModel

    model, tokenizer = FastLanguageModel.from_pretrained(
        model_name=str(base_model), max_seq_length=config.max_tokens, dtype=None,
        load_in_4bit=config.method == "qlora",
    )
    if config.method == "full":
        return model, tokenizer
    model = FastLanguageModel.get_peft_model(
        model, r=config.lora_r,
        target_modules=TARGET_MODULES if config.target_modules == "all-linear" else config.target_modules,
        lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
        use_gradient_checkpointing="unsloth" if config.gradient_checkpointing else False,
        random_state=config.seed, modules_to_save=config.modules_to_save or None,
    )
    return model, tokenizer


def save_unsloth_merged(model, tokenizer, out_dir: Path) -> Path:
    """fp16 merge (never quantised) through Unsloth's own merger."""
    model.save_pretrained_merged(str(out_dir), tokenizer, save_method="merged_16bit")
    return Path(out_dir)
