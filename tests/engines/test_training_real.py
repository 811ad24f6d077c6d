"""Training on the real Unsloth (its CPU fallback) and the real bitsandbytes (4-bit nf4 on the CPU), no fakes.

Trainings run as ``python -m trainer train`` subprocesses: importing Unsloth patches transformers/peft/trl and
rewrites os.environ process-wide, so it must never run inside the test session.

Tolerances: the two backends run the same fp32 forward on the same rows with the same LoRA A matrices (both seed
right before drawing them), so the first step's loss and gradient norm agree to float32 rounding (measured: equal
to all printed digits); 1e-4 relative leaves room for kernel order and fails on a different loss normalisation
(a factor of the accumulation steps is 2x) or a different trainable set. QLoRA vs its merge: the merged model is
the fp32 base + the adapter, the QLoRA model the nf4 base + the adapter, so they differ by the 4-bit quantisation
error of the base (~1/8 of a weight's scale): label probabilities within 0.01, the same top label on >= 90% rows.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from submission.data import read_test_csv
from tests.engines.conftest import ROOT, engine_env, run_runtime

pytestmark = pytest.mark.engines
REL = 1e-4


def train(base, data, out, name, *settings, merge=True) -> dict:
    """One ``trainer train`` run of the demo preset; its first logged step (metrics.jsonl)."""
    command = [sys.executable, "-m", "trainer", "train", "--experiment", "demo", "--train-path", str(data),
               "--base-model", str(base), "--output-dir", str(out), "--run-name", name, "--set", "logging_steps=1",
               "--set", "save_steps=1000", *[a for s in settings for a in ("--set", s)]]
    proc = subprocess.run(command + ([] if merge else ["--no-merge"]), cwd=ROOT, env=engine_env(),
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads((out / name / "metrics.jsonl").read_text(encoding="utf-8").splitlines()[0])


def test_unsloth_on_cpu_trains_merges_once_and_scores_like_peft_would_start(vllm_model_dir, synth_dir, tmp_path):
    data = synth_dir / "train.csv"
    peft = train(vllm_model_dir, data, tmp_path, "peft", "backend=peft", "batch_size=8", "max_steps=1", merge=False)
    unsloth = train(vllm_model_dir, data, tmp_path, "unsloth", "backend=unsloth", "batch_size=8", "max_steps=2")
    accumulated = train(vllm_model_dir, data, tmp_path, "unsloth_4x2", "backend=unsloth", "batch_size=4",
                        "grad_accum=2", "max_steps=1", merge=False)
    for other in (unsloth, accumulated):
        assert other["loss"] == pytest.approx(peft["loss"], rel=REL)
        assert other["grad_norm"] == pytest.approx(peft["grad_norm"], rel=REL)
    record = json.loads((tmp_path / "unsloth" / "training_config.json").read_text(encoding="utf-8"))
    assert record["backend"] == "unsloth" and record["merged_by"] == "unsloth"
    merged = tmp_path / "unsloth" / "merged"
    assert (merged / "validation_report.json").is_file() and not list((tmp_path / "unsloth").glob("merged*/adapter*"))
    run = run_runtime(["--test_path", str(synth_dir / "test.csv"), "--pred_path", str(tmp_path / "p.csv"),
                       "--model-dir", str(merged), "--engine", "hf"])
    assert run.returncode == 0, run.stderr[-3000:]


def _label_probabilities(model, tokenizer, prompts):
    import torch

    from submission.prompts.prompting import PromptRenderer
    from submission.scoring.decoding import label_token_ids, probabilities_from_label_logits

    ids = label_token_ids(tokenizer)
    renderer = PromptRenderer(tokenizer, max_tokens=512)
    rows, allowed = [], []
    for rendered in renderer.render_many(prompts):
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([rendered.input_ids])).logits[0, -1].float()
        rows.append(logits[ids].numpy())
        allowed.append(rendered.sections.allowed)
    return probabilities_from_label_logits(np.array(rows), allowed)


def test_qlora_trains_on_cpu_and_its_merge_onto_the_fp32_base_scores_like_it(vllm_model_dir, synth_dir, tmp_path):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

    train(vllm_model_dir, synth_dir / "train.csv", tmp_path, "qlora", "method=qlora", "modules_to_save=[]",
          "max_steps=30", "learning_rate=1e-2")
    run = tmp_path / "qlora"
    assert json.loads((run / "training_config.json").read_text(encoding="utf-8"))["merged_by"] == "peft"
    tokenizer = AutoTokenizer.from_pretrained(str(vllm_model_dir))
    quantised = AutoModelForCausalLM.from_pretrained(
        vllm_model_dir, dtype=torch.float32, quantization_config=BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.float32))
    qlora = PeftModel.from_pretrained(quantised, str(run / "adapter")).eval()
    merged = AutoModelForCausalLM.from_pretrained(run / "merged", dtype=torch.float32).eval()
    base = AutoModelForCausalLM.from_pretrained(vllm_model_dir, dtype=torch.float32).eval()

    # The merge went onto the unquantised base: merged - base is the adapter's delta (B @ A x scale), up to fp16.
    layer = qlora.base_model.model.model.layers[0].self_attn.q_proj
    delta = (layer.lora_B["default"].weight @ layer.lora_A["default"].weight) * layer.scaling["default"]
    w_merged = merged.model.layers[0].self_attn.q_proj.weight
    w_base = base.model.layers[0].self_attn.q_proj.weight
    assert delta.abs().max() > 1e-3  # the adapter learnt something
    onto_base = (w_merged - (w_base + delta)).abs().max()
    assert onto_base < 2e-4, f"merged weights are not fp32 base + adapter (max diff {onto_base:.2e})"
    from bitsandbytes.functional import dequantize_4bit

    weight = layer.base_layer.weight
    dequantised = dequantize_4bit(weight.data, weight.quant_state).float().reshape(w_base.shape)
    assert (w_merged - (dequantised + delta)).abs().max() > 5 * onto_base  # not the 4-bit weights + adapter

    prompts = list(read_test_csv(synth_dir / "test.csv")["prompt"].head(20))
    p_qlora = _label_probabilities(qlora, tokenizer, prompts)
    p_merged = _label_probabilities(merged, tokenizer, prompts)
    assert np.abs(p_qlora - p_merged).max() < 0.01
    assert (p_qlora.argmax(axis=1) == p_merged.argmax(axis=1)).mean() >= 0.9
