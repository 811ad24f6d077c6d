"""bundle.py: the zip's layout and manifest, and every refusal."""

import hashlib
import json
import shutil
import zipfile

import pytest

from tests.build_scripts import load_script

bundle = load_script("bundle")


def make_run(runs, name, tiny_model_dir, qwk):
    merged = runs / name / "merged"
    shutil.copytree(tiny_model_dir, merged)
    (merged / "validation_report.json").write_text(json.dumps({"qwk": qwk, "accuracy": qwk}))
    return runs / name


@pytest.fixture
def runs(tmp_path, tiny_model_dir):
    runs = tmp_path / "runs"
    make_run(runs, "weak", tiny_model_dir, 0.3)
    make_run(runs, "strong", tiny_model_dir, 0.8)
    (runs / "adapter_only" / "adapter").mkdir(parents=True)
    return runs


def test_bundle_layout_manifest_and_best_pick(runs, tmp_path):
    out = tmp_path / "dist" / "submission.zip"
    manifest = bundle.make_bundle(runs, out)
    names = zipfile.ZipFile(out).namelist()
    assert {"run.sh", "Dockerfile", "manifest.json", "submission/run_optimized.py"} <= set(names)
    assert any(n.startswith("models/strong/") and n.endswith(".safetensors") for n in names)
    assert not any(n.startswith(("models/weak/", "trainer/", "build/", "tests/")) for n in names)
    assert manifest["runs"] == [{"name": "strong", "metric": "qwk", "value": 0.8}]
    stored = json.loads(zipfile.ZipFile(out).read("manifest.json"))
    assert stored["files"]["run.sh"]["sha256"] == bundle._sha256(bundle.ROOT / "run.sh")
    assert zipfile.ZipFile(out).getinfo("run.sh").external_attr >> 16 & 0o111  # stays executable


def test_ensemble_members_are_shipped_with_bundle_paths(runs, tmp_path):
    ensemble = runs / "ensemble.json"
    ensemble.write_text(json.dumps({"members": [{"model": "weak/merged", "weight": 0.4},
                                                {"model": "strong/merged", "weight": 0.6}]}))
    out = tmp_path / "e.zip"
    bundle.make_bundle(runs, out, ensemble=ensemble)
    archive = zipfile.ZipFile(out)
    shipped = json.loads(archive.read("ensemble.json"))
    assert [m["model"] for m in shipped["members"]] == ["models/weak", "models/strong"]
    assert any(n.startswith("models/weak/") for n in archive.namelist())
    listed = json.loads(archive.read("manifest.json"))["files"]["ensemble.json"]
    shipped_bytes = archive.read("ensemble.json")
    assert listed == {"sha256": hashlib.sha256(shipped_bytes).hexdigest(), "size": len(shipped_bytes)}


@pytest.mark.parametrize("bad_file, message", [
    ("pytorch_model.bin", "pickled weights are refused"),
    (".env", "looks like a secret"),
    ("hf_token", "looks like a secret"),
])
def test_refuses_pickles_and_secrets(runs, tmp_path, bad_file, message):
    (runs / "strong" / "merged" / bad_file).write_text("x")
    with pytest.raises(bundle.BundleError, match=message):
        bundle.make_bundle(runs, tmp_path / "x.zip")
    assert not (tmp_path / "x.zip").exists()


def test_refuses_a_token_hidden_in_a_config(runs, tmp_path):
    (runs / "strong" / "merged" / "notes.md").write_text("key: hf_" + "a" * 34)
    with pytest.raises(bundle.BundleError, match="looks like a secret"):
        bundle.make_bundle(runs, tmp_path / "x.zip")


def test_refuses_adapter_only_runs_and_oversize(runs, tmp_path):
    with pytest.raises(bundle.BundleError, match="no merged safetensors"):
        bundle.make_bundle(runs, tmp_path / "x.zip", pick=["adapter_only"])
    with pytest.raises(bundle.BundleError, match="over the cap"):
        bundle.make_bundle(runs, tmp_path / "x.zip", max_size=bundle.parse_size("100KB"))


def test_cli_exit_2_with_one_line(tmp_path, capsys):
    assert bundle.main(["--runs", str(tmp_path / "nope"), "--out", str(tmp_path / "x.zip")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "\n" not in err


def test_parse_size():
    assert bundle.parse_size("5GB") == 5 * 1024**3
    assert bundle.parse_size("500MB") == 500 * 1024**2
    with pytest.raises(bundle.BundleError):
        bundle.parse_size("lots")
