"""Our Unsloth call sites (trainer/backend_unsloth.py) against the pinned Unsloth, and the CPU path's imports.

Unsloth cannot be installed on CPU torch, so the signature check runs only where it imports (the GPU image);
everywhere the call sites are checked to pass exactly the keyword arguments the module declares, which is the list
the GPU check verifies. See tests/test_trainer_e2e.py for the subprocess check that a CPU train never imports
unsloth, bitsandbytes or xformers.
"""

from __future__ import annotations

import ast
import importlib.util
import inspect
from pathlib import Path

import pytest

from trainer import backend_unsloth

SOURCE = Path(backend_unsloth.__file__).read_text(encoding="utf-8")


def _call_kwargs(method: str) -> tuple[str, ...]:
    calls = [node for node in ast.walk(ast.parse(SOURCE)) if isinstance(node, ast.Call)
             and isinstance(node.func, ast.Attribute) and node.func.attr == method]
    assert len(calls) == 1, f"expected one call to {method}"
    assert not calls[0].args, f"{method}: pass keywords only, so signature drift cannot shift arguments"
    return tuple(k.arg for k in calls[0].keywords)


@pytest.mark.parametrize("method, declared", [
    ("from_pretrained", backend_unsloth.FROM_PRETRAINED_KWARGS),
    ("save_pretrained_merged", backend_unsloth.SAVE_MERGED_KWARGS),
])
def test_call_sites_pass_exactly_the_declared_keywords(method, declared):
    assert _call_kwargs(method) == declared


def test_get_peft_model_passes_the_model_then_declared_keywords():
    call = next(node for node in ast.walk(ast.parse(SOURCE)) if isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute) and node.func.attr == "get_peft_model")
    assert len(call.args) == 1 and tuple(k.arg for k in call.keywords) == backend_unsloth.GET_PEFT_MODEL_KWARGS


def test_unsloth_loads_full_precision_unless_qlora_and_merges_16bit():
    assert 'load_in_4bit=config.method == "qlora"' in SOURCE
    assert 'save_method="merged_16bit"' in SOURCE


@pytest.mark.skipif(importlib.util.find_spec("unsloth") is None, reason="unsloth is not importable here (CPU torch)")
def test_pinned_unsloth_accepts_our_keywords():  # pragma: no cover - runs in the GPU image
    FastLanguageModel = backend_unsloth.import_unsloth()

    def accepts(fn, names):
        params = inspect.signature(fn).parameters
        var_kw = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
        return [n for n in names if n not in params and not var_kw]

    assert accepts(FastLanguageModel.from_pretrained, backend_unsloth.FROM_PRETRAINED_KWARGS) == []
    assert accepts(FastLanguageModel.get_peft_model, backend_unsloth.GET_PEFT_MODEL_KWARGS) == []
    from unsloth.save import unsloth_save_pretrained_merged

    assert accepts(unsloth_save_pretrained_merged, ("save_directory", "tokenizer", "save_method")) == []
