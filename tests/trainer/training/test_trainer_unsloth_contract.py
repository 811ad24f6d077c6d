"""Our Unsloth calls (trainer/training/backend_unsloth.py), run against a recording fake and the pinned Unsloth's signatures.

Unsloth cannot import on CPU torch, so a fake ``FastLanguageModel`` records the keywords our code really passes,
and the pinned wheel's *source* (ast, no import; tests/contract_wheels.py) says which keywords that exact version
declares and what it defaults. Every keyword we pass must be a named parameter there (a ``**kwargs`` would swallow a
misspelt one), and every configured value Unsloth has a default for must be passed. See tests/trainer/test_trainer_e2e.py
for the subprocess check that a CPU train never imports unsloth, bitsandbytes or xformers.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from tests.contract_wheels import explicit_params, find_function, open_wheel, pinned
from trainer.training import backend_unsloth
from trainer.training.config import TrainConfig

SIGNATURES = {  # our call -> where the pinned Unsloth defines it
    "from_pretrained": ("unsloth/models/loader.py", "FastLanguageModel.from_pretrained"),
    # FastLanguageModel.get_peft_model is functools.wraps(FastLlamaModel.get_peft_model) forwarding *args/**kwargs.
    "get_peft_model": ("unsloth/models/llama.py", "FastLlamaModel.get_peft_model"),
    "save_pretrained_merged": ("unsloth/save.py", "unsloth_save_pretrained_merged"),
}
# Configured values Unsloth would otherwise default (to values that differ from ours), per call.
MUST_PASS = {
    "from_pretrained": {"max_seq_length", "dtype", "load_in_4bit", "load_in_16bit", "full_finetuning",
                        "use_gradient_checkpointing", "random_state", "trust_remote_code"},
    "get_peft_model": {"r", "target_modules", "lora_alpha", "lora_dropout", "use_gradient_checkpointing",
                       "random_state", "max_seq_length", "modules_to_save"},
    "save_pretrained_merged": {"save_method", "safe_serialization"},
}


class FakeModel:
    """What Unsloth returns: records save calls and writes a loadable-looking folder."""

    def __init__(self, calls):
        self.calls = calls

    def named_parameters(self):  # the finite-weights check before saving reads them
        return iter(())

    def save_pretrained(self, path, **kwargs):
        Path(path).mkdir(parents=True, exist_ok=True)
        (Path(path) / "adapter_config.json").write_text("{}")

    def save_pretrained_merged(self, *args, **kwargs):
        self.calls.append(("save_pretrained_merged", args, kwargs))
        out = Path(kwargs["save_directory"])
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text('{"merged_by": "fake unsloth"}')
        (out / "model.safetensors").write_bytes(b"unsloth")


class FakeFastLanguageModel:
    """Records every call's positional and keyword arguments."""

    def __init__(self):
        self.calls = []

    def from_pretrained(self, *args, **kwargs):
        self.calls.append(("from_pretrained", args, kwargs))
        return FakeModel(self.calls), "tokenizer"

    def get_peft_model(self, model, *args, **kwargs):
        self.calls.append(("get_peft_model", args, kwargs))
        return model


@pytest.fixture
def fake_unsloth(monkeypatch):
    fake = FakeFastLanguageModel()
    monkeypatch.setattr(backend_unsloth, "import_unsloth", lambda: fake)
    monkeypatch.setattr(backend_unsloth, "bitsandbytes_problem", lambda: None)  # as on a GPU with gpu-train installed
    return fake


@pytest.fixture(scope="module")
def unsloth_wheel():
    with open_wheel("unsloth") as archive:
        yield archive


def _signature(wheel, call) -> ast.FunctionDef:
    return find_function(wheel, *SIGNATURES[call])


def _defaults(function: ast.FunctionDef) -> dict[str, str]:
    args = function.args
    positional = [*args.posonlyargs, *args.args]
    named = dict(zip([a.arg for a in positional[len(positional) - len(args.defaults):]], args.defaults, strict=True))
    named.update({a.arg: d for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True) if d is not None})
    return {name: ast.unparse(node) for name, node in named.items()}


def _recorded(config, merged_dir):
    """Every call a LoRA/full run of ``config`` makes through backend_unsloth (load, then Unsloth's merge)."""
    import torch

    fake = FakeFastLanguageModel()
    original = backend_unsloth.import_unsloth, backend_unsloth.bitsandbytes_problem
    backend_unsloth.import_unsloth = lambda: fake
    backend_unsloth.bitsandbytes_problem = lambda: None
    try:
        model, tokenizer = backend_unsloth.load_model(config, torch.bfloat16)
        if config.is_lora:
            backend_unsloth.save_merged(model, tokenizer, merged_dir)
    finally:
        backend_unsloth.import_unsloth, backend_unsloth.bitsandbytes_problem = original
    return fake.calls


