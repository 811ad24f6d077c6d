#!/usr/bin/env python3
"""Pack the submission zip: run.sh, run.py, Dockerfile, submission/ (runtime only), models/<name>/, ensemble.json, manifest.

    python build/bundle.py --runs runs/ --out dist/submission.zip                 # the best run by its report
    python build/bundle.py --runs runs/ --pick exp1_lora exp3_full --out dist/submission.zip --max-size 5GB

Ships from each model folder only an allow-list: *.safetensors, config.json, generation_config.json, the tokenizer
files, judge.json and validation_report.json cut down to its metrics and decision rule (no per-row checks, gold
labels, prompt excerpts or paths); the model card, training data and anything else stay home.

Refuses (exit 2, one line naming the file): over the size cap, a run without merged weights, pickled weights (*.bin,
*.pt, ...), files that look like secrets (.env, *token*, *credential*, keys) or hold one (token and key patterns, the
value of a secret-named environment variable), a link out of a model folder, two runs with the same folder name, an
--out that is a file the bundle reads. Runs offline.
"""

from __future__ import annotations

import argparse
import fnmatch
import hashlib
import json
import os
import re
import sys
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # "best" is the runtime's own ranking (submission.choice.autopick), not a second rule

from submission.choice.autopick import ENSEMBLE_NAME, JUDGE_NAME, VALIDATION_REPORT_NAME, rank_candidates  # noqa: E402
from submission.choice.metrics import METRIC_NAMES, UnknownMetric, check_metric  # noqa: E402
from submission.hashing import file_sha256  # noqa: E402
from trainer.training.rundir import RunDir, secret_env_values  # noqa: E402  (trainer/ owns the run folder and secret names)

RUNTIME_FILES = ("run.sh", "run.py", "Dockerfile")
EXECUTABLES = ("run.sh", "run.py")
PICKLE_PATTERNS = ("*.bin", "*.pt", "*.pth", "*.ckpt", "*.pkl", "*.pickle")
SECRET_PATTERNS = (".env", "*.env", "*token*", "*secret*", ".netrc", "wandb-settings", "settings", "*.pem", "*.key",
                   "credentials*", "*credential*", "*password*", "*passwd*", "id_rsa*", "id_ed25519*", "*.p12",
                   "*.pfx", ".git-credentials", ".pypirc", ".npmrc", "*.kdbx")
# Keys, tokens and private keys by their shape (Hugging Face, W&B, AWS, GitHub, OpenAI-style, Slack, PEM), and
# an assignment of a long value to a key-, secret- or password-named setting.
SECRET_TEXT = re.compile(
    r"(hf_[A-Za-z0-9]{30,}|WANDB_API_KEY\s*=|-----BEGIN [A-Z ]*PRIVATE KEY-----|(?:AKIA|ASIA)[0-9A-Z]{16}"
    r"|gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{40,}|sk-[A-Za-z0-9_-]{32,}|xox[abposr]-[A-Za-z0-9-]{10,}"
    r"|(?i:(?:api[_-]?key|secret[_-]?(?:access[_-]?)?key|access[_-]?token|auth[_-]?token|password|passwd)"
    r"[\"']?\s*[:=]\s*[\"']?[A-Za-z0-9_\-/+=.]{16,}))")
