"""Read the pinned GPU-only wheels (Unsloth, vLLM) as source, without importing them.

`make install` / `make test` download them with ``pip download --no-deps`` into ``$VENV/contract-wheels`` (or
``AIJ_CONTRACT_WHEELS``). Neither package imports on CPU torch, so the contract tests parse their source with ``ast``
and check that every keyword we pass is a parameter or field of the exact version pyproject.toml pins.
"""

from __future__ import annotations

import ast
import os
import re
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def pinned(name: str) -> str:
    """The exact version pyproject.toml pins for ``name`` (``name==X`` in an extra)."""
    match = re.search(rf'"{re.escape(name)}==([^"]+)"', (ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert match, f"{name} is not pinned in pyproject.toml"
    return match.group(1)


def open_wheel(name: str) -> zipfile.ZipFile:
    """The pinned wheel of ``name``; skips where it was not downloaded, fails in CI (the check must run there)."""
    folder = Path(os.environ.get("AIJ_CONTRACT_WHEELS", Path(sys.prefix) / "contract-wheels"))
    stem = f"{name.replace('-', '_')}-{pinned(name)}-"
    wheels = sorted(folder.glob(f"{stem}*.whl"))
    if not wheels:
        message = f"{folder}/{stem}*.whl missing: `make install` downloads the pinned wheels"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return zipfile.ZipFile(wheels[0])


def parse(archive: zipfile.ZipFile, path: str) -> ast.Module:
    return ast.parse(archive.read(path).decode("utf-8"))


def _children(nodes, kind, name):
    return [n for node in nodes for n in ast.iter_child_nodes(node) if isinstance(n, kind) and n.name == name]


def find_class(archive: zipfile.ZipFile, path: str, name: str) -> ast.ClassDef:
    found = _children([parse(archive, path)], ast.ClassDef, name)
    assert len(found) == 1, f"{path}: class {name} not found"
    return found[0]


def find_function(archive: zipfile.ZipFile, path: str, qualname: str) -> ast.FunctionDef:
    """``func`` or ``Class.method`` defined at module level of ``path``."""
    *classes, name = qualname.split(".")
    scope: list[ast.AST] = [parse(archive, path)]
    for cls in classes:
        scope = _children(scope, ast.ClassDef, cls)
        assert scope, f"{path}: class {cls} not found"
    found = _children(scope, ast.FunctionDef, name)
    assert len(found) == 1, f"{path}: {qualname} not found"
    return found[0]


def explicit_params(function: ast.FunctionDef) -> set[str]:
    """Named parameters only: a ``**kwargs`` would accept a misspelt keyword silently, so it does not count."""
    args = function.args
    return {a.arg for a in [*args.posonlyargs, *args.args, *args.kwonlyargs]}


def class_fields(cls: ast.ClassDef) -> set[str]:
    """Annotated class-level names: the fields of a dataclass, msgspec Struct or TypedDict."""
    return {s.target.id for s in cls.body if isinstance(s, ast.AnnAssign) and isinstance(s.target, ast.Name)}
