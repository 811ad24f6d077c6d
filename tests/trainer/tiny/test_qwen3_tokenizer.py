"""Qwen3's real tokenizer built offline from the dashscope wheel (trainer/tiny/qwen3_tokenizer.py), and our prompt path
on it: reference encodings, the rendered chat string, label ids, truncation, token-count estimates.

Reference ids: transformers' own Qwen2 tokenizer integration test (tests/models/qwen2/test_tokenization_qwen2.py,
``Qwen/Qwen-tokenizer``, padding removed) and two published encodings of the Qwen2.5/3 vocabulary.
"""

from __future__ import annotations

import pytest

from trainer.tiny.qwen3_tokenizer import FIRST_ADDED_ID, QWEN3_ADDED_TOKENS, build_qwen3_tokenizer, default_sources

REFERENCE = [
    ("Transformers (formerly known as pytorch-transformers and pytorch-pretrained-bert) provides "
     "general-purpose architectures (BERT, GPT-2, RoBERTa, XLM, DistilBert, XLNet...) for Natural "
     "Language Understanding (NLU) and Natural Language Generation (NLG) with over 32+ pretrained "
     "models in 100+ languages and deep interoperability between Jax, PyTorch and TensorFlow.",
     [8963, 388, 320, 69514, 3881, 438, 4510, 27414, 32852, 388, 323, 4510, 27414, 21334, 35722, 1455, 529, 8, 5707,
      4586, 58238, 77235, 320, 61437, 11, 479, 2828, 12, 17, 11, 11830, 61437, 64, 11, 1599, 10994, 11, 27604, 321,
      33, 529, 11, 29881, 6954, 32574, 369, 18448, 11434, 45451, 320, 45, 23236, 8, 323, 18448, 11434, 23470, 320,
      30042, 38, 8, 448, 916, 220, 18, 17, 10, 80669, 4119, 304, 220, 16, 15, 15, 10, 15459, 323, 5538, 94130,
      2897, 1948, 619, 706, 11, 5355, 51, 21584, 323, 94986, 13]),
    ("🤗 Transformers 提供了可以轻松地下载并且训练先进的预训练模型的 API 和工具。使用预训练模型可以减少计算消耗和碳排放，并且节省从头训练所需要的时间和资源。",
     [144834, 80532, 93685, 83744, 34187, 73670, 104261, 29490, 62189, 103937, 104034, 102830, 98841, 104034, 104949,
      9370, 5333, 58143, 102011, 1773, 37029, 98841, 104034, 104949, 73670, 101940, 100768, 104997, 33108, 100912,
      105054, 90395, 100136, 106831, 45181, 64355, 104034, 113521, 101975, 33108, 85329, 1773]),
    ('```python\ntokenizer = AutoTokenizer.from_pretrained("Qwen/Qwen-tokenizer")\ntokenizer("世界，你好！")```',
     [73594, 12669, 198, 85593, 284, 8979, 37434, 6387, 10442, 35722, 445, 48, 16948, 45274, 16948, 34841, 3135, 1138,
      85593, 445, 99489, 3837, 108386, 6313, 899, 73594]),
    (" hello sir. How are you Edward?", [23811, 27048, 13, 2585, 525, 498, 21891, 30]),
    ("<|im_start|>hello<|im_end|>", [151644, 14990, 151645]),
]


@pytest.fixture(scope="module")
def qwen3(tmp_path_factory):
    """Qwen3's tokenizer saved and loaded back with AutoTokenizer, as a model folder ships it."""
    from transformers import AutoTokenizer

    if not any(p.is_file() for p in default_sources()):
        pytest.fail("no dashscope wheel in .venv/contract-wheels: run `make install` (it fetches it)")
    out = tmp_path_factory.mktemp("qwen3_tokenizer")
    build_qwen3_tokenizer(out)
    return AutoTokenizer.from_pretrained(str(out))


