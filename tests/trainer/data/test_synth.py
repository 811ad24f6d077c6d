"""Synthetic data follows the contest contract, parses like real prompts and carries the documented label rule."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections import Counter

import pandas as pd
import pytest
from typer.testing import CliRunner

from submission.data import read_gold_csv, read_test_csv, read_train_csv
from submission.prompts.sections import FAMILIES, classify_family, parse_prompt
from trainer.cli import app
from trainer.data.synth import ENGLISH_FILLER, ENGLISH_SHARE, FAMILY_CRITERIA, NOT_APPLICABLE_CRITERIA, make_synthetic

_RUSSIAN_WORD = re.compile(r"[А-Яа-яЁё]+")
_ENGLISH = set(ENGLISH_FILLER)


@pytest.fixture(scope="module")
def frames(synth_dir):
    train = read_train_csv(synth_dir / "train.csv")
    test = read_test_csv(synth_dir / "test.csv")
    gold = read_gold_csv(synth_dir / "gold.csv")
    labelled = pd.concat([train, test.merge(gold, on="id")], ignore_index=True)
    return train, test, gold, labelled


def _answer_words(answer: str, family: str) -> list[str]:
    if family == "function_calling":
        answer = " ".join(v for v in json.loads(answer)["arguments"].values() if isinstance(v, str))
    return re.findall(r"[A-Za-zА-Яа-яЁё]+", answer)


def test_same_seed_same_frames_other_seed_other_frames():
    first, second, other = make_synthetic(40, 3), make_synthetic(40, 3), make_synthetic(40, 4)
    for a, b in zip(first, second, strict=True):
        pd.testing.assert_frame_equal(a, b)
    assert not first[0]["prompt"].equals(other[0]["prompt"])


def test_files_meet_the_csv_contract(frames):
    train, test, gold, _ = frames
    assert (len(train), len(test)) == (300, 75)
    assert list(gold["id"]) == list(test["id"])
    ids = [*train["id"], *test["id"]]
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"synth-\d{6}", i) for i in ids)


def test_written_columns_are_exactly_the_contest_ones(synth_dir):
    assert pd.read_csv(synth_dir / "train.csv", nrows=1).columns.tolist() == ["id", "prompt", "score"]
    assert pd.read_csv(synth_dir / "test.csv", nrows=1).columns.tolist() == ["id", "prompt"]
    assert pd.read_csv(synth_dir / "gold.csv", nrows=1).columns.tolist() == ["id", "score"]


def test_every_prompt_parses_and_all_families_appear(frames):
    _, _, _, labelled = frames
    sections = [parse_prompt(p) for p in labelled["prompt"]]
    assert all(s.parsed for s in sections)
    assert {s.family for s in sections} == set(FAMILIES)
    assert any(s.reference is None for s in sections)  # most generative rows have no reference
    assert all(s.reference is not None for s in sections if s.family == "function_calling")


def test_scores_stay_within_each_prompts_scale(frames):
    _, _, _, labelled = frames
    allowed = [parse_prompt(p).allowed for p in labelled["prompt"]]
    assert all(score in a for score, a in zip(labelled["score"], allowed, strict=True))
    assert any(a == (0, 1, 2) for a in allowed), "some rows should use a 0-2 scale"
    assert any(-1 in a for a in allowed), "some rows should offer -1"
    assert any(3 not in a and s == 2 for s, a in zip(labelled["score"], allowed, strict=True))


def test_minus_one_is_rare_in_train_and_present_in_gold(frames):
    train, _, gold, _ = frames
    assert (train["score"] == -1).mean() <= 0.03
    assert (gold["score"] == -1).any()


@pytest.mark.parametrize("split", ["train", "gold"])
def test_classes_are_balanced(frames, split):
    scores = frames[0]["score"] if split == "train" else frames[2]["score"]
    assert scores.value_counts(normalize=True).max() <= 0.35


def test_score_is_the_share_of_russian_words_in_the_answer(frames):
    _, _, _, labelled = frames
    for prompt, score in zip(labelled["prompt"], labelled["score"], strict=True):
        s = parse_prompt(prompt)
        if score == -1:
            assert s.answer == ""
            continue
        words = _answer_words(s.answer, s.family)
        english = sum(w in _ENGLISH for w in words)
        russian = sum(bool(_RUSSIAN_WORD.fullmatch(w)) for w in words)
        assert english + russian == len(words), words
        share = ENGLISH_SHARE[(max(s.allowed), score)]
        assert abs(english / len(words) - share) <= 0.5 / len(words) + 1e-9, (score, s.answer)


def test_cli_synth_writes_the_three_files(tmp_path):
    result = CliRunner().invoke(app, ["synth", str(tmp_path), "--rows", "12", "--seed", "2", "--test-rows", "5"])
    assert result.exit_code == 0, result.output
    assert [line.rsplit("/", 1)[-1] for line in result.stdout.split()] == ["train.csv", "test.csv", "gold.csv"]
    assert len(read_train_csv(tmp_path / "train.csv")) == 12
    assert len(read_gold_csv(tmp_path / "gold.csv")) == 5


def test_cli_tiny_model_builds_a_loadable_folder(tmp_path):
    result = CliRunner().invoke(app, ["tiny-model", str(tmp_path / "m"), "--hidden-size", "32", "--layers", "1"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "m" / "model.safetensors").is_file()
    assert json.loads((tmp_path / "m" / "config.json").read_text())["hidden_size"] == 32


def test_python_dash_m_trainer_lists_the_commands():
    result = subprocess.run([sys.executable, "-m", "trainer", "--help"], capture_output=True, text=True, check=True)
    assert "tiny-model" in result.stdout and "synth" in result.stdout


def test_family_mix_covers_each_family_in_train(frames):
    counts = Counter(parse_prompt(p).family for p in frames[0]["prompt"])
    assert min(counts[f] for f in FAMILIES) >= 0.2 * len(frames[0])


@pytest.fixture(scope="module")
def minus_one_frames():
    return make_synthetic(600, 5, train_minus_one=0)


def _true_family(sections) -> str:
    # The generator's family: the reference is left out because a generative task may carry one (read as static).
    return classify_family(sections.task, None, sections.answer)


def test_train_minus_one_zero_writes_no_minus_one_in_train_but_some_in_test(minus_one_frames):
    train, _, gold = minus_one_frames
    assert not (train["score"] == -1).any()
    assert (gold["score"] == -1).sum() >= 0.03 * len(gold)


def test_minus_one_test_rows_carry_a_criterion_of_another_family_and_the_minus_one_line(minus_one_frames):
    train, test, gold = minus_one_frames
    labelled = pd.concat([train, test.merge(gold, on="id")], ignore_index=True)
    for prompt, score in zip(labelled["prompt"], labelled["score"], strict=True):
        sections = parse_prompt(prompt)
        family = _true_family(sections)
        own = FAMILY_CRITERIA[family]
        if score == -1:
            assert sections.criterion not in own and -1 in sections.allowed, prompt
            # Another family's own criterion, never a generic text one (those fit any written answer).
            assert sections.criterion in NOT_APPLICABLE_CRITERIA[family], prompt
            assert sections.criterion not in FAMILY_CRITERIA["generative"], prompt
            assert sections.answer, "the answer is an ordinary one; only the criterion makes the row not applicable"
        else:
            assert sections.criterion in own, prompt


def test_train_minus_one_share_gives_train_rows_by_the_same_rule():
    train, _, _ = make_synthetic(600, 5, train_minus_one=1.0)
    minus = [parse_prompt(p) for p in train.loc[train["score"] == -1, "prompt"]]
    assert minus and all(s.criterion not in FAMILY_CRITERIA[_true_family(s)] for s in minus)


def test_cli_synth_train_minus_one_zero_and_its_bounds(tmp_path):
    result = CliRunner().invoke(app, ["synth", str(tmp_path), "--rows", "200", "--seed", "4", "--train-minus-one", "0"])
    assert result.exit_code == 0, result.output
    assert not (read_train_csv(tmp_path / "train.csv")["score"] == -1).any()
    bad = CliRunner().invoke(app, ["synth", str(tmp_path), "--rows", "20", "--seed", "4", "--train-minus-one", "1.5"])
    assert bad.exit_code == 2