# Tokenizer files legitimately carry "token" in their names; they are checked by content instead.
TOKENIZER_FILES = {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json"}
# What ships from a model folder: weights, config, tokenizer, the judge's mode, and the validation report cut down
# to its metrics and decision rule (:func:`shipped_report`). The model card (absolute build paths), training data,
# plots and anything else stay home.
MODEL_FILES = {"config.json", "generation_config.json", "model.safetensors.index.json", "vocab.json", "merges.txt",
               "tokenizer.model", "chat_template.jinja", "chat_template.json", JUDGE_NAME, *TOKENIZER_FILES}
WEIGHT_PATTERN = "*.safetensors"
# The report's keys the runtime reads (the metric ranks models, the decision rule and prior score rows, mode and
# created break ties) and aggregate metrics; not the per-row checks (ids, gold labels, prompt excerpts) nor paths.
REPORT_KEYS = ("metric", "decision", "class_prior", "mode", "created", "rows", "argmax_metrics", "per_class",
               "confusion_matrix")
SCAN_LIMIT = 64 * 1024**2  # bytes of a non-weight file scanned for secrets (larger ones are refused as not a model file)


class BundleError(ValueError):
    """A user-fixable reason the bundle cannot be made; one line."""


def parse_size(text: str) -> int:
    """'5GB', '500MB', '123' -> bytes (binary units)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?i?B?)?\s*", text, re.IGNORECASE)
    if not match:
        raise BundleError(f"--max-size {text!r}: expected a size like 5GB or 500MB")
    unit = (match.group(2) or "").upper().rstrip("B").rstrip("I")
    return int(float(match.group(1)) * 1024 ** " KMGT".index(unit or " "))


def _is_pickle(name: str) -> bool:
    return any(fnmatch.fnmatch(name.lower(), p) for p in PICKLE_PATTERNS)


def _scanned_text(path: Path) -> bytes:
    """The bytes of ``path`` a secret could hide in: a safetensors file's JSON header, any other file whole."""
    with path.open("rb") as handle:
        if path.name.endswith(".safetensors"):
            head = handle.read(8)
            size = int.from_bytes(head, "little") if len(head) == 8 else 0
            return handle.read(min(size, SCAN_LIMIT))
        return handle.read(SCAN_LIMIT)


def find_secret(path: Path, data: bytes | None = None, environ=None) -> str | None:
    """Why ``path`` (or ``data``, the bytes that ship under its name) looks like a secret, or None.

    A secret-looking file name, a key or token pattern in the content, or the value of a secret-named environment
    variable of this shell (trainer/training/rundir.py: ``secret_env_values``) anywhere in it.
    """
    name = path.name.lower()
    if name not in TOKENIZER_FILES and any(fnmatch.fnmatch(name, p) for p in SECRET_PATTERNS):
        return "its name says credentials/token/key"
    content = _scanned_text(path) if data is None else data
    match = SECRET_TEXT.search(content.decode("latin-1"))
    if match:
        return f"it holds a key or token ({match.group(0)[:6]}...)"
    for variable, value in secret_env_values(environ).items():
        if value.encode("utf-8") in content:
            return f"it holds the value of ${variable}"
    return None


def check_file(path: Path, data: bytes | None = None) -> None:
    """Raise BundleError for pickled weights or anything that looks like a secret (naming the file and why)."""
    if _is_pickle(path.name):
        raise BundleError(f"{path}: pickled weights are refused; save safetensors (save_pretrained(safe_serialization=True))")
    reason = find_secret(path, data)
    if reason:
        raise BundleError(f"{path}: looks like a secret ({reason}); remove it from the folder (or unset the variable)")


def shipped_report(report: dict) -> dict:
    """The validation report as shipped: :data:`REPORT_KEYS` and the top-level numbers (the metrics)."""
    return {k: v for k, v in report.items()
            if k in REPORT_KEYS or (isinstance(v, (int, float)) and not isinstance(v, bool)) or
            (v is None and k in METRIC_NAMES)}


def model_files(model_dir: Path) -> dict[str, Path]:
    """Relative name -> path of every file in ``model_dir`` (each checked by :func:`check_file`); BundleError for a
    link that leads out of the folder (links are never followed out)."""
    root = model_dir.resolve()
    found = {}
    for folder, dirs, names in os.walk(model_dir, followlinks=False):
        for name in sorted(dirs + names):
            path = Path(folder) / name
            if path.is_symlink() and not path.resolve().is_relative_to(root):
                raise BundleError(f"{path}: a link to {path.resolve()}, outside {model_dir}; copy the file in instead")
        for name in sorted(names):
            path = Path(folder) / name
            if path.is_file():
                check_file(path)
                found[str(path.relative_to(model_dir))] = path
    return found


def is_shipped(relative: str) -> bool:
    """Whether a model folder's file (relative name) is on the allow-list (top level only)."""
    return "/" not in relative and (relative in MODEL_FILES or fnmatch.fnmatch(relative, WEIGHT_PATTERN) or
                                    relative == VALIDATION_REPORT_NAME)


def run_metric(run_dir: Path, metric: str) -> float | None:
    """The run's ``metric`` as the runtime will read it (the shipped merged/validation_report.json), or None."""
    return rank_candidates([RunDir(run_dir).merged], metric)[0].value


def choose_runs(runs_dir: Path, pick: list[str], metric: str) -> list[Path]:
    """Run folders to ship: the named ones, or the best merged run by ``metric`` ('best')."""
    if not runs_dir.is_dir():
        raise BundleError(f"--runs {runs_dir}: not a folder")
    if pick and pick != ["best"]:
        chosen = [runs_dir / name if not Path(name).is_dir() else Path(name) for name in pick]
        for run in chosen:
            if not run.is_dir():
                raise BundleError(f"--pick {run.name}: no such run in {runs_dir}")
        return chosen
    # Hidden folders are a training's work in progress (trainer/training/train.py: .NAME.next), not runs.
    merged = [r for r in sorted(runs_dir.iterdir()) if not r.name.startswith(".") and RunDir(r).has_merged_weights()]
    if not merged:
        raise BundleError(f"{runs_dir}: no run has merged weights (run `python -m trainer merge RUN_DIR`)")
    # The runtime's rule on the folders that ship: same direction, missing values last, ties to the newer report.
    return [rank_candidates([RunDir(r).merged for r in merged], metric)[0].path.parent]


def _ensemble_runs(ensemble: Path, runs: list[Path]) -> tuple[list[Path], dict]:
    """Member runs of an ensemble.json (added to ``runs``) and its copy with paths as the bundle lays them out."""
    if not ensemble.is_file():
        raise BundleError(f"--ensemble {ensemble}: file not found")
    data = json.loads(ensemble.read_text(encoding="utf-8"))
    members = []
    for member in data.get("members", []):
        model = (ensemble.parent / member["model"]).resolve()
        run_of_model = RunDir.of_model_dir(model)
        run = run_of_model.path if run_of_model else model
        if run not in [r.resolve() for r in runs]:
            runs = [*runs, run]
        members.append({**member, "model": f"models/{run.name}"})
    if not members:
        raise BundleError(f"--ensemble {ensemble}: no members")
    return runs, {**data, "members": members}


def collect_files(runs: list[Path], ensemble: Path | None) -> tuple[dict[str, Path], dict[str, bytes]]:
    """(archive name -> source path, archive name -> bytes written as such) for everything the bundle holds
    (manifest excluded). From each model folder only the allow-list ships (:func:`is_shipped`); every file in it
    is checked for pickles and secrets all the same, and the report ships cut down (:func:`shipped_report`)."""
    files: dict[str, Path] = {name: ROOT / name for name in RUNTIME_FILES}
    generated: dict[str, bytes] = {}
    for path in sorted((ROOT / "submission").rglob("*.py")):
        files[str(path.relative_to(ROOT))] = path
    names: dict[str, Path] = {}
    for run in runs:
        merged = RunDir(run).merged
        if not RunDir(run).has_merged_weights():
            raise BundleError(f"{run}: no merged safetensors weights in {merged} (adapter-only runs are not shipped)")
        if run.name in names and names[run.name].resolve() != run.resolve():
            raise BundleError(f"two runs are named {run.name} ({names[run.name]} and {run}); the bundle ships each "
                              f"under models/<run name>: rename one of the run folders")
        names[run.name] = run
        left_out = []
        for relative, path in model_files(merged).items():
            if not is_shipped(relative):
                left_out.append(relative)
            elif relative == VALIDATION_REPORT_NAME:
                report = json.loads(path.read_text(encoding="utf-8"))
                generated[f"models/{run.name}/{relative}"] = json.dumps(
                    shipped_report(report), indent=2, ensure_ascii=False).encode("utf-8")
            else:
                files[f"models/{run.name}/{relative}"] = path
        if left_out:
            print(f"bundle: {run.name}: not shipped (not model files): {', '.join(left_out)}", file=sys.stderr)
    if ensemble is not None:
        files[ENSEMBLE_NAME] = ensemble
    for path in files.values():
        if not path.is_file():
            raise BundleError(f"{path}: missing from the source tree")
        check_file(path)
    return files, generated


def _versions() -> dict:
    from submission.versions import package_versions

    return package_versions(("torch", "transformers", "tokenizers", "safetensors", "pandas", "numpy", "vllm"))


def check_out(out: Path, sources: list[Path]) -> None:
    """BundleError when ``out`` (or the ``.partial`` file written beside it) is a file the bundle reads."""
    read = {p.resolve() for p in sources}
    for target in (out, out.with_name(out.name + ".partial")):
        if target.resolve() in read:
            raise BundleError(f"--out {out}: {target} is a file the bundle reads; write the zip elsewhere (dist/)")


def make_bundle(runs_dir: Path, out: Path, pick: list[str] | None = None, max_size: int = 5 * 1024**3,
                metric: str = "qwk", ensemble: Path | None = None) -> dict:
    """Write the zip; returns the manifest. The zip is built beside ``out`` and renamed when complete."""
    runs = choose_runs(runs_dir, pick or ["best"], metric)
    ensemble_json = None
    if ensemble is not None:
        runs, ensemble_json = _ensemble_runs(ensemble, runs)
    files, generated = collect_files(runs, None)
    # The shipped ensemble.json is rewritten (bundle paths), so the manifest hashes the bytes that go in the zip.
    if ensemble_json is not None:
        generated[ENSEMBLE_NAME] = json.dumps(ensemble_json, indent=2, ensure_ascii=False).encode()
    for name, data in generated.items():
        check_file(Path(name), data)
    check_out(out, [*files.values(), *([ensemble] if ensemble is not None else [])])
    total = sum(p.stat().st_size for p in files.values()) + sum(len(d) for d in generated.values())
    if total > max_size:
        raise BundleError(f"bundle would be {total / 2**20:.1f} MiB, over the cap of {max_size / 2**20:.1f} MiB")
    listed = {name: {"sha256": file_sha256(p), "size": p.stat().st_size} for name, p in files.items()}
    for name, data in generated.items():
        listed[name] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
    manifest = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "runs": [{"name": r.name, "metric": metric, "value": run_metric(r, metric)} for r in runs],
        "versions": _versions(),
        "files": dict(sorted(listed.items())),
        "total_bytes": total,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True) as archive:
        for name, path in sorted(files.items()):
            info = zipfile.ZipInfo.from_file(path, name)
            if name in EXECUTABLES:
                info.external_attr = 0o100755 << 16
            # Weights barely compress: store them, deflate the rest. Set before opening the member.
            info.compress_type = zipfile.ZIP_STORED if name.endswith(".safetensors") else zipfile.ZIP_DEFLATED
            with path.open("rb") as src, archive.open(info, "w", force_zip64=True) as dst:
                while block := src.read(1 << 20):
                    dst.write(block)
        for name, data in sorted(generated.items()):
            archive.writestr(name, data)
        archive.writestr("manifest.json", json.dumps(manifest, indent=2, ensure_ascii=False))
    partial.replace(out)
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--runs", type=Path, required=True, help="folder of training runs (runs/<name>/merged)")
    parser.add_argument("--pick", nargs="+", default=["best"], help="'best' (by --metric) or run names to ship")
    parser.add_argument("--out", type=Path, default=Path("dist/submission.zip"), help="zip to write")
    parser.add_argument("--max-size", default="5GB", help="size cap (default 5GB, the contest's)")
    parser.add_argument("--metric", default="qwk", help="report metric that picks 'best' (default qwk)")
    parser.add_argument("--ensemble", type=Path, default=None, help="ensemble.json to ship at the bundle root")
    args = parser.parse_args(argv)
    try:
        check_metric(args.metric)
    except UnknownMetric as err:
        print(f"error: --metric: {err}", file=sys.stderr)
        return 2
    try:
        manifest = make_bundle(args.runs, args.out, args.pick, parse_size(args.max_size), args.metric, args.ensemble)
    except BundleError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    runs = ", ".join(f"{r['name']} ({r['metric']}={r['value']})" for r in manifest["runs"])
    print(f"bundle: {args.out} ({manifest['total_bytes'] / 2**20:.1f} MiB, {len(manifest['files'])} files; runs: {runs})",
          file=sys.stderr)
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
