"""The tiny checkpoint keeps the Qwen3 facts the pipeline relies on and loads like a real one, offline."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from trainer.tiny.models import BUILD_RECORD, build_tiny_model, build_tiny_tokenizer, qwen3_chat_template

SCORE_TEXTS = ("0", "1", "2", "3", "-")


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    return AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.fixture(scope="module")
def model(tiny_model_dir):
    return AutoModelForCausalLM.from_pretrained(tiny_model_dir, use_safetensors=True).eval()


def _generation_prompt(tokenizer, content: str = "x") -> str:
    return tokenizer.apply_chat_template(
        [{"role": "user", "content": content}], tokenize=False, add_generation_prompt=True, enable_thinking=False
    )


def test_reloads_offline_as_a_qwen2_tokenizer(tokenizer):
    assert type(tokenizer).__name__ == "Qwen2Tokenizer"


def test_score_digits_and_minus_are_single_distinct_tokens(tokenizer):
    ids = [tokenizer.encode(text, add_special_tokens=False) for text in SCORE_TEXTS]
    assert all(len(i) == 1 for i in ids), ids
    assert len({i[0] for i in ids}) == len(SCORE_TEXTS)


def test_minus_one_is_minus_then_one(tokenizer):
    minus, one = (tokenizer.convert_tokens_to_ids(t) for t in ("-", "1"))
    assert tokenizer.encode("-1", add_special_tokens=False) == [minus, one]


def test_score_after_generation_prompt_is_one_extra_token(tokenizer):
    # Training targets and inference read the score at the same position only if the prompt tokens do not change.
    prompt = _generation_prompt(tokenizer, "### Задание для оценки:\n2 + 2")
    prompt_ids = tokenizer.encode(prompt, add_special_tokens=False)
    for text in ("0", "3"):
        full = tokenizer.encode(prompt + text + "<|im_end|>", add_special_tokens=False)
        assert full == prompt_ids + [tokenizer.convert_tokens_to_ids(text), tokenizer.eos_token_id]


def test_special_tokens_match_qwen3(tokenizer):
    assert tokenizer.eos_token == "<|im_end|>"
    assert tokenizer.pad_token == tokenizer.unk_token == "<|endoftext|>"
    for token in ("<|im_start|>", "<|im_end|>", "<|endoftext|>", "<think>", "</think>"):
        assert tokenizer.encode(token, add_special_tokens=False) == [tokenizer.convert_tokens_to_ids(token)]
    think = tokenizer.encode("<think>", add_special_tokens=False)
    assert tokenizer.decode(think, skip_special_tokens=True) == "<think>"  # added, not special, as in Qwen3


def test_chat_template_is_trl_qwen3_and_disables_thinking(tokenizer):
    assert tokenizer.chat_template == qwen3_chat_template()
    text = _generation_prompt(tokenizer)
    assert text == "<|im_start|>user\nx<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"


def test_tokenizer_round_trips_russian_and_json(tokenizer):
    text = 'Ответ: 42. {"name": "get_weather", "arguments": {"city": "Москва"}}\n\nёж Ёлка'
    assert tokenizer.decode(tokenizer.encode(text, add_special_tokens=False)) == text


def test_tokenizer_build_is_deterministic(tmp_path):
    build_tiny_tokenizer(tmp_path / "a")
    build_tiny_tokenizer(tmp_path / "b")
    assert (tmp_path / "a" / "tokenizer.json").read_bytes() == (tmp_path / "b" / "tokenizer.json").read_bytes()


def test_folder_holds_safetensors_only(tiny_model_dir):
    names = {p.name for p in tiny_model_dir.iterdir()}
    assert {"model.safetensors", "config.json", "generation_config.json", "tokenizer.json", BUILD_RECORD} <= names
    assert not any(n.endswith((".bin", ".pt")) for n in names)


def test_model_config_matches_tokenizer(model, tokenizer):
    config = model.config
    assert config.model_type == "qwen3"
    assert config.vocab_size % 64 == 0 and config.vocab_size >= len(tokenizer)
    assert (config.hidden_size, config.num_hidden_layers, config.head_dim) == (64, 2, 32)  # vLLM CPU takes 32, not 16
    assert (config.num_attention_heads, config.num_key_value_heads) == (4, 2)
    assert config.eos_token_id == tokenizer.eos_token_id and config.pad_token_id == tokenizer.pad_token_id
    assert tokenizer.eos_token_id in model.generation_config.eos_token_id
    assert model.get_output_embeddings().weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()


def test_model_forward_gives_last_position_logits(model, tokenizer):
    batch = tokenizer([_generation_prompt(tokenizer, "a"), _generation_prompt(tokenizer, "длинный текст")],
                      return_tensors="pt", padding=True)
    with torch.no_grad():
        logits = model(**batch, logits_to_keep=1).logits
    assert logits.shape == (2, 1, model.config.vocab_size)
    assert torch.isfinite(logits).all()


def test_model_weights_follow_the_seed(tiny_model_dir, tmp_path, model):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    same = build_tiny_model(tmp_path / "same", seed=0, tokenizer=tokenizer).state_dict()
    other = build_tiny_model(tmp_path / "other", seed=1, tokenizer=tokenizer).state_dict()
    name = "model.embed_tokens.weight"
    assert torch.equal(same[name], model.state_dict()[name])
    assert not torch.equal(other[name], same[name])


def test_odd_hidden_size_is_refused(tmp_path, tiny_model_dir):
    with pytest.raises(ValueError, match="multiple of 16"):
        build_tiny_model(tmp_path, hidden_size=40, tokenizer=AutoTokenizer.from_pretrained(tiny_model_dir))


def test_tiny_model_cli_refuses_an_unknown_tokenizer_or_a_missing_tiktoken_in_one_line(tmp_path):
    from typer.testing import CliRunner

    from trainer.cli import app

    bogus = CliRunner().invoke(app, ["tiny-model", str(tmp_path / "a"), "--tokenizer", "gpt2"])
    assert bogus.exit_code == 2 and "choose tiny or qwen3" in bogus.output
    missing = CliRunner().invoke(app, ["tiny-model", str(tmp_path / "b"), "--tokenizer", "qwen3", "--qwen-tiktoken",
                                       str(tmp_path / "nope.whl")])
    assert missing.exit_code == 2 and "no qwen.tiktoken found" in missing.output and "Traceback" not in missing.output


def test_tiny_model_head_dim_is_one_vllm_cpu_attention_takes(tmp_path, tiny_model_dir):
    from transformers import AutoTokenizer

    from trainer.tiny.models import DEFAULT_HEAD_DIM, VLLM_CPU_HEAD_DIMS, build_tiny_model

    assert DEFAULT_HEAD_DIM in VLLM_CPU_HEAD_DIMS
    model = build_tiny_model(tmp_path, hidden_size=32, num_layers=1, head_dim=64, num_heads=2,
                             tokenizer=AutoTokenizer.from_pretrained(tiny_model_dir))
    assert (model.config.head_dim, model.config.num_attention_heads, model.config.num_key_value_heads) == (64, 2, 1)
    with pytest.raises(ValueError, match="multiple of 16"):
        build_tiny_model(tmp_path, hidden_size=40, head_dim=64, tokenizer=AutoTokenizer.from_pretrained(tiny_model_dir))
