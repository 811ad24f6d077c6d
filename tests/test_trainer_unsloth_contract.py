"""Our Unsloth call sites (trainer/backend_unsloth.py) against the pinned Unsloth, and the CPU path's imports.

Unsloth cannot import on CPU torch, so the pinned wheel's *source* is checked instead (ast, no import): every keyword
we pass must be an explicit parameter of the function we call in that exact version. The call sites are checked to
pass exactly the keywords the module declares, so the two checks together cover what runs on the GPU. See tests/test_trainer_e2e.py for the subprocess check that a CPU train never imports
unsloth, bitsandbytes or xformers.
"""

from __future__ import annotations

import ast
import os
import re
import sys
import zipfile
from pathlib import Path

import pytest

from trainer import backend_unsloth

SOURCE = Path(backend_unsloth.__file__).read_text(encoding="utf-8")
ROOT = Path(__file__).resolve().parents[1]


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


# -- against the pinned Unsloth itself ----------------------------------------------------------------------------
# `make test` downloads the pinned wheels (--no-deps, never installed) into .venv/contract-wheels; their source is read
# with ast, so the check runs on CPU where `import unsloth` cannot. Only explicit parameters count: Unsloth's
# functions take **kwargs, which would swallow a misspelt keyword silently.
def _pinned(name: str) -> str:
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    match = re.search(rf'"{name}==([^"]+)"', text)
    assert match, f"{name} is not pinned in pyproject.toml"
    return match.group(1)


@pytest.fixture(scope="module")
def unsloth_wheel() -> zipfile.ZipFile:
    folder = Path(os.environ.get("AIJ_CONTRACT_WHEELS", Path(sys.prefix) / "contract-wheels"))
    wheel = folder / f"unsloth-{_pinned('unsloth')}-py3-none-any.whl"
    if not wheel.is_file():
        message = f"{wheel} missing: `make install` downloads the pinned Unsloth wheel"
        if os.environ.get("CI"):
            pytest.fail(message)  # CI must run the real check, not skip it
        pytest.skip(message)
    with zipfile.ZipFile(wheel) as archive:
        yield archive


def _function(archive: zipfile.ZipFile, path: str, qualname: str) -> ast.FunctionDef:
    tree = ast.parse(archive.read(path).decode("utf-8"))
    scope: list[ast.AST] = [tree]
    *classes, name = qualname.split(".")
    for cls in classes:
        scope = [n for node in scope for n in ast.iter_child_nodes(node) if isinstance(n, ast.ClassDef) and n.name == cls]
        assert scope, f"{path}: class {cls} not found"
    found = [n for node in scope for n in ast.iter_child_nodes(node) if isinstance(n, ast.FunctionDef) and n.name == name]
    assert len(found) == 1, f"{path}: {qualname} not found"
    return found[0]


def _explicit_params(function: ast.FunctionDef) -> set[str]:
    args = function.args
    return {a.arg for a in [*args.posonlyargs, *args.args, *args.kwonlyargs]}


@pytest.mark.parametrize("path, qualname, ours", [
    ("unsloth/models/loader.py", "FastLanguageModel.from_pretrained", backend_unsloth.FROM_PRETRAINED_KWARGS),
    # FastLanguageModel.get_peft_model is functools.wraps(FastLlamaModel.get_peft_model) forwarding *args/**kwargs.
    ("unsloth/models/llama.py", "FastLlamaModel.get_peft_model", backend_unsloth.GET_PEFT_MODEL_KWARGS),
    ("unsloth/save.py", "unsloth_save_pretrained_merged", backend_unsloth.SAVE_MERGED_KWARGS),
])
def test_pinned_unsloth_declares_every_keyword_we_pass(unsloth_wheel, path, qualname, ours):
    params = _explicit_params(_function(unsloth_wheel, path, qualname))
    assert not set(ours) - params, f"{qualname} in unsloth=={_pinned('unsloth')} lacks {sorted(set(ours) - params)}"


def test_pinned_unsloth_forwards_get_peft_model_and_knows_merged_16bit(unsloth_wheel):
    wrapper = _function(unsloth_wheel, "unsloth/models/loader.py", "FastLanguageModel.get_peft_model")
    assert "FastLlamaModel.get_peft_model" in ast.unparse(wrapper)
    save = ast.unparse(_function(unsloth_wheel, "unsloth/save.py", "unsloth_save_pretrained_merged"))
    assert "merged_16bit" in save


def test_unsloth_pins_agree():
    assert _pinned("unsloth") == _pinned("unsloth-zoo") and "unsloth==" + _pinned("unsloth") in backend_unsloth.__doc__
