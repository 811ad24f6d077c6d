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
