"""The bundle never ships secrets or pickles: a token file, a .env or a token inside a text file stops the build."""

import pytest

from tests.build_scripts import load_script

bundle = load_script("bundle")


@pytest.mark.parametrize("bad_file, message", [
    ("pytorch_model.bin", "pickled weights are refused"),
    (".env", "looks like a secret"),
    ("hf_token", "looks like a secret"),
])
def test_refuses_pickles_and_secrets(bundle_runs, tmp_path, bad_file, message):
    (bundle_runs / "strong" / "merged" / bad_file).write_text("x")
    with pytest.raises(bundle.BundleError, match=message):
        bundle.make_bundle(bundle_runs, tmp_path / "x.zip")
    assert not (tmp_path / "x.zip").exists()


def test_refuses_a_token_hidden_in_a_config(bundle_runs, tmp_path):
    (bundle_runs / "strong" / "merged" / "notes.md").write_text("key: hf_" + "a" * 34)
    with pytest.raises(bundle.BundleError, match="looks like a secret"):
        bundle.make_bundle(bundle_runs, tmp_path / "x.zip")


# -- what ships from a model folder: the allow-list, a cut-down report, nothing through links --------------------
def shipped(out, run="strong") -> dict[str, bytes]:
    import zipfile

    archive = zipfile.ZipFile(out)
    prefix = f"models/{run}/"
    return {n[len(prefix):]: archive.read(n) for n in archive.namelist() if n.startswith(prefix)}


def test_only_model_files_ship_and_the_report_keeps_its_metrics_and_decision(bundle_runs, tmp_path, capsys):
    import json

    merged = bundle_runs / "strong" / "merged"
    (merged / "train.csv").write_text("id,prompt,score\n1,secret prompt,3\n")
    (merged / "README.md").write_text(f"trained from {tmp_path}/data/train.csv\n")
    (merged / "plots").mkdir()
    (merged / "plots" / "loss.png").write_bytes(b"png")
    report = {"qwk": 0.8, "accuracy": 0.8, "metric": "qwk", "mode": "score", "created": "2026-12-04",
              "decision": {"rule": "argmax"}, "class_prior": {"overall": {"3": 1.0}}, "model_dir": str(merged),
              "most_confident_errors": [{"id": "a", "gold": 3, "prompt": "the user's text"}]}
    (merged / "validation_report.json").write_text(json.dumps(report))
    out = tmp_path / "x.zip"
    bundle.make_bundle(bundle_runs, out)
    files = shipped(out)
    assert set(files) == {"config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
                          "tokenizer_config.json", "chat_template.jinja", "validation_report.json"}
    assert json.loads(files["validation_report.json"]) == {
        k: report[k] for k in ("qwk", "accuracy", "metric", "mode", "created", "decision", "class_prior")}
    assert str(tmp_path).encode() not in b"".join(files.values())
    assert "train.csv" in capsys.readouterr().err  # what stayed home is said


@pytest.mark.parametrize("name", ["aws_credentials", "service_account_password.json", "id_rsa", ".git-credentials"])
def test_refuses_credential_files_by_other_names(bundle_runs, tmp_path, name):
    (bundle_runs / "strong" / "merged" / name).write_text("x")
    with pytest.raises(bundle.BundleError, match=f"{name}: looks like a secret"):
        bundle.make_bundle(bundle_runs, tmp_path / "x.zip")


@pytest.mark.parametrize("text", ["aws_key = AKIA" + "ABCDEFGHIJKLMNOP", "GITHUB ghp_" + "a" * 36,
                                  '"api_key": "' + "s3cr3tvalue" * 2 + '"', "openai sk-" + "b" * 40])
def test_refuses_keys_and_tokens_inside_any_file(bundle_runs, tmp_path, text):
    note = text.replace('"', "'")
    (bundle_runs / "strong" / "merged" / "generation_config.json").write_text(f'{{"note": "{note}"}}')
    with pytest.raises(bundle.BundleError, match="generation_config.json: looks like a secret"):
        bundle.make_bundle(bundle_runs, tmp_path / "x.zip")


def test_refuses_the_value_of_a_secret_named_environment_variable(bundle_runs, tmp_path, monkeypatch):
    monkeypatch.setenv("ACME_API_KEY", "plain-looking-value-42")
    (bundle_runs / "strong" / "merged" / "config.json").write_text('{"note": "plain-looking-value-42"}')
    with pytest.raises(bundle.BundleError, match=r"config.json: looks like a secret \(it holds the value of \$ACME_API_KEY"):
        bundle.make_bundle(bundle_runs, tmp_path / "x.zip")


def test_never_follows_a_link_out_of_the_model_folder(bundle_runs, tmp_path):
    outside = tmp_path / "outside.json"
    outside.write_text('{"private": 1}')
    link = bundle_runs / "strong" / "merged" / "generation_config.json"
    link.unlink()
    link.symlink_to(outside)
    with pytest.raises(bundle.BundleError, match="generation_config.json: a link to .*outside"):
        bundle.make_bundle(bundle_runs, tmp_path / "x.zip")


# -- the bundle's own inputs are safe from it ---------------------------------------------------------------------
def test_two_runs_with_the_same_folder_name_are_refused(bundle_runs, tmp_path, tiny_model_dir):
    import shutil

    other = tmp_path / "elsewhere" / "strong"
    shutil.copytree(bundle_runs / "strong", other)
    with pytest.raises(bundle.BundleError, match="two runs are named strong"):
        bundle.make_bundle(bundle_runs, tmp_path / "x.zip", pick=[str(bundle_runs / "strong"), str(other)])


@pytest.mark.parametrize("target", ["merged/model.safetensors", "merged/config.json"])
def test_an_out_path_the_bundle_reads_is_refused(bundle_runs, tmp_path, target):
    source = bundle_runs / "strong" / target
    before = source.read_bytes()
    assert bundle.main(["--runs", str(bundle_runs), "--out", str(source)]) == 2
    assert source.read_bytes() == before
