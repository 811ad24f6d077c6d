"""The CSV contract: what is accepted, and the one-line error for each thing that is not."""

import pytest

from submission.data import (
    DataError,
    read_gold_csv,
    read_predictions_csv,
    read_test_csv,
    read_train_csv,
    validate_predictions,
    write_predictions,
)

PROMPT = "### Задание для оценки:\n2+2\n\n### Ответ для оценки:\n4\n\n### Критерий оценки:\nx\n\n### Шкала оценивания по критерию:\n0: a\n1: b\n"


def write(tmp_path, text, name="f.csv", encoding="utf-8"):
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


def test_ids_stay_strings_with_leading_zeros(tmp_path):
    frame = read_test_csv(write(tmp_path, "id,prompt\n007,a\n010,b\n"))
    assert frame["id"].tolist() == ["007", "010"]


def test_score_minus_one_and_float_integers_are_accepted(tmp_path):
    frame = read_train_csv(write(tmp_path, "id,prompt,score\n1,a,-1\n2,b,2.0\n"))
    assert frame["score"].tolist() == [-1, 2]
    assert read_gold_csv(write(tmp_path, "id,score\nx,-1\n", "g.csv"))["score"].tolist() == [-1]


def test_predictions_are_written_atomically_and_read_back(tmp_path):
    path = tmp_path / "out" / "pred.csv"
    write_predictions(path, ["a", "b"], [3, -1])
    assert path.read_text() == "id,score\na,3\nb,-1\n"
    assert read_predictions_csv(path)["score"].tolist() == [3, -1]
    assert [p.name for p in path.parent.iterdir()] == ["pred.csv"]


@pytest.mark.parametrize(
    "ids, scores, allowed, message",
    [
        (["a", "b"], [1], None, "1 scores for 2 ids"),
        (["a", "a"], [1, 1], None, "duplicate ids"),
        (["a"], [5], None, "row 1: score 5 is not an int in -1..3"),
        (["a"], [1.0], None, "is not an int"),
        (["a"], [True], None, "is not an int"),
        (["a"], [3], [(0, 1, 2)], "outside the rubric [0, 1, 2]"),
    ],
)
def test_validate_predictions_rejects(ids, scores, allowed, message):
    with pytest.raises(DataError, match=message.replace("[", r"\[").replace("]", r"\]")):
        validate_predictions(ids, scores, allowed)


def test_validate_predictions_accepts_a_good_file():
    validate_predictions(["a", "b"], [0, -1], [(0, 1), (-1, 0)])
