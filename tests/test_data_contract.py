"""The CSV contract: what is accepted, and the one-line error for each thing that is not."""

import pandas as pd
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


def test_reads_bom_crlf_and_quoted_multiline_prompts(tmp_path):
    text = '\ufeffid,prompt,score\r\n1,"line one\r\nline ""two""",3\r\n2,plain,0\r\n'
    frame = read_train_csv(write(tmp_path, text))
    assert frame["id"].tolist() == ["1", "2"]
    assert frame["prompt"].iloc[0] == 'line one\r\nline "two"'
    assert frame["score"].tolist() == [3, 0]


def test_ids_stay_strings_with_leading_zeros(tmp_path):
    frame = read_test_csv(write(tmp_path, "id,prompt\n007,a\n010,b\n"))
    assert frame["id"].tolist() == ["007", "010"]


@pytest.mark.parametrize(
    "text, message",
    [
        ("id,text,score\n1,a,0\n", "missing column(s) prompt"),
        ("id,prompt,score\n,a,0\n", "row 1: empty id"),
        ("id,prompt,score\n1,a,0\n2,b,1\n1,c,2\n", "row 3: duplicate id '1' (first seen at row 1)"),
        ("id,prompt,score\n1,a,0\n2,  ,1\n", "row 2: empty prompt"),
        ("id,prompt,score\n1,a,4\n", "row 1: score '4' is not one of -1,0,1,2,3"),
        ("id,prompt,score\n1,a,two\n", "row 1: score 'two' is not one of"),
        ("id,prompt,score\n1,a,1.5\n", "score '1.5' is not one of"),
        ("", "the file is empty"),
    ],
)
def test_train_csv_rejections_name_file_row_and_problem(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(DataError) as err:
        read_train_csv(path)
    assert message in str(err.value)
    assert str(path) in str(err.value)
    assert "\n" not in str(err.value)


def test_non_utf8_file_is_rejected_with_the_fix(tmp_path):
    path = write(tmp_path, "id,prompt\n1,Привет\n", encoding="cp1251")
    with pytest.raises(DataError, match="not valid UTF-8.*save the file as UTF-8"):
        read_test_csv(path)


def test_missing_file_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        read_test_csv(tmp_path / "nope.csv")


def test_test_csv_needs_id_and_prompt_and_ignores_extra_columns(tmp_path):
    frame = read_test_csv(write(tmp_path, "id,prompt,score\n1,a,3\n"))
    assert list(frame.columns) == ["id", "prompt"]
    with pytest.raises(DataError, match="missing column"):
        read_test_csv(write(tmp_path, "id,score\n1,3\n", "g.csv"))


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


def test_failed_write_leaves_no_partial_file(tmp_path, monkeypatch):
    path = tmp_path / "pred.csv"
    write_predictions(path, ["a"], [1])

    def broken(self, *args, **kwargs):
        raise OSError("No space left on device")

    monkeypatch.setattr(pd.DataFrame, "to_csv", broken)
    with pytest.raises(OSError):
        write_predictions(path, ["a", "b"], [2, 2])
    assert path.read_text() == "id,score\na,1\n"  # the old file survives whole
    assert [p.name for p in tmp_path.iterdir()] == ["pred.csv"]


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
