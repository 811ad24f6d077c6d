"""Every call we make into Unsloth, in one place, so a contract test can check them against the pinned version.

Imported only on the CUDA path (trainer/train.py imports this module lazily); Unsloth must be imported before
transformers/peft/trl so its patches apply, which is why :func:`import_unsloth` runs first on that path.
Pinned: unsloth==2026.10.9 (pyproject.toml, extra ``gpu-train``).
"""

from __future__ import annotations

# The exact keyword arguments we pass, per call; tests/test_trainer_unsloth_contract.py checks them.
FROM_PRETRAINED_KWARGS = ("model_name", "max_seq_length", "dtype", "load_in_4bit", "full_finetuning")
GET_PEFT_MODEL_KWARGS = (
    "r", "target_modules", "lora_alpha", "lora_dropout", "bias", "use_gradient_checkpointing", "random_state",
    "modules_to_save",
)
SAVE_MERGED_KWARGS = ("save_directory", "tokenizer", "save_method")


def available() -> bool:
    """True when CUDA is present and Unsloth imports (it fails on CPU-only torch)."""
    import torch

    if not torch.cuda.is_available():
        return False
    try:
        import_unsloth()
    except Exception:  # noqa: BLE001 - any import failure means "use the PEFT path"
        return False
    return True


def import_unsloth():
    import unsloth  # noqa: F401 - must come before transformers/peft/trl patches are needed
    from unsloth import FastLanguageModel

    return FastLanguageModel


def load_model(config, dtype):
    """(model, tokenizer): Unsloth model with LoRA adapters (or full weights for ``method: full``)."""
    FastLanguageModel = import_unsloth()
    model, tokenizer = FastLanguageModel.from_pretrained(
        model_name=config.base_model,
        max_seq_length=config.max_tokens,
        dtype=dtype,
        load_in_4bit=config.method == "qlora",  # fp16 merge needs unquantised weights unless QLoRA is asked
        full_finetuning=config.method == "full",  # else Unsloth prepares the weights for adapters, not for FT
    )
    if config.method == "full":
        return model, tokenizer
    model = FastLanguageModel.get_peft_model(
        model,
        r=config.lora_r,
        target_modules=list(config.target_modules),
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        bias="none",
        use_gradient_checkpointing="unsloth" if config.gradient_checkpointing else False,
        random_state=config.seed,
        modules_to_save=list(config.modules_to_save) or None,
    )
    return model, tokenizer


def save_merged(model, tokenizer, out_dir) -> None:
    """fp16 merged weights + tokenizer in ``out_dir``."""
    model.save_pretrained_merged(save_directory=str(out_dir), tokenizer=tokenizer, save_method="merged_16bit")
