"""A judge trained on POLLUX's 0-4 criteria (judge.json ``"max_score": 4``): the scoring path takes its label set
(LABELS_0_4) explicitly; with the default (LABELS) every function reads, decides and checks exactly as before."""

from __future__ import annotations

import numpy as np
import pytest

from submission.data import DataError, validate_predictions
from submission.prompts.sections import (
    LABELS,
    LABELS_0_4,
    compose_prompt,
    labels_for,
    parse_prompt,
    parse_scale,
    stated_labels,
)
from submission.scoring.decoding import (
    Decision,
    allowed_mask,
    decide,
    expected_score,
    label_token_ids,
    probabilities_from_label_logits,
    probabilities_from_texts,
)
from submission.scoring.priors import ClassPrior
from submission.scoring.probabilities import PROBABILITY_COLUMNS, probability_columns, write_probabilities

SCALE_0_4 = "-1: критерий неприменим\n\n0: нет\n\n1: слабо\n\n2: средне\n\n3: хорошо\n\n4: отлично"
SCALE_0_2 = "0: нет\n1: частично\n2: да"
PROMPT_0_4 = compose_prompt("Задача", "Ответ", "Критерий", SCALE_0_4)
PROMPT_0_2 = compose_prompt("Задача", "Ответ", "Критерий", SCALE_0_2)


def test_labels_for_names_the_two_ranges():
    assert labels_for(3) == LABELS == (-1, 0, 1, 2, 3)
    assert labels_for(4) == LABELS_0_4 == (-1, 0, 1, 2, 3, 4)
    with pytest.raises(ValueError, match="max_score 5"):
        labels_for(5)


def test_a_0_4_rubric_reads_as_0_3_by_default_and_0_4_for_a_0_4_judge():
    assert parse_scale(SCALE_0_4) == (-1, 0, 1, 2, 3)
    assert parse_scale(SCALE_0_4, LABELS_0_4) == (-1, 0, 1, 2, 3, 4)
    assert stated_labels(PROMPT_0_4) == (-1, 0, 1, 2, 3)
    assert stated_labels(PROMPT_0_4, LABELS_0_4) == (-1, 0, 1, 2, 3, 4)
    default, four = parse_prompt(PROMPT_0_4), parse_prompt(PROMPT_0_4, LABELS_0_4)
    assert (default.allowed, default.stated) == ((-1, 0, 1, 2, 3), (-1, 0, 1, 2, 3))
    assert (four.allowed, four.stated) == ((-1, 0, 1, 2, 3, 4), (-1, 0, 1, 2, 3, 4))
    # A rubric that does not state 4 never allows it, whatever the judge.
    assert parse_prompt(PROMPT_0_2, LABELS_0_4).allowed == (0, 1, 2) == parse_prompt(PROMPT_0_2).allowed
    # A scale that names nothing: every label of the judge's set.
    assert parse_scale("оцените как хотите", LABELS_0_4) == LABELS_0_4
    assert stated_labels("no scale here", LABELS_0_4) == LABELS_0_4 and stated_labels("no scale here") == LABELS


def test_the_four_token_is_read_only_for_a_0_4_judge():
    class Tokenizer:
        def __call__(self, text, add_special_tokens=False):
            return {"input_ids": [{"-": 10, "0": 20, "1": 21, "2": 22, "3": 23, "4": 24}[text]]}

    assert label_token_ids(Tokenizer()) == [10, 20, 21, 22, 23]
    assert label_token_ids(Tokenizer(), LABELS_0_4) == [10, 20, 21, 22, 23, 24]


