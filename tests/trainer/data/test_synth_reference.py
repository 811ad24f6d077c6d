"""synth --task reference: the score is decided by comparing the answer with the reference, not by its wording."""

from __future__ import annotations

import json
import re

import pytest

from submission.prompts.sections import parse_prompt
from trainer.data.synth_reference import make_reference_rows


@pytest.fixture(scope="module")
def rows():
    train, test, gold = make_reference_rows(200, seed=5, test_rows=200)
    return train, test.merge(gold)


def _value(text: str) -> int:
    return int(re.findall(r"-?\d+", text)[-1])


def test_arithmetic_score_is_two_for_the_right_value_plus_one_for_the_format(rows):
    train, _ = rows
    checked = 0
    for prompt, score in zip(train["prompt"], train["score"], strict=True):
        s = parse_prompt(prompt)
        if s.family != "static" or score < 0:
            continue
        right = _value(s.answer) == _value(s.reference)
        formatted = bool(re.search(r"(Ответ|Answer): -?\d+$", s.answer))
        assert score == 2 * right + formatted, prompt
        checked += 1
    assert checked > 80


def test_tool_call_scores_follow_the_argument_comparison(rows):
    train, _ = rows
    for prompt, score in zip(train["prompt"], train["score"], strict=True):
        s = parse_prompt(prompt)
        if s.family != "function_calling" or score < 0:
            continue
        answer, reference = json.loads(s.answer), json.loads(s.reference)
        same = sum(answer["arguments"].get(k) == v for k, v in reference["arguments"].items())
        if answer["name"] != reference["name"]:
            assert score == 0
        else:
            assert score == {len(reference["arguments"]): 3, len(reference["arguments"]) - 1: 2, 0: 1}[same]


def test_classes_are_balanced_train_has_no_minus_one_and_test_has_some(rows):
    train, test = rows
    counts = train["score"].value_counts()
    assert set(counts.index) == {0, 1, 2, 3} and counts.max() - counts.min() <= 2
    minus_one = test[test["score"] == -1]
    assert 5 <= len(minus_one) <= 40
    assert all("неприменим" in p or "does not apply" in p for p in minus_one["prompt"])


def test_the_answer_wording_alone_does_not_give_the_value_bit():
    """Near-miss values: right and wrong arithmetic answers have the same shape, so only the reference tells them
    apart (a bag-of-words judge reaches the format bit, not the value)."""
    train, _, _ = make_reference_rows(2000, seed=5)
    shapes: dict[bool, set[str]] = {True: set(), False: set()}
    for prompt, score in zip(train["prompt"], train["score"], strict=True):
        s = parse_prompt(prompt)
        if s.family == "static" and score >= 0:
            shapes[score >= 2].add(re.sub(r"-?\d+", "N", s.answer))
    assert shapes[True] == shapes[False]


def test_same_arguments_same_rows_and_both_languages():
    first, second = make_reference_rows(30, seed=2), make_reference_rows(30, seed=2)
    assert all(a.equals(b) for a, b in zip(first, second, strict=True))
    text = "\n".join(first[0]["prompt"])
    assert "Answer:" in text and "Ответ:" in text
    english = "\n".join(make_reference_rows(30, seed=2, language="en")[0]["prompt"])
    assert "Ответ:" not in english and "Правильность" not in english


def test_cli_writes_the_reference_task(tmp_path):
    from typer.testing import CliRunner

    from trainer.cli import app

    result = CliRunner().invoke(app, ["synth", str(tmp_path), "--rows", "8", "--seed", "1", "--task", "reference",
                                      "--language", "ru"])
    assert result.exit_code == 0, result.output
    import pandas as pd

    assert pd.read_csv(tmp_path / "train.csv")["id"].str.startswith("ref-").all()
    bad = CliRunner().invoke(app, ["synth", str(tmp_path), "--rows", "8", "--seed", "1", "--task", "x"])
    assert bad.exit_code == 2