CONFIGS = {
    "lora": TrainConfig(base_model="base", method="lora", gradient_checkpointing=False, max_tokens=3072, seed=7,
                        modules_to_save=["embed_tokens"]),
    "qlora": TrainConfig(base_model="base", method="qlora", gradient_checkpointing=True, max_tokens=1024, seed=1),
    "full": TrainConfig(base_model="base", method="full", gradient_checkpointing=False, max_tokens=4096, seed=3),
}


@pytest.mark.parametrize("method", CONFIGS)
def test_every_keyword_we_pass_is_declared_by_the_pinned_unsloth(method, unsloth_wheel, tmp_path):
    for call, args, kwargs in _recorded(CONFIGS[method], tmp_path / "merged"):
        assert not args, f"{call}: pass keywords only, so signature drift cannot shift arguments"
        missing = set(kwargs) - explicit_params(_signature(unsloth_wheel, call))
        assert not missing, f"{SIGNATURES[call][1]} in unsloth=={pinned('unsloth')} lacks {sorted(missing)}"


@pytest.mark.parametrize("method", CONFIGS)
def test_every_configured_value_with_an_unsloth_default_is_passed(method, unsloth_wheel, tmp_path):
    calls = _recorded(CONFIGS[method], tmp_path / "merged")
    assert [c[0] for c in calls] == (["from_pretrained", "get_peft_model", "save_pretrained_merged"]
                                     if method != "full" else ["from_pretrained"])
    for call, _, kwargs in calls:
        defaults = _defaults(_signature(unsloth_wheel, call))
        assert MUST_PASS[call] <= set(defaults), f"{call}: the pinned Unsloth no longer defaults {MUST_PASS[call]}"
        assert MUST_PASS[call] <= set(kwargs), f"{call} leaves {sorted(MUST_PASS[call] - set(kwargs))} to Unsloth"


def test_the_configured_values_reach_unsloth(tmp_path):
    import torch

    lora = dict((c, k) for c, _, k in _recorded(CONFIGS["lora"], tmp_path / "lora"))
    assert lora["from_pretrained"]["model_name"] == "base"
    assert lora["from_pretrained"]["max_seq_length"] == 3072 and lora["from_pretrained"]["dtype"] is torch.bfloat16
    assert lora["from_pretrained"]["use_gradient_checkpointing"] is False  # Unsloth's default is "unsloth"
    assert lora["from_pretrained"]["load_in_4bit"] is False and lora["from_pretrained"]["load_in_16bit"] is True
    assert lora["from_pretrained"]["random_state"] == 7 and lora["from_pretrained"]["trust_remote_code"] is False
    assert lora["get_peft_model"]["use_gradient_checkpointing"] is False
    assert lora["get_peft_model"]["max_seq_length"] == 3072 and lora["get_peft_model"]["modules_to_save"] == [
        "embed_tokens"]
    assert lora["save_pretrained_merged"]["save_method"] == "merged_16bit"

    qlora = dict((c, k) for c, _, k in _recorded(CONFIGS["qlora"], tmp_path / "qlora"))
    assert qlora["from_pretrained"]["load_in_4bit"] is True and qlora["from_pretrained"]["load_in_16bit"] is False
    assert qlora["from_pretrained"]["use_gradient_checkpointing"] == "unsloth"

    full = dict((c, k) for c, _, k in _recorded(CONFIGS["full"], tmp_path / "full"))["from_pretrained"]
    assert full["full_finetuning"] is True and full["use_gradient_checkpointing"] is False
    assert not (full["load_in_4bit"] or full["load_in_8bit"] or full["load_in_16bit"])


def test_unsloth_lora_run_is_merged_exactly_once(fake_unsloth, monkeypatch, tmp_path):
    import torch

    from trainer.training import merge
    from trainer.training.rundir import RunDir
    from trainer.training.train import save_trained

    config = CONFIGS["lora"].model_copy(update={"output_dir": str(tmp_path), "train_path": "train.csv"})
    run = RunDir(config.run_dir())
    run.write_record({"config": config.model_dump(), "backend": "unsloth"})
    model, tokenizer = backend_unsloth.load_model(config, torch.bfloat16)
    run.update_record(merged_by=save_trained(model, tokenizer, config, run, unsloth=True))
    assert run.has_adapter() and run.has_merged_weights()

    def merge_again(*args, **kwargs):
        raise AssertionError("merge_run merged an Unsloth run a second time")

    monkeypatch.setattr(merge, "merge_adapter", merge_again)
    assert merge.merge_run(run.path) == run.merged
    assert [c[0] for c in fake_unsloth.calls].count("save_pretrained_merged") == 1
    assert json.loads((run.merged / "config.json").read_text()) == {"merged_by": "fake unsloth"}
    assert run.model_card_path.is_file() and "merged by: unsloth" in run.model_card_path.read_text()


