"""The layout is the pipeline: stage packages of a few small modules, imports that flow one way and never cycle
(what the wheel ships: tests/test_wheel.py).

README "Layout" and docs/ARCHITECTURE.md hold the map (folder -> stage -> entry point); these tests keep it true.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("trainer", "submission")
MAX_MODULES_PER_FOLDER = 12
MAX_LINES_PER_FILE = 450


def _modules() -> dict[str, Path]:
    """Dotted module name -> file, for every module the wheel ships."""
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """Project modules ``path`` imports, lazy (function-level) imports included: they run, so they can cycle."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                child = f"{node.module}.{alias.name}"
                found.add(child if child in modules else node.module)
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
    return {name for name in found if name.split(".")[0] in PACKAGES + ("bench", "build")}


def test_no_folder_holds_more_than_twelve_modules():
    for package in PACKAGES:
        for folder in [ROOT / package, *[p for p in (ROOT / package).rglob("*") if p.is_dir()]]:
            modules = [p for p in folder.glob("*.py") if p.name != "__init__.py"]
            assert len(modules) <= MAX_MODULES_PER_FOLDER, f"{folder.relative_to(ROOT)}: {len(modules)} modules"


@pytest.mark.parametrize("package", PACKAGES)
def test_no_file_is_longer_than_450_lines(package):
    for path in sorted((ROOT / package).rglob("*.py")):
        lines = len(path.read_text(encoding="utf-8").splitlines())
        assert lines <= MAX_LINES_PER_FILE, f"{path.relative_to(ROOT)}: {lines} lines"


def test_the_runtime_never_imports_the_trainer():
    modules = _modules()
    for name, path in modules.items():
        if name.startswith("submission"):
            assert not {m for m in _imports(path, modules) if m.startswith("trainer")}, name


def test_modules_import_without_a_cycle():
    modules = _modules()
    graph = {name: {m for m in _imports(path, modules) if m in modules and m != name} for name, path in modules.items()}
    assert graph["trainer.training.merge"] and graph["submission.runtime.runtime"]  # the check sees imports

    def cycle_from(module, path):
        if module in path:
            return path[path.index(module):] + [module]
        for target in sorted(graph.get(module, ())):
            found = cycle_from(target, [*path, module])
            if found:
                return found
        return None

    for module in graph:
        if module.count(".") == 0 or module in {p.rsplit(".", 1)[0] for p in graph}:
            continue  # a package's __init__ re-exports are not edges of the pipeline
        assert cycle_from(module, []) is None, " -> ".join(cycle_from(module, []))