@pytest.mark.parametrize("text,ids", REFERENCE, ids=["english", "chinese", "code", "spaces", "special"])
def test_qwen3_tokenizer_reproduces_reference_encodings(qwen3, text, ids):
    assert qwen3(text, add_special_tokens=False)["input_ids"] == ids
    assert qwen3.decode(ids) == text


def test_qwen3_special_tokens_and_nfc_are_those_of_the_checkpoint(qwen3):
    assert len(qwen3) == FIRST_ADDED_ID + len(QWEN3_ADDED_TOKENS) == 151_669
    assert qwen3.convert_tokens_to_ids(["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>"]) == [
        151643, 151644, 151645, 151667, 151668]
    assert (qwen3.eos_token, qwen3.pad_token, qwen3.bos_token) == ("<|im_end|>", "<|endoftext|>", None)
    # Qwen's NFC normaliser: the NFD form encodes as the NFC one
    assert qwen3("\u03d2\u0301", add_special_tokens=False)["input_ids"] == qwen3("\u03d3", add_special_tokens=False)["input_ids"]
    # <think> is not special: decoding with skip_special_tokens keeps it, as Qwen3's does
    assert qwen3.decode(qwen3.encode("<think>x</think><|im_end|>"), skip_special_tokens=True) == "<think>x</think>"


def test_qwen3_chat_template_renders_one_user_message_without_thinking(qwen3):
    text = qwen3.apply_chat_template([{"role": "user", "content": "Оцените ответ."}], tokenize=False,
                                     add_generation_prompt=True, enable_thinking=False)
    assert text == "<|im_start|>user\nОцените ответ.<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"


def test_labels_digits_and_minus_are_single_qwen3_tokens(qwen3):
    from submission.scoring.decoding import LABELS, label_token_ids

    assert dict(zip(LABELS, label_token_ids(qwen3), strict=True)) == {-1: 12, 0: 15, 1: 16, 2: 17, 3: 18}
    assert qwen3("-1", add_special_tokens=False)["input_ids"] == [12, 16]


def test_renderer_on_qwen3_keeps_rubric_and_cuts_the_middle(qwen3, synth_dir):
    from submission.data import read_test_csv
    from submission.prompts.prompting import PromptRenderer

    prompt = read_test_csv(synth_dir / "test.csv")["prompt"][0]
    long = prompt.replace("### Ответ для оценки:\n", "### Ответ для оценки:\n" + "очень длинный ответ " * 400)
    renderer = PromptRenderer(qwen3, max_tokens=400)
    full = PromptRenderer(qwen3, max_tokens=8192).render(long)
    short = renderer.render(long)
    assert len(full.input_ids) > 1000 and not full.truncated
    assert short.truncated and 300 < len(short.input_ids) <= 400
    text = qwen3.decode(short.input_ids)
    assert text.startswith("<|im_start|>") and text.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
    scale = prompt[prompt.index("### Шкала оценивания по критерию:"):].strip()
    assert scale in text and "### Критерий оценки:" in text  # the criterion and scale are never cut
    example = renderer.training_example(prompt, 2)
    assert qwen3.decode([t for t, lab in zip(example.input_ids, example.labels, strict=True) if lab != -100]) == "2<|im_end|>"


def test_token_estimates_on_qwen3_are_close_to_the_real_lengths(qwen3, synth_dir):
    """The runtime plans chunks from characters x a sampled tokens-per-character ratio before tokenising."""
    from submission.data import read_test_csv
    from submission.prompts.prompting import PromptRenderer, RenderedRows
    from submission.prompts.sections import parse_prompt

    prompts = list(read_test_csv(synth_dir / "test.csv")["prompt"])
    renderer = PromptRenderer(qwen3, max_tokens=4096)
    rows = RenderedRows(renderer, prompts, [parse_prompt(p) for p in prompts])
    estimated = list(rows.lengths)
    exact = [len(renderer.render(p).input_ids) for p in prompts]
    assert abs(sum(estimated) - sum(exact)) / sum(exact) < 0.05
    assert max(abs(e - x) / x for e, x in zip(estimated, exact, strict=True)) < 0.35
