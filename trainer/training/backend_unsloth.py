"""Every call we make into Unsloth, in one place, with its keywords built from the config so they can be shown and checked.

Imported only when Unsloth trains: on CUDA by default, on the CPU when ``backend: unsloth`` is asked for (its
CPU fallback; the engines test tier runs it). trainer/training/train.py imports this module lazily; Unsloth must be imported before
transformers/peft/trl so its patches apply, which is why :func:`import_unsloth` runs first on that path.
Pinned: unsloth==2026.10.9 (pyproject.toml, extra ``gpu-train``).

Each configured value that Unsloth would otherwise default is passed explicitly: its defaults differ from ours
(``load_in_4bit=True``, ``use_gradient_checkpointing="unsloth"``, ``max_seq_length=2048``, ``random_state=3407``).
``python -m trainer train --experiment 1 --set backend=unsloth --dry-run`` prints the keywords as resolved;
tests/trainer/training/test_trainer_unsloth_contract.py runs these functions against a recording fake and checks every keyword
against the pinned wheel's signatures.
"""

from __future__ import annotations

MERGE_METHOD = "merged_16bit"  # fp16/bf16 safetensors the runtime loads (never 4-bit, never a LoRA-only save)


class BackendUnavailable(RuntimeError):
    """Unsloth was asked for but cannot train here; the message names the fix (one line at the CLI)."""


# unsloth_zoo 2026.10.9 (patching_utils.patch_model_and_tokenizer) raises ImportError inside from_pretrained when
# bitsandbytes is missing, even for 16-bit LoRA and full fine-tuning, although Unsloth's import-time banner says
# those work without it (measured on an H200: bench/results/gpu-h200-2026-12-04-unsloth.json).
NEEDS_BITSANDBYTES = "bitsandbytes==0.50.2"


def missing_requirement() -> str | None:
    """Why Unsloth cannot train on this machine (the fix included), or None when it can."""
    import torch

    if not torch.cuda.is_available():
        return "no CUDA device (Unsloth's CPU fallback runs only when backend unsloth is asked for)"
    try:
        import_unsloth()
    except Exception as error:  # noqa: BLE001 - any import failure means "use the PEFT path"
        return f"`import unsloth` failed ({type(error).__name__}: {error})"
    return bitsandbytes_problem()


def bitsandbytes_problem() -> str | None:
    """None when bitsandbytes imports, else the one-line reason with the fix."""
    try:
        from bitsandbytes.nn import Linear4bit  # noqa: F401 - the import unsloth_zoo makes
    except Exception as error:  # noqa: BLE001 - missing, or a build that does not load here
        return (f"bitsandbytes does not import ({type(error).__name__}: {error}); Unsloth 2026.10.9 needs it even "
                f"for 16-bit LoRA: pip install {NEEDS_BITSANDBYTES} (extra gpu-train), or use --set backend=peft")
    return None


def available() -> bool:
    """True when CUDA is present and Unsloth can load a model (it imports and bitsandbytes is there)."""
    return missing_requirement() is None


def require() -> None:
    """BackendUnavailable, with the reason and the fix, unless Unsloth can train here."""
    reason = missing_requirement()
    if reason is not None:
        raise BackendUnavailable(f"backend unsloth requested but {reason}")


def import_unsloth_on_cpu():
    """Import Unsloth without a GPU (its CPU fallback: "no GPU found, training on CPU"); RuntimeError, with the fix,
    when it does not import here (typically PyPI's CUDA torchvision beside CPU torch)."""
    import os

    os.environ.setdefault("UNSLOTH_FORCE_CPU", "1")
    try:
        return import_unsloth()
    except Exception as error:  # noqa: BLE001 - any import failure is one user-facing line
        raise BackendUnavailable(f"backend unsloth on CPU: `import unsloth` failed ({type(error).__name__}: {error}); "
                           "install unsloth==2026.10.9 without torchvision/torchaudio (make test-engines builds "
                           "such a venv) or use --set backend=peft") from error


def import_unsloth():
    import unsloth  # noqa: F401 - must come before transformers/peft/trl patches are needed
    from unsloth import FastLanguageModel

    return FastLanguageModel


def checkpointing(config):
    """Unsloth's ``use_gradient_checkpointing``: its offloaded variant when asked for, else off (False, not None)."""
    return "unsloth" if config.gradient_checkpointing else False


def from_pretrained_kwargs(config, dtype) -> dict:
    """Keywords of ``FastLanguageModel.from_pretrained`` for this config (``dtype``: a torch dtype)."""
    return {
        "model_name": config.base_model,
        "max_seq_length": config.max_tokens,
        "dtype": dtype,
        # Exactly one precision flag: QLoRA 4-bit, LoRA on 16-bit weights (an fp16 merge needs them), or full FT.
        "load_in_4bit": config.method == "qlora",
        "load_in_8bit": False,
        "load_in_16bit": config.method == "lora",
        "full_finetuning": config.method == "full",  # else Unsloth prepares the weights for adapters, not for FT
        "use_gradient_checkpointing": checkpointing(config),
        "random_state": config.seed,
        "trust_remote_code": False,
    }


def get_peft_model_kwargs(config) -> dict:
    """Keywords of ``FastLanguageModel.get_peft_model`` (after the model) for a LoRA/QLoRA config."""
    return {
        "r": config.lora_r,
        "target_modules": list(config.target_modules),
        "lora_alpha": config.lora_alpha,
        "lora_dropout": config.lora_dropout,
        "bias": "none",
        "use_gradient_checkpointing": checkpointing(config),
        "random_state": config.seed,
        "max_seq_length": config.max_tokens,
        "modules_to_save": list(config.modules_to_save) or None,
    }


def save_merged_kwargs(out_dir, tokenizer) -> dict:
    """Keywords of ``model.save_pretrained_merged``: fp16 safetensors + tokenizer in ``out_dir``."""
    return {"save_directory": str(out_dir), "tokenizer": tokenizer, "save_method": MERGE_METHOD,
            "safe_serialization": True}


def resolved_calls(config, dtype, merged_dir) -> dict:
    """{call: keywords} as a run of ``config`` makes them (for ``--dry-run``; values made printable)."""
    calls = {"FastLanguageModel.from_pretrained": from_pretrained_kwargs(config, dtype)}
    if config.is_lora:
        calls["FastLanguageModel.get_peft_model"] = get_peft_model_kwargs(config)
        calls["model.save_pretrained_merged"] = save_merged_kwargs(merged_dir, "<the run's tokenizer>")
    return {name: {k: v if isinstance(v, (str, int, float, bool, list, type(None))) else str(v)
                   for k, v in kwargs.items()} for name, kwargs in calls.items()}


def load_model(config, dtype):
    """(model, tokenizer): Unsloth model with LoRA adapters (or full weights for ``method: full``)."""
    FastLanguageModel = import_unsloth()
    problem = bitsandbytes_problem()
    if problem is not None:  # checked before from_pretrained, which would fail deep inside unsloth_zoo
        raise BackendUnavailable(f"backend unsloth: {problem}")
    model, tokenizer = FastLanguageModel.from_pretrained(**from_pretrained_kwargs(config, dtype))
    if not config.is_lora:
        return model, tokenizer
    model = FastLanguageModel.get_peft_model(model, **get_peft_model_kwargs(config))
    return model, tokenizer


def save_merged(model, tokenizer, out_dir) -> None:
    """fp16 merged weights + tokenizer in ``out_dir`` (Unsloth's own merge; the run is not merged again)."""
    model.save_pretrained_merged(**save_merged_kwargs(out_dir, tokenizer))
