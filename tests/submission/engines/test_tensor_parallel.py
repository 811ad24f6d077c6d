"""`--tensor-parallel-size N`: passed to vLLM's LLM(...) as the pinned vLLM names it; refused in one line when this
machine (or the model) cannot take it; a model split over GPUs never falls back to transformers on one device."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from submission.engines import engine_vllm
from tests import fake_vllm
from tests.contract_wheels import explicit_params, find_function, open_wheel, pinned
from trainer.cli import app


@pytest.fixture
def model_folder(tmp_path):
    folder = tmp_path / "teacher"
    folder.mkdir()
    config = {"num_attention_heads": 40, "num_key_value_heads": 8}  # a 32B Qwen2.5's heads
    (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")
    return folder


def test_the_engine_passes_tensor_parallel_size_and_the_pinned_llm_names_it(tiny_model_dir, tiny_model, monkeypatch):
    from submission.engines.engine_hf import load_tokenizer

    api, calls = fake_vllm.fake_api(tiny_model)
    monkeypatch.setattr(engine_vllm, "load_vllm_api", lambda: api)
    monkeypatch.setattr(engine_vllm, "visible_gpus", lambda: 2)
    engine_vllm.VllmEngine(tiny_model_dir, load_tokenizer(tiny_model_dir), max_model_len=256, tensor_parallel_size=2)
    engine_vllm.VllmEngine(tiny_model_dir, load_tokenizer(tiny_model_dir), max_model_len=256)
    split, single = calls["init"]
    assert split["tensor_parallel_size"] == 2 and "tensor_parallel_size" not in single
    with open_wheel("vllm") as wheel:
        init = explicit_params(find_function(wheel, "vllm/entrypoints/llm.py", "LLM.__init__"))
        assert "tensor_parallel_size" in init, f"vllm=={pinned('vllm')} LLM() has no tensor_parallel_size"
        # What our pre-check spares the user: vLLM's own refusal, raised only once its engine process is up.
        parallel = wheel.read("vllm/config/parallel.py").decode()
        assert "is larger than the number of" in parallel and "device_count() < self.world_size" in parallel


@pytest.mark.parametrize(("size", "visible", "expected"), [
    (1, 0, None), (2, 2, None), (8, 8, None),
    (4, 1, "--tensor-parallel-size 4: only 1 GPU(s) visible here"),
    (3, 4, "--tensor-parallel-size 3: the model's 40 attention heads do not split 3 ways"),
    (5, 8, "--tensor-parallel-size 5: the model's 8 key/value heads do not split 5 ways"),
    (16, 16, "--tensor-parallel-size 16: the model's 40 attention heads do not split 16 ways"),
])
def test_the_problem_is_named_before_anything_loads(model_folder, size, visible, expected, monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    problem = engine_vllm.tensor_parallel_problem(size, model_folder, visible=visible)
    assert problem == expected or (expected and problem.startswith(expected))


def test_distill_refuses_more_gpus_than_visible_in_one_line(model_folder, tmp_path, monkeypatch):
    monkeypatch.setattr(engine_vllm, "visible_gpus", lambda: 1)
    result = CliRunner().invoke(app, ["distill", "--teacher", str(model_folder), "--data", str(tmp_path / "x.csv"),
                                      "--out", str(tmp_path / "soft.csv"), "--tensor-parallel-size", "4"])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: --tensor-parallel-size 4: only 1 GPU(s) visible here")
    assert result.stderr.count("\n") == 1


def test_evaluate_refuses_it_with_the_transformers_engine(tmp_path):
    run = tmp_path / "run"
    (run / "merged").mkdir(parents=True)
    (run / "training_config.json").write_text(json.dumps({"config": {}}), encoding="utf-8")
    result = CliRunner().invoke(app, ["evaluate", str(run), "--engine", "hf", "--tensor-parallel-size", "2"])
    assert result.exit_code == 2
    assert result.stderr == "error: --tensor-parallel-size 2: needs --engine vllm or auto (transformers runs on one device)\n"


def test_a_split_model_does_not_fall_back_to_transformers(tiny_model_dir, monkeypatch):
    from submission.scoring.scorer import ModelLoadError, ScoringSettings, score_prompts

    monkeypatch.setattr(engine_vllm, "visible_gpus", lambda: 0)
    monkeypatch.setattr(engine_vllm, "vllm_available", lambda: True)
    settings = ScoringSettings(engine="vllm", device="cpu", max_tokens=256, tensor_parallel_size=2)
    with pytest.raises(ModelLoadError, match="only 0 GPU"):
        score_prompts(tiny_model_dir, ["### Задание для оценки:\nx"], settings)


def test_the_runtime_refuses_it_before_reading_the_test_file(tmp_path, monkeypatch, capsys):
    from submission import cli as runtime_cli

    monkeypatch.setattr(engine_vllm, "visible_gpus", lambda: 1)
    args = runtime_cli.build_parser().parse_args(["--test_path", str(tmp_path / "missing.csv"), "--pred_path",
                                                  str(tmp_path / "p.csv"), "--tensor-parallel-size", "2"])
    assert runtime_cli.run(args) == 2
    assert capsys.readouterr().err.startswith("error: --tensor-parallel-size 2: only 1 GPU(s) visible here")
