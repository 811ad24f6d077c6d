"""Hostile CSV files: each either loads or fails with one clear DataError line, never another exception."""

import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from submission.data import DataError, read_test_csv, read_train_csv

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


def test_hundred_thousand_rows_load_in_seconds(tmp_path):
    import time

    path = tmp_path / "big.csv"
    prompt = '"### Задание для оценки:\nx\n\n### Ответ для оценки:\ny\n\n### Критерий оценки:\nz\n\n### Шкала оценивания по критерию:\n0: a\n1: b\n"'
    path.write_text("id,prompt\n" + "".join(f"{i},{prompt}\n" for i in range(100_000)), encoding="utf-8")
    start = time.perf_counter()
    frame = read_test_csv(path)
    assert len(frame) == 100_000 and time.perf_counter() - start < 10
