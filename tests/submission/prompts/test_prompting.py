"""The one renderer: identical prompts for training and inference, targets, and middle-truncation."""

import pytest

from submission.prompts.prompting import PromptRenderer, compose_sections
from submission.prompts.sections import compose_prompt, parse_prompt


def make_prompt(task_words=10, answer_words=10, criterion="Правильность ответа и формата"):
    task = " ".join(["задание"] * task_words)
    answer = " ".join(["ответ"] * answer_words)
    return compose_prompt(f"НАЧАЛО {task} КОНЕЦ", f"СТАРТ {answer} ФИНИШ", criterion,
                          "0: неверно\n1: частично\n2: почти\n3: верно\n", reference="42")


@pytest.fixture(scope="module")
def renderer(tiny_tokenizer):
    return PromptRenderer(tiny_tokenizer, max_tokens=4096)


def test_prompt_is_the_chat_template_with_thinking_off(renderer, tiny_tokenizer):
    prompt = make_prompt()
    messages = [{"role": "system", "content": renderer.system_prompt}, {"role": "user", "content": prompt}]
    expected = tiny_tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True,
                                                  enable_thinking=False)
    assert renderer.render_text(prompt) == expected
    assert expected.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
    assert tiny_tokenizer.decode(renderer.render(prompt).input_ids) == expected


@pytest.mark.parametrize("score", [-1, 0, 3])
def test_training_example_is_inference_prompt_plus_target(renderer, tiny_tokenizer, score):
    prompt = make_prompt()
    example = renderer.training_example(prompt, score)
    inference = renderer.render(prompt).input_ids
    assert example.input_ids[: len(inference)] == inference
    target = [t for t in example.labels if t != -100]
    assert example.labels[: len(inference)] == [-100] * len(inference)
    assert tiny_tokenizer.decode(target) == f"{score}<|im_end|>"


def test_long_prompt_is_shortened_in_the_middle_keeping_criterion_and_scale(renderer, tiny_tokenizer):
    prompt = make_prompt(task_words=3000, answer_words=3000)
    rendered = renderer.render(prompt, max_tokens=400)
    assert rendered.truncated
    assert len(rendered.input_ids) <= 400
    kept = parse_prompt(rendered.text)
    original = parse_prompt(prompt)
    assert (kept.criterion, kept.scale, kept.reference) == (original.criterion, original.scale, original.reference)
    assert kept.task.startswith("НАЧАЛО") and kept.task.endswith("КОНЕЦ") and "[…]" in kept.task
    assert kept.answer.startswith("СТАРТ") and kept.answer.endswith("ФИНИШ")


def test_short_prompt_is_untouched(renderer):
    prompt = make_prompt()
    rendered = renderer.render(prompt)
    assert not rendered.truncated and rendered.text == prompt


def test_training_example_respects_the_limit_including_target(renderer):
    example = renderer.training_example(make_prompt(task_words=3000), 2, max_tokens=300)
    assert example.truncated and len(example.input_ids) <= 300
    assert [t for t in example.labels if t != -100]  # the target survived


def test_hostile_prompt_with_a_huge_criterion_still_fits(renderer):
    prompt = make_prompt(criterion=" ".join(["критерий"] * 5000))
    rendered = renderer.render(prompt, max_tokens=256)
    assert rendered.truncated and len(rendered.input_ids) <= 256


def test_unparsed_prompt_is_cut_from_the_middle(renderer):
    rendered = renderer.render("начало " + "слово " * 4000 + "конец", max_tokens=200)
    assert rendered.truncated and len(rendered.input_ids) <= 200
    assert rendered.text.startswith("начало") and rendered.text.endswith("конец")


def test_composed_sections_round_trip_through_the_parser():
    sections = parse_prompt(make_prompt())
    assert parse_prompt(compose_sections(sections)) == sections
