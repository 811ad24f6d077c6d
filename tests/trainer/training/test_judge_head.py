"""The judge head (trainer/training/judge_head.py): a classifier on a middle layer, trained through `trainer train`, saved as a
plain transformers model that the runtime scores exactly as training computed it, under the runtime's contract."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def head_run(tmp_path_factory, synth_dir, tiny_model_dir):
    from trainer.recipes.pipeline import train_merge_evaluate
    from trainer.training.config import resolve_config

    out = tmp_path_factory.mktemp("head")
    config = resolve_config("demo", overrides=["judge_head=true", "judge_head_train_layers=1", "max_steps=6",
                                               "curve_steps=3", "learning_rate=1e-4", f"feature_cache={out / 'fc'}"],
                            train_path=str(synth_dir / "train.csv"), base_model=str(tiny_model_dir),
                            output_dir=str(out), run_name="head")
    return train_merge_evaluate(config), out


def test_the_head_is_a_shorter_sequence_classifier_in_safetensors(head_run, tiny_model_dir):
    trained, _ = head_run
    merged = trained.path / "merged"
    config = json.loads((merged / "config.json").read_text())
    base = json.loads((Path(tiny_model_dir) / "config.json").read_text())
    record = json.loads((trained.path / "training_config.json").read_text())
    assert config["architectures"][0].endswith("ForSequenceClassification")
    assert len(config["id2label"]) == 5 and config["id2label"] == {"0": "-1", "1": "0", "2": "1", "3": "2", "4": "3"}
    assert config["num_hidden_layers"] == record["judge_head"]["layer"] < base["num_hidden_layers"]
    assert record["merged_by"] == "judge_head" and list(merged.glob("*.safetensors"))
    assert not list(merged.glob("*.bin")) and "auto_map" not in config  # no pickles, no remote code
    assert [r["layer"] for r in record["judge_head"]["probe"]] == list(range(1, base["num_hidden_layers"]))
    assert trained.report is not None and "collapsed" in trained.report


def test_training_logits_equal_the_runtime_engine_logits(tiny_model_dir, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from submission.engines.engine_hf import TransformersEngine
    from trainer.training.judge_head import CachedTop, build_classifier

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    lm = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    classifier = build_classifier(lm, 2, tokenizer.pad_token_id)
    torch.manual_seed(0)
    with torch.no_grad():
        classifier.score.weight.normal_()
    top = CachedTop(classifier, start=1)
    rows = [[5, 6, 7, 8, 9, 10, 11], [12, 13, 14], [tokenizer.pad_token_id, 20, 21]]  # a pad id inside a prompt too
    trained = torch.cat([top.top(top.bottom(r)) for r in rows]).detach().numpy()
    classifier.save_pretrained(tmp_path, safe_serialization=True)
    tokenizer.save_pretrained(tmp_path)
    engine = TransformersEngine(tmp_path, device="cpu")  # batched, left-padded
    assert np.allclose(engine.label_logits(rows), trained, atol=1e-4)


def test_the_runtime_scores_a_judge_head_end_to_end_within_each_rubric(head_run, synth_dir, tmp_path):
    from submission.prompts.sections import parse_prompt

    trained, _ = head_run
    test = pd.read_csv(synth_dir / "test.csv", dtype={"id": str}).head(20)
    test_csv = tmp_path / "test.csv"
    test.to_csv(test_csv, index=False)
    pred = tmp_path / "pred.csv"
    proc = subprocess.run([sys.executable, "run.py", "--test_path", str(test_csv), "--pred_path", str(pred),
                           "--model-dir", str(trained.path / "merged"), "--engine", "hf", "--device", "cpu"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    scores = pd.read_csv(pred, dtype={"id": str})
    assert list(scores["id"]) == list(test["id"])
    for prompt, score in zip(test["prompt"], scores["score"], strict=True):
        assert int(score) in parse_prompt(prompt).allowed
    meta = json.loads(pred.with_name(pred.stem + "_meta.json").read_text()) if pred.with_name(
        pred.stem + "_meta.json").is_file() else {}
    assert not meta or meta.get("rows_from_prior", 0) == 0


def test_probe_init_predicts_like_the_probe(tmp_path):
    import torch

    from trainer.training.judge_head import fit_probe, probe_init

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, 300)
    centres = rng.normal(size=(4, 16)) * 3
    features = 20 + centres[labels] + rng.normal(size=(300, 16))  # far from the origin, like RMSNorm outputs

    class Head:
        score = torch.nn.Linear(16, 5, bias=False)

    probe_init(Head, features, labels.tolist(), c=1.0)
    head_pred = (torch.as_tensor(features, dtype=torch.float32) @ Head.score.weight.T).argmax(1).numpy() - 1
    probe_pred = fit_probe(features, labels.tolist(), 1.0).predict(features)
    assert (head_pred == probe_pred).mean() > 0.95
    assert (head_pred != -1).all()  # -1 never seen in training: its logit sits far below


def test_the_feature_cache_is_reused_by_another_run(head_run, monkeypatch, tiny_model_dir):
    import torch
    from transformers import AutoModelForCausalLM

    from trainer.training import judge_head

    _, out = head_run
    cached = sorted((out / "fc").glob("*.npy"))
    assert cached
    lm = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    rows = [[5, 6, 7], [8, 9]]
    key = judge_head.model_key(tiny_model_dir)
    first = judge_head.cached_last_token_states(lm, rows, out / "fc2", key)
    monkeypatch.setattr(judge_head, "last_token_states", lambda *a, **k: pytest.fail("recomputed a cached row"))
    again = judge_head.cached_last_token_states(lm, rows, out / "fc2", key)
    assert np.array_equal(first, again)


def test_autopick_treats_a_judge_head_like_any_merged_model(head_run):
    from submission.choice.autopick import candidate_model_dirs, rank_candidates

    trained, out = head_run
    found = candidate_model_dirs([out])
    assert trained.path / "merged" in found
    assert rank_candidates(found, "qwk")[0].value == trained.report["qwk"]


def test_vllm_refuses_a_judge_head_so_the_runtime_falls_back_to_transformers(head_run):
    from submission.engines.engine_vllm import EngineStartError, VllmEngine

    trained, _ = head_run
    with pytest.raises(EngineStartError, match="judge head"):
        VllmEngine(trained.path / "merged", tokenizer=None, max_model_len=512)
