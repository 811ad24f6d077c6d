#!/usr/bin/env python3
"""Pack the submission zip: run.sh, run.py, Dockerfile, submission/ (runtime only), models/<name>/, ensemble.json, manifest.

    python build/bundle.py --runs runs/ --out dist/submission.zip                 # the best run by its report
    python build/bundle.py --runs runs/ --pick exp1_lora exp3_full --out dist/submission.zip --max-size 5GB

Refuses (exit 2, one line): over the size cap, a run without merged weights, pickled weights (*.bin, *.pt, ...),
files that look like secrets (.env, *token*, wandb settings). Runs offline.
"""

from __future__ import annotations

import argparse
import fnmatch
import hashlib
import json
import re
import sys
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # "best" is the runtime's own ranking (submission.autopick), not a second rule

from submission.autopick import ENSEMBLE_NAME, rank_candidates  # noqa: E402
from submission.hashing import file_sha256  # noqa: E402
from submission.metrics import UnknownMetric, check_metric  # noqa: E402
from trainer.rundir import RunDir  # noqa: E402  (trainer/ owns the run-folder layout)

RUNTIME_FILES = ("run.sh", "run.py", "Dockerfile")
EXECUTABLES = ("run.sh", "run.py")
PICKLE_PATTERNS = ("*.bin", "*.pt", "*.pth", "*.ckpt", "*.pkl", "*.pickle")
SECRET_PATTERNS = (".env", "*.env", "*token*", "*secret*", ".netrc", "wandb-settings", "settings", "*.pem", "*.key",
                   "credentials*")
SECRET_TEXT = re.compile(r"(hf_[A-Za-z0-9]{30,}|WANDB_API_KEY\s*=|-----BEGIN [A-Z ]*PRIVATE KEY-----)")
# Tokenizer files legitimately carry "token" in their names; they are checked by content instead.
TOKENIZER_FILES = {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json"}


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


def _is_secret(path: Path) -> bool:
    name = path.name.lower()
    if name not in TOKENIZER_FILES and any(fnmatch.fnmatch(name, p) for p in SECRET_PATTERNS):
        return True
    if path.stat().st_size < 5_000_000 and path.suffix in {"", ".json", ".txt", ".md", ".yaml", ".yml", ".sh", ".py",
                                                          ".jinja", ".cfg", ".toml"}:
        return bool(SECRET_TEXT.search(path.read_text(encoding="utf-8", errors="ignore")))
    return False


def check_file(path: Path) -> None:
    """Raise BundleError for pickled weights or anything that looks like a secret."""
    if _is_pickle(path.name):
        raise BundleError(f"{path}: pickled weights are refused; save safetensors (save_pretrained(safe_serialization=True))")
    if _is_secret(path):
        raise BundleError(f"{path}: looks like a secret (credentials/token); remove it from the run folder")


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
    merged = [r for r in sorted(runs_dir.iterdir()) if RunDir(r).has_merged_weights()]
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


def collect_files(runs: list[Path], ensemble: Path | None) -> dict[str, Path]:
    """Archive name -> source path for everything the bundle holds (manifest excluded)."""
    files: dict[str, Path] = {name: ROOT / name for name in RUNTIME_FILES}
    for path in sorted((ROOT / "submission").rglob("*.py")):
        files[str(path.relative_to(ROOT))] = path
    for run in runs:
        merged = RunDir(run).merged
        if not RunDir(run).has_merged_weights():
            raise BundleError(f"{run}: no merged safetensors weights in {merged} (adapter-only runs are not shipped)")
        for path in sorted(p for p in merged.rglob("*") if p.is_file()):
            files[f"models/{run.name}/{path.relative_to(merged)}"] = path
    if ensemble is not None:
        files[ENSEMBLE_NAME] = ensemble
    for path in files.values():
        if not path.is_file():
            raise BundleError(f"{path}: missing from the source tree")
        check_file(path)
    return files


def _versions() -> dict:
    from submission.versions import package_versions

    return package_versions(("torch", "transformers", "tokenizers", "safetensors", "pandas", "numpy", "vllm"))


def make_bundle(runs_dir: Path, out: Path, pick: list[str] | None = None, max_size: int = 5 * 1024**3,
                metric: str = "qwk", ensemble: Path | None = None) -> dict:
    """Write the zip; returns the manifest. The zip is built beside ``out`` and renamed when complete."""
    runs = choose_runs(runs_dir, pick or ["best"], metric)
    ensemble_json = None
    if ensemble is not None:
        runs, ensemble_json = _ensemble_runs(ensemble, runs)
    files = collect_files(runs, None)
    # The shipped ensemble.json is rewritten (bundle paths), so the manifest hashes the bytes that go in the zip.
    ensemble_bytes = None if ensemble_json is None else json.dumps(ensemble_json, indent=2, ensure_ascii=False).encode()
    total = sum(p.stat().st_size for p in files.values()) + len(ensemble_bytes or b"")
    if total > max_size:
        raise BundleError(f"bundle would be {total / 2**20:.1f} MiB, over the cap of {max_size / 2**20:.1f} MiB")
    listed = {name: {"sha256": file_sha256(p), "size": p.stat().st_size} for name, p in files.items()}
    if ensemble_bytes is not None:
        listed[ENSEMBLE_NAME] = {"sha256": hashlib.sha256(ensemble_bytes).hexdigest(), "size": len(ensemble_bytes)}
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
        if ensemble_bytes is not None:
            archive.writestr(ENSEMBLE_NAME, ensemble_bytes)
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