def test_dry_run_shows_the_resolved_unsloth_keywords():
    from typer.testing import CliRunner

    from trainer.cli import app

    result = CliRunner().invoke(app, ["train", "--experiment", "1", "--set", "backend=unsloth", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["backend"] == "unsloth"  # stdout stays the config, as JSON
    shown = json.loads(result.stderr.split("\n", 1)[1])
    config = TrainConfig(**json.loads(result.stdout))
    assert shown["FastLanguageModel.from_pretrained"]["use_gradient_checkpointing"] == "unsloth"  # preset: true
    assert shown["FastLanguageModel.get_peft_model"] == json.loads(
        json.dumps(backend_unsloth.get_peft_model_kwargs(config)))
    assert shown["model.save_pretrained_merged"]["save_directory"].endswith("exp1_lora/merged")


def test_pinned_unsloth_forwards_get_peft_model_and_knows_merged_16bit(unsloth_wheel):
    wrapper = find_function(unsloth_wheel, "unsloth/models/loader.py", "FastLanguageModel.get_peft_model")
    assert "FastLlamaModel.get_peft_model" in ast.unparse(wrapper)
    save = ast.unparse(find_function(unsloth_wheel, *SIGNATURES["save_pretrained_merged"]))
    assert backend_unsloth.MERGE_METHOD in save


def test_unsloth_pins_agree():
    assert pinned("unsloth") == pinned("unsloth-zoo") and "unsloth==" + pinned("unsloth") in backend_unsloth.__doc__


# -- bitsandbytes: Unsloth 2026.10.9 cannot load any model without it (GPU check, 2026-12-04) -------------------------
def test_the_pinned_unsloth_zoo_still_requires_bitsandbytes_to_load_a_model():
    """The reason for the preflight check: if a later unsloth_zoo drops the hard import, this fails and says so."""
    with open_wheel("unsloth-zoo") as wheel:
        source = ast.unparse(find_function(wheel, "unsloth_zoo/patching_utils.py", "patch_model_and_tokenizer"))
    assert "from bitsandbytes.nn import Linear4bit" in source and "Please install bitsandbytes" in source


def test_unsloth_without_bitsandbytes_is_refused_before_loading(monkeypatch):
    import sys

    import torch

    fake = FakeFastLanguageModel()
    monkeypatch.setattr(backend_unsloth, "import_unsloth", lambda: fake)
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)  # import fails as where the wheel is absent
    monkeypatch.setitem(sys.modules, "bitsandbytes.nn", None)
    with pytest.raises(backend_unsloth.BackendUnavailable, match=r"bitsandbytes.*pip install bitsandbytes==0\.50\.2"):
        backend_unsloth.load_model(CONFIGS["lora"], torch.bfloat16)
    assert fake.calls == [], "from_pretrained must not run: it fails deep inside unsloth_zoo"


def test_auto_backend_uses_peft_on_a_gpu_without_bitsandbytes_and_an_explicit_request_says_why(monkeypatch):
    import sys

    import torch

    from trainer.training.train import use_unsloth

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(backend_unsloth, "import_unsloth", FakeFastLanguageModel)
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)
    monkeypatch.setitem(sys.modules, "bitsandbytes.nn", None)
    assert use_unsloth(TrainConfig(base_model="base", backend="auto")) is False
    with pytest.raises(backend_unsloth.BackendUnavailable, match="backend unsloth requested but bitsandbytes"):
        use_unsloth(TrainConfig(base_model="base", backend="unsloth"))
    monkeypatch.setattr(backend_unsloth, "bitsandbytes_problem", lambda: None)
    assert use_unsloth(TrainConfig(base_model="base", backend="auto")) is True


def test_a_requested_unsloth_that_cannot_run_is_one_line_at_the_cli(tmp_path, monkeypatch, synth_dir, tiny_model_dir):
    from typer.testing import CliRunner

    from trainer.cli import app

    monkeypatch.setattr(backend_unsloth, "missing_requirement", lambda: "bitsandbytes does not import (fix: X)")
    monkeypatch.setattr(backend_unsloth, "import_unsloth_on_cpu", backend_unsloth.require)
    result = CliRunner().invoke(app, ["train", "--experiment", "1", "--set", "backend=unsloth", "--train-path",
                                      str(synth_dir / "train.csv"), "--base-model", str(tiny_model_dir),
                                      "--output-dir", str(tmp_path / "runs")])
    assert result.exit_code == 2, result.output
    assert "error: backend unsloth requested but bitsandbytes does not import (fix: X)" in result.output
    assert "Traceback" not in result.output
