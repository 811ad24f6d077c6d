"""PEFT's merge contract: identical logits before merge, after merge and after reload of ``merged/``.

The LoRA B matrices and the trained embedding copy are randomised, so an adapter that is dropped, half-applied or
re-tied to the wrong embedding changes the logits and fails the test. The tiny model ties its embeddings, which is
the case that breaks a naive merge of ``modules_to_save=["embed_tokens"]``.
"""

from __future__ import annotations

import json

import pytest


@pytest.fixture(scope="module")
def lora_run(tiny_model_dir, tmp_path_factory):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    run_dir = tmp_path_factory.mktemp("lora_run")
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    assert base.get_input_embeddings().weight is base.get_output_embeddings().weight  # tied, as in Qwen3-0.6B
    model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"],
                                            modules_to_save=["embed_tokens"], task_type="CAUSAL_LM"))
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name or "modules_to_save" in name:
                param.add_(torch.randn_like(param) * 0.5)
    model.eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    ids = torch.tensor([tokenizer("### Задание для оценки:\nсколько будет 2+2\n### Ответ: 4")["input_ids"]])
    with torch.no_grad():
        before = model(input_ids=ids).logits
    model.save_pretrained(run_dir / "adapter")
    tokenizer.save_pretrained(run_dir / "adapter")
    config = {"base_model": str(tiny_model_dir), "method": "lora", "name": "t", "train_path": "x.csv"}
    (run_dir / "training_config.json").write_text(json.dumps({"config": config}))
    with torch.no_grad():
        merged_in_memory = model.merge_and_unload()(input_ids=ids).logits
    return run_dir, ids, before, merged_in_memory


def test_logits_equal_before_merge_after_merge_and_after_reload(lora_run, tiny_model_dir):
    import torch
    from transformers import AutoModelForCausalLM

    from trainer.training.merge import merge_run

    run_dir, ids, before, merged_in_memory = lora_run
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    with torch.no_grad():
        assert (base(input_ids=ids).logits - before).abs().max() > 0.1  # the adapter matters
    assert torch.allclose(merged_in_memory, before, atol=1e-4)
    out = merge_run(run_dir)
    reloaded = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    with torch.no_grad():
        after = reloaded(input_ids=ids).logits
    assert torch.allclose(after, before, atol=5e-2, rtol=1e-2), (after - before).abs().max()
    assert (after.argmax(-1) == before.argmax(-1)).float().mean() > 0.95


def test_merged_dir_is_fp16_without_adapter_keys(lora_run):
    from safetensors import safe_open

    from trainer.training.merge import merge_run

    run_dir = lora_run[0]
    out = merge_run(run_dir)
    files = list(out.glob("*.safetensors"))
    assert files and not list(out.glob("adapter_*"))
    for path in files:
        with safe_open(path, "pt") as handle:
            keys = list(handle.keys())
            assert not [k for k in keys if "lora_" in k or "modules_to_save" in k or "base_model" in k]
            assert {str(handle.get_tensor(k).dtype) for k in keys} == {"torch.float16"}
    assert (out / "tokenizer_config.json").is_file()
    assert "<|im_start|>" in (out / "chat_template.jinja").read_text() or "chat_template" in (
        out / "tokenizer_config.json").read_text()
    assert "base model" in (out / "README.md").read_text()


def test_lora_on_a_tied_head_survives_the_merge(tiny_model_dir, tmp_path):
    """LoRA on lm_head of a tied model: merging it into the shared matrix changed the other side too
    and kept the config tied (logits off by ~20 on the tiny model); the merge now unties first."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from trainer.training.merge import merge_run

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "lm_head"],
                                            task_type="CAUSAL_LM"))
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.add_(torch.randn_like(param) * 0.5)
    model.eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    ids = torch.tensor([tokenizer("### Ответ: 4")["input_ids"]])
    with torch.no_grad():
        before = model(input_ids=ids).logits
    model.save_pretrained(tmp_path / "adapter")
    tokenizer.save_pretrained(tmp_path / "adapter")
    config = {"base_model": str(tiny_model_dir), "method": "lora", "name": "t", "train_path": "x.csv"}
    (tmp_path / "training_config.json").write_text(json.dumps({"config": config}))
    reloaded = AutoModelForCausalLM.from_pretrained(merge_run(tmp_path), dtype=torch.float32)
    with torch.no_grad():
        after = reloaded(input_ids=ids).logits
    assert torch.allclose(after, before, atol=5e-2, rtol=1e-2), (after - before).abs().max()
