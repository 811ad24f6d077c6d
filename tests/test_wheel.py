"""The wheel is the product: built from pyproject.toml, installed into a fresh venv, it runs without the checkout.

The wheel is built offline (``pip wheel --no-build-isolation`` with the hatchling of this environment: the ``dev``
extra installs it). The fresh venv has no pip and no copy of this checkout; it reaches this environment's
third-party packages (torch, transformers, typer, ...) through a ``.pth`` line, so nothing is downloaded, and
``aij-judge``/``aij-judge-run`` are the console scripts the wheel installed. Everything runs from a temporary folder.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import site
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Run inside the fresh venv: where the packages came from, then `--help` of every command (found by walking the
# app, so a new command is covered without editing this list) and a dry run that needs the shipped preset YAML.
CHECKER = r"""
import json, sys
import submission, trainer
import typer.main
from typer.testing import CliRunner
from trainer.cli import app

def walk(command, path):
    yield path
    for name, sub in getattr(command, "commands", {}).items():
        yield from walk(sub, [*path, name])

runner = CliRunner()
helps = {}
for path in walk(typer.main.get_command(app), []):
    result = runner.invoke(app, [*path, "--help"])
    helps[" ".join(path)] = [result.exit_code, result.output[:200]]
dry = runner.invoke(app, ["train", "--experiment", "demo", "--dry-run"])
print(json.dumps({"files": [submission.__file__, trainer.__file__], "helps": helps,
                  "dry_run": [dry.exit_code, dry.output]}))
"""


def _project_imports(source: str) -> set[str]:
    """Absolute module names a module imports (``from a.b import c``: ``a.b``; relative imports resolved are not used)."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def _checkout_top_names() -> set[str]:
    """Top-level names this checkout's Python code could be imported by (packages, script folders, modules)."""
    names = {p.stem for p in ROOT.glob("*.py")}
    names |= {p.name for p in ROOT.iterdir() if p.is_dir() and not p.name.startswith(".") and any(p.glob("*.py"))}
    return names


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    if importlib.util.find_spec("hatchling") is None:
        message = "hatchling (the build backend) is not installed: pip install -e '.[dev]'"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    out = tmp_path_factory.mktemp("dist")
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                           "-q", "-w", str(out), str(ROOT)], capture_output=True, text=True, cwd=out)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    [built] = out.glob("aij_judge-*.whl")
    return built


def test_every_project_import_in_the_wheel_is_a_module_the_wheel_ships(wheel):
    with zipfile.ZipFile(wheel) as archive:
        files = set(archive.namelist())
        sources = {name: archive.read(name).decode("utf-8") for name in files if name.endswith(".py")}
    modules = {name[:-3].replace("/", ".").removesuffix(".__init__") for name in sources}
    shipped_tops = {module.split(".")[0] for module in modules}
    assert shipped_tops == {"submission", "trainer"}
    assert {"trainer.bench", "trainer.cli", "submission.cli", "submission.run_optimized"} <= modules
    assert any(name.startswith("trainer/configs/") and name.endswith(".yaml") for name in files), "presets shipped"
    project = _checkout_top_names()
    assert {"bench", "build", "submission", "trainer"} <= project
    missing = sorted(f"{path}: {name}" for path, source in sources.items() for name in _project_imports(source)
                     if name.split(".")[0] in project and name not in modules)
    assert not missing, "imports of modules the wheel does not ship:\n" + "\n".join(missing)


def test_the_installed_wheel_runs_every_command_from_outside_the_checkout(wheel, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    purelib = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                  capture_output=True, text=True, check=True).stdout.strip())
    # Plain path lines: this environment's .pth files (its editable install of the checkout) are not processed.
    reuse = dict.fromkeys([*site.getsitepackages(), sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
    (purelib / "reuse_test_environment.pth").write_text("\n".join(reuse) + "\n")
    env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path), "LANG": "C.UTF-8", "HF_HUB_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    install = subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--ignore-installed",
                              "--no-compile", str(wheel)], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert install.returncode == 0, install.stdout + install.stderr

    def run(*command):
        proc = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
        assert proc.returncode == 0, f"{command}: exit {proc.returncode}\n{proc.stdout[-2000:]}{proc.stderr[-3000:]}"
        return proc.stdout

    assert "Usage: aij-judge" in run(str(venv / "bin" / "aij-judge"), "--help")
    assert "--test_path" in run(str(venv / "bin" / "aij-judge-run"), "--help")
    report = json.loads(run(str(python), "-c", CHECKER).splitlines()[-1])
    assert all(Path(f).resolve().is_relative_to(purelib.resolve()) for f in report["files"]), report["files"]
    helps = report["helps"]
    assert {"tiny-model", "synth", "bench", "train", "distill", "merge", "evaluate", "report", "advanced",
            "advanced kfold", "advanced ensemble", "advanced hpo", "advanced hard-rounds"} <= set(helps)
    failed = {name: output for name, (code, output) in helps.items() if code != 0 or "Usage:" not in output}
    assert not failed, failed
    code, output = report["dry_run"]
    assert code == 0, output
    assert json.loads(output)["name"] == "demo"
