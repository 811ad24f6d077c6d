"""Our Unsloth call sites (trainer/backend_unsloth.py) against the pinned Unsloth, and the CPU path's imports.

Unsloth cannot import on CPU torch, so the pinned wheel's *source* is checked instead (ast, no import): every keyword
we pass must be an explicit parameter of the function we call in that exact version. The call sites are checked to
pass exactly the keywords the module declares, so the two checks together cover what runs on the GPU. See tests/test_trainer_e2e.py for the subprocess check that a CPU train never imports
unsloth, bitsandbytes or xformers.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.contract_wheels import explicit_params, find_function, open_wheel, pinned
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
    assert 'full_finetuning=config.method == "full"' in SOURCE
    assert 'save_method="merged_16bit"' in SOURCE


# -- against the pinned Unsloth itself (its wheel's source: tests/contract_wheels.py) ------------------------------
@pytest.fixture(scope="module")
def unsloth_wheel():
    with open_wheel("unsloth") as archive:
        yield archive


@pytest.mark.parametrize("path, qualname, ours", [
    ("unsloth/models/loader.py", "FastLanguageModel.from_pretrained", backend_unsloth.FROM_PRETRAINED_KWARGS),
    # FastLanguageModel.get_peft_model is functools.wraps(FastLlamaModel.get_peft_model) forwarding *args/**kwargs.
    ("unsloth/models/llama.py", "FastLlamaModel.get_peft_model", backend_unsloth.GET_PEFT_MODEL_KWARGS),
    ("unsloth/save.py", "unsloth_save_pretrained_merged", backend_unsloth.SAVE_MERGED_KWARGS),
])
def test_pinned_unsloth_declares_every_keyword_we_pass(unsloth_wheel, path, qualname, ours):
    missing = set(ours) - explicit_params(find_function(unsloth_wheel, path, qualname))
    assert not missing, f"{qualname} in unsloth=={pinned('unsloth')} lacks {sorted(missing)}"


def test_pinned_unsloth_forwards_get_peft_model_and_knows_merged_16bit(unsloth_wheel):
    wrapper = find_function(unsloth_wheel, "unsloth/models/loader.py", "FastLanguageModel.get_peft_model")
    assert "FastLlamaModel.get_peft_model" in ast.unparse(wrapper)
    save = ast.unparse(find_function(unsloth_wheel, "unsloth/save.py", "unsloth_save_pretrained_merged"))
    assert "merged_16bit" in save


def test_unsloth_pins_agree():
    assert pinned("unsloth") == pinned("unsloth-zoo") and "unsloth==" + pinned("unsloth") in backend_unsloth.__doc__
