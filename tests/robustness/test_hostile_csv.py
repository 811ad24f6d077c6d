"""Hostile CSV files (BOM, CRLF, non-UTF-8, missing/extra columns, empty/duplicate ids, garbage) and a full disk:
each loads or fails with one clear DataError line, never another exception; a failed write leaves no partial file."""

import string

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from submission.data import DataError, read_test_csv, read_train_csv, write_predictions


def write(tmp_path, text, name="f.csv", encoding="utf-8"):
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


CELL = st.text(alphabet=st.sampled_from(string.ascii_letters + "абвгд ,\"\n\r;\t-0123"), max_size=20)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.binary(max_size=300))
def test_arbitrary_bytes_load_or_raise_one_line_data_error(tmp_path, raw):
    path = tmp_path / "any.csv"
    path.write_bytes(raw)
    for reader in (read_test_csv, read_train_csv):
        try:
            frame = reader(path)
        except DataError as err:
            assert "\n" not in str(err) and str(path) in str(err)
        else:
            assert frame["id"].is_unique and (frame["id"] != "").all()


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.tuples(CELL, CELL, CELL), max_size=8), header=st.sampled_from(
    ["id,prompt,score", "id,prompt", "prompt,id,score", "ID,prompt,score", "id,prompt,score,extra"]))
def test_structured_garbage_is_loaded_or_rejected_cleanly(tmp_path, rows, header):
    import csv

    path = tmp_path / "rows.csv"
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header.split(","))
        writer.writerows(rows)
    try:
        frame = read_train_csv(path)
    except DataError as err:
        assert "\n" not in str(err)
    else:
        assert set(frame["score"]) <= {-1, 0, 1, 2, 3}


@pytest.mark.parametrize("text, message", [
    ("id,prompt\n1,a\n1,b\n", "duplicate id"),
    ("id,prompt\n ,a\n", "empty id"),
    ("prompt\nabc\n", "missing column(s) id"),
    ("id;prompt\n1;a\n", "missing column(s)"),
])
def test_file_level_problems_name_the_problem(tmp_path, text, message):
    path = tmp_path / "t.csv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(DataError, match=message.replace("(", r"\(").replace(")", r"\)")):
        read_test_csv(path)


def test_hundred_thousand_multiline_rows_load_whole_and_in_order(tmp_path):
    path = tmp_path / "big.csv"
    prompt = '"### Задание для оценки:\nx\n\n### Ответ для оценки:\ny\n\n### Критерий оценки:\nz\n\n### Шкала оценивания по критерию:\n0: a\n1: b\n"'
    path.write_text("id,prompt\n" + "".join(f"{i},{prompt}\n" for i in range(100_000)), encoding="utf-8")
    frame = read_test_csv(path)
    assert frame["id"].tolist() == [str(i) for i in range(100_000)]
    assert frame["prompt"].nunique() == 1 and frame["prompt"].iloc[-1] == prompt.strip('"')


def test_reads_bom_crlf_and_quoted_multiline_prompts(tmp_path):
    text = '\ufeffid,prompt,score\r\n1,"line one\r\nline ""two""",3\r\n2,plain,0\r\n'
    frame = read_train_csv(write(tmp_path, text))
    assert frame["id"].tolist() == ["1", "2"]
    assert frame["prompt"].iloc[0] == 'line one\r\nline "two"'
    assert frame["score"].tolist() == [3, 0]


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