def test_decoding_gives_4_only_on_rows_whose_rubric_allows_it():
    logits = np.array([[0.0, 0.0, 0.2, 0.5, 1.0, 9.0]] * 2)  # the "4" token is by far the likeliest
    allowed = [parse_prompt(PROMPT_0_4, LABELS_0_4).allowed, parse_prompt(PROMPT_0_2, LABELS_0_4).allowed]
    probs = probabilities_from_label_logits(logits, allowed, LABELS_0_4)
    assert probs.shape == (2, 6) and probs[0, 5] > 0.99 and probs[1, 4:].sum() == 0.0
    assert decide(probs, allowed, labels=LABELS_0_4) == [4, 2]
    assert np.allclose(probs.sum(axis=1), 1.0)
    assert allowed_mask((0, 4), LABELS_0_4).tolist() == [False, True, False, False, False, True]
    # The thresholds rule maps to 0..3, then the rubric; the expected score counts the 4 column as 4.
    assert expected_score(np.array([[0, 0, 0, 0, 0, 1.0]])).tolist() == [4.0]
    assert decide(probs, allowed, Decision("thresholds", (0.5, 1.5, 2.5)), LABELS_0_4) == [3, 1]
    texts = probabilities_from_texts([["Оценка: 4"], ["Оценка: 4"]], allowed, LABELS_0_4)
    assert texts.tolist() == [[0, 0, 0, 0, 0, 1.0], [0, 0, 0, 0, 0, 0]]


def test_the_default_judge_never_gives_4():
    allowed = [parse_prompt(PROMPT_0_4).allowed]
    probs = probabilities_from_label_logits(np.array([[0.0, 0.0, 0.0, 0.0, 1.0]]), allowed)
    assert probs.shape == (1, 5) and decide(probs, allowed) == [3]


def test_the_validator_takes_4_only_from_a_0_4_judge_on_a_row_whose_rubric_states_4():
    four = [parse_prompt(PROMPT_0_4, LABELS_0_4).stated, parse_prompt(PROMPT_0_2, LABELS_0_4).stated]
    validate_predictions(["a", "b"], [4, 2], four, LABELS_0_4)
    with pytest.raises(DataError, match=r"row 2: score 4 is outside the rubric \[0, 1, 2\]"):
        validate_predictions(["a", "b"], [4, 4], four, LABELS_0_4)
    default = [parse_prompt(PROMPT_0_4).stated, parse_prompt(PROMPT_0_2).stated]
    with pytest.raises(DataError, match=r"row 1: score 4 is not an int in -1\.\.3"):
        validate_predictions(["a", "b"], [4, 2], default)
    with pytest.raises(DataError, match=r"row 1: score 4 is outside the rubric"):
        validate_predictions(["a", "b"], [4, 2], default, LABELS_0_4)  # a 0-4 judge, yet rows read as -1..3
    with pytest.raises(DataError, match=r"score 5 is not an int in -1\.\.4"):
        validate_predictions(["a"], [5], None, LABELS_0_4)


def test_priors_and_probability_columns_follow_the_label_set(tmp_path):
    prior = ClassPrior({"overall": {"0": 0.1, "4": 0.9}})
    assert prior.score(None, (0, 1, 2, 3, 4), LABELS_0_4) == 4
    assert prior.probabilities(None, (0, 1, 2, 3)).tolist() == [0.0, 1.0, 0.0, 0.0, 0.0]  # the default's 5 columns
    assert ClassPrior(None).score(None, (0, 1, 2, 3, 4), LABELS_0_4) == 2  # the 0..4 rubric's middle
    assert probability_columns() == PROBABILITY_COLUMNS == ("p_-1", "p_0", "p_1", "p_2", "p_3")
    path = write_probabilities(tmp_path / "p.csv", ["a"], [[0, 0, 0, 0, 0.5, 0.5]], LABELS_0_4)
    assert path.read_text(encoding="utf-8") == "id,p_-1,p_0,p_1,p_2,p_3,p_4\na,0.0,0.0,0.0,0.0,0.5,0.5\n"


def test_pollux_report_reads_a_0_4_probabilities_file(tmp_path):
    from trainer.evaluation.pollux_metrics import read_predicted_scores

    path = write_probabilities(tmp_path / "p.csv", ["a", "b"], [[0, 0, 0, 0, 0.4, 0.6], [0, 0.9, 0, 0, 0.1, 0]],
                               LABELS_0_4)
    assert read_predicted_scores(path, ["a", "b"]) == [4, 0]
    path = write_probabilities(tmp_path / "q.csv", ["a"], [[0, 0, 0, 0.4, 0.6]])
    assert read_predicted_scores(path, ["a"]) == [3]
