"""bundle.py: the zip's layout and manifest, and its refusals (secrets and pickles: tests/robustness/)."""

import hashlib
import json
import zipfile

import pytest

from submission.hashing import file_sha256
from tests.build_scripts import load_script

bundle = load_script("bundle")


def test_bundle_layout_manifest_and_best_pick(bundle_runs, tmp_path):
    out = tmp_path / "dist" / "submission.zip"
    manifest = bundle.make_bundle(bundle_runs, out)
    names = zipfile.ZipFile(out).namelist()
    assert {"run.sh", "run.py", "Dockerfile", "manifest.json", "submission/run_optimized.py"} <= set(names)
    assert any(n.startswith("models/strong/") and n.endswith(".safetensors") for n in names)
    assert not any(n.startswith(("models/weak/", "trainer/", "build/", "tests/")) for n in names)
    assert manifest["runs"] == [{"name": "strong", "metric": "qwk", "value": 0.8}]
    stored = json.loads(zipfile.ZipFile(out).read("manifest.json"))
    assert stored["files"]["run.sh"]["sha256"] == file_sha256(bundle.ROOT / "run.sh")
    for entry in ("run.sh", "run.py"):
        assert zipfile.ZipFile(out).getinfo(entry).external_attr >> 16 & 0o111  # stays executable
        assert entry in stored["files"]


def test_ensemble_members_are_shipped_with_bundle_paths(bundle_runs, tmp_path):
    ensemble = bundle_runs / "ensemble.json"
    ensemble.write_text(json.dumps({"members": [{"model": "weak/merged", "weight": 0.4},
                                                {"model": "strong/merged", "weight": 0.6}]}))
    out = tmp_path / "e.zip"
    bundle.make_bundle(bundle_runs, out, ensemble=ensemble)
    archive = zipfile.ZipFile(out)
    shipped = json.loads(archive.read("ensemble.json"))
    assert [m["model"] for m in shipped["members"]] == ["models/weak", "models/strong"]
    assert any(n.startswith("models/weak/") for n in archive.namelist())
    listed = json.loads(archive.read("manifest.json"))["files"]["ensemble.json"]
    shipped_bytes = archive.read("ensemble.json")
    assert listed == {"sha256": hashlib.sha256(shipped_bytes).hexdigest(), "size": len(shipped_bytes)}


def test_refuses_adapter_only_runs_and_oversize(bundle_runs, tmp_path):
    with pytest.raises(bundle.BundleError, match="no merged safetensors"):
        bundle.make_bundle(bundle_runs, tmp_path / "x.zip", pick=["adapter_only"])
    with pytest.raises(bundle.BundleError, match="over the cap"):
        bundle.make_bundle(bundle_runs, tmp_path / "x.zip", max_size=bundle.parse_size("100KB"))


def test_cli_exit_2_with_one_line(tmp_path, capsys):
    assert bundle.main(["--runs", str(tmp_path / "nope"), "--out", str(tmp_path / "x.zip")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "\n" not in err


def test_parse_size():
    assert bundle.parse_size("5GB") == 5 * 1024**3
    assert bundle.parse_size("500MB") == 500 * 1024**2
    with pytest.raises(bundle.BundleError):
        bundle.parse_size("lots")
