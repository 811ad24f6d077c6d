"""`trainer import-pollux`: POLLUX-shaped parquet and JSONL -> contest CSVs the runtime reads back."""

from __future__ import annotations

import pandas as pd
import pytest
from typer.testing import CliRunner

from submission.data import DataError, read_train_csv
from submission.prompts.sections import LABELS_0_4, parse_prompt
from tests import pollux_fixture as fx
from trainer.cli import app
from trainer.data.augment import NOT_APPLICABLE_LINE
from trainer.data.pollux import (
    META_COLUMNS,
    PolluxError,
    consensus_score,
    import_pollux,
    pollux_id,
    rubric_scale,
    split_by_instruction,
)


@pytest.fixture(params=["jsonl", "parquet"])
def source(request, tmp_path):
    write = fx.write_jsonl if request.param == "jsonl" else fx.write_parquet
    return write(tmp_path / f"pollux.{request.param}")


@pytest.fixture
def imported(source, tmp_path):
    result, [path] = import_pollux(source, tmp_path / "out")
    return result, path


def test_both_formats_give_the_expected_scores_and_counts(imported):
    result, path = imported
    frame = read_train_csv(path)  # the trainer's own reader accepts the file
    assert frame["score"].tolist() == [expected for *_, expected in fx.KEPT]
    assert dict(result.dropped) == {reason: 1 for _, reason in fx.DROPPED}
    written = pd.read_csv(path, dtype={"id": str})
    assert list(written.columns) == ["id", "prompt", "score", *META_COLUMNS]
    assert written["id"].is_unique
    assert written["human_mean"].iloc[2] == 1.5 and written["human_mean"].iloc[4] == 1.25  # fractional means kept
    assert written["human_mean"].iloc[6] == 3.0  # annotators [-1, 3]: the applicable mean, not the published 1.0
    assert written["criteria_name"].tolist() == [c for _, _, c, *_ in fx.KEPT]
    assert written["task_type"].iloc[7] == fx.TASK_TYPES["sum"]


def test_parquet_and_jsonl_write_the_same_csv(tmp_path):
    _, [a] = import_pollux(fx.write_jsonl(tmp_path / "p.jsonl"), tmp_path / "a")
    _, [b] = import_pollux(fx.write_parquet(tmp_path / "p.parquet"), tmp_path / "b")
    assert a.read_text(encoding="utf-8") == b.read_text(encoding="utf-8")


def test_a_hub_snapshot_folder_is_read_from_its_parquet_files(tmp_path):
    folder = tmp_path / "snapshot"
    (folder / "data").mkdir(parents=True)
    fx.write_parquet(folder / "data" / "test-00000.parquet")
    (folder / "dataset_infos.json").write_text('{"default": {}}', encoding="utf-8")  # hub metadata: not rows
    result, _ = import_pollux(folder, tmp_path / "out")
    assert len(result.frame) == len(fx.KEPT)


def test_prompts_parse_back_with_the_rubric_labels_and_reference_only_when_given(imported):
    result, _ = imported
    for row, (task, model, criterion, scale, *_rest) in zip(result.frame.itertuples(), fx.KEPT, strict=True):
        sections = parse_prompt(row.prompt)
        assert sections.parsed
        # The runtime reads back the rubric's labels, and -1 from the not-applicable line above them.
        assert sections.allowed == (-1, *rubric_scale(fx.RUBRICS[scale]))
        assert sections.scale == f"{NOT_APPLICABLE_LINE}\n\n{fx.RUBRICS[scale]}"
        assert sections.task == fx.INSTRUCTIONS[task] and sections.answer == fx.ANSWERS[(task, model)]
        assert sections.criterion.startswith(criterion)
        assert sections.reference == (fx.REFERENCES[task] or None)  # empty and null references: no section
        headers = [line for line in row.prompt.splitlines() if line.startswith("### ")]
        expected = ["### Задание для оценки:", "### Эталонный ответ:", "### Ответ для оценки:",
                    "### Критерий оценки:", "### Шкала оценивания по критерию:"]
        assert headers == [h for h in expected if fx.REFERENCES[task] or h != "### Эталонный ответ:"]


def test_ids_are_stable_hashes_of_instruction_answer_and_criterion(imported):
    result, _ = imported
    task, model, criterion, *_ = fx.KEPT[0]
    assert result.frame["id"].iloc[0] == pollux_id(fx.INSTRUCTIONS[task], fx.ANSWERS[(task, model)], criterion)
    assert pollux_id("a", "b", "c") != pollux_id("a", "bc", "")


@pytest.mark.parametrize(("scores", "mean", "expected"), [
    ([2, 2, 1], None, 2), ([1, 2], None, 1), ([0, 1, 2, 2], None, 1), ([1, 2, 2, 3], None, 2),
    ([-1, -1, 0], None, -1), ([-1, 2], None, 2), ([-1, -1, 1, 1], None, 1), ([], 1.5, 1), ([], 1.6, 2),
    ([], None, None),
])
def test_consensus_is_the_median_resolved_toward_the_mean_and_a_strict_majority_for_minus_one(scores, mean, expected):
    assert consensus_score(scores, mean) == expected


def test_split_holds_out_whole_instructions(tmp_path):
    result, [train_path, val_path] = import_pollux(fx.write_jsonl(tmp_path / "p.jsonl"), tmp_path / "out",
                                                   val_fraction=0.34, seed=3)
    train, val = (pd.read_csv(p, dtype={"id": str}) for p in (train_path, val_path))
    tasks = {name: {parse_prompt(p).task for p in frame["prompt"]} for name, frame in (("train", train), ("val", val))}
    assert tasks["train"] and tasks["val"] and not tasks["train"] & tasks["val"]
    assert len(tasks["val"]) == 1  # round(3 instructions x 0.34)
    assert sorted([*train["id"], *val["id"]]) == sorted(result.frame["id"])


def test_split_is_seeded_and_by_group():
    frame = pd.DataFrame({"x": range(8)})
    groups = ["a", "a", "b", "b", "c", "c", "d", "d"]
    train, val = split_by_instruction(frame, groups, 0.5, seed=1)
    assert len(val) == 4 and len({groups[i] for i in val["x"]}) == 2
    assert not {groups[i] for i in val["x"]} & {groups[i] for i in train["x"]}
    again = split_by_instruction(frame, groups, 0.5, seed=1)[1]
    assert again["x"].tolist() == val["x"].tolist()


def test_cli_prints_drop_counts_and_the_files(source, tmp_path):
    result = CliRunner().invoke(app, ["import-pollux", str(source), str(tmp_path / "out"), "--split", "0.34"])
    assert result.exit_code == 0, result.output
    assert "dropped       1 rows: a 0-4 scale" in result.stderr
    assert f"kept    {len(fx.KEPT):>7} of {len(fx.records())} rows" in result.stderr
    assert result.stdout.split() == [str(tmp_path / "out" / "train.csv"), str(tmp_path / "out" / "val.csv")]


def test_keep_0_4_keeps_the_0_4_criteria_scored_up_to_4_with_a_max_score_column(source, tmp_path):
    result = CliRunner().invoke(app, ["import-pollux", str(source), str(tmp_path / "out"), "--keep-0-4"])
    assert result.exit_code == 0, result.output
    assert "a 0-4 scale" not in result.stderr  # no scale_0_4 drop
    assert f"kept    {len(fx.KEPT) + 1:>7} of {len(fx.records())} rows" in result.stderr
    assert "kept          1 rows of 0-4 criteria" in result.stderr
    path = tmp_path / "out" / "pollux.csv"
    written = pd.read_csv(path, dtype={"id": str})
    assert list(written.columns) == ["id", "prompt", "score", *META_COLUMNS, "max_score"]
    four = written[written["criteria_name"] == "Подробность"]
    assert four["score"].tolist() == [4] and four["max_score"].tolist() == [4]  # annotators [4, 3, 4]
    assert written["max_score"].tolist()[: len(fx.KEPT)] == [int(s[-1]) for _, _, _, s, *_ in fx.KEPT]
    frame = read_train_csv(path)  # the reader accepts the 4 where max_score says 4, and keeps the column
    assert frame["score"].max() == 4 and "max_score" in frame.columns
    prompt = four["prompt"].iloc[0]
    assert parse_prompt(prompt).allowed == (-1, 0, 1, 2, 3)  # a default judge reads the 0-4 rubric as 0..3
    assert parse_prompt(prompt, LABELS_0_4).allowed == (-1, 0, 1, 2, 3, 4)
    # Without the flag: dropped and counted as ever, no max_score column.
    default, [plain] = import_pollux(source, tmp_path / "plain")
    assert default.dropped["scale_0_4"] == 1 and "max_score" not in pd.read_csv(plain).columns


def test_a_4_is_refused_in_a_train_csv_unless_its_row_says_max_score_4(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("id,prompt,score\na,x,4\n", encoding="utf-8")
    with pytest.raises(DataError, match="score '4' is not one of -1,0,1,2,3"):
        read_train_csv(path)
    path.write_text("id,prompt,score,max_score\na,x,4,2\nb,y,4,4\n", encoding="utf-8")
    with pytest.raises(DataError, match="row 1: score '4'.*4 only where max_score is 4"):
        read_train_csv(path)
    path.write_text("id,prompt,score,max_score\na,x,2,2\nb,y,4,4\n", encoding="utf-8")
    assert read_train_csv(path)["score"].tolist() == [2, 4]


def test_a_source_without_pollux_columns_is_a_user_error(tmp_path):
    path = tmp_path / "other.jsonl"
    path.write_text('{"id": 1, "prompt": "x", "score": 2}\n', encoding="utf-8")
    with pytest.raises(PolluxError, match="missing POLLUX column"):
        import_pollux(path, tmp_path / "out")
    result = CliRunner().invoke(app, ["import-pollux", str(tmp_path / "missing.parquet"), str(tmp_path / "o")])
    assert result.exit_code == 2 and "no such file or folder" in result.stderr


def test_without_the_not_applicable_line_gold_minus_one_rows_are_dropped(source, tmp_path):
    result, _ = import_pollux(source, tmp_path / "out", not_applicable_line=False)
    assert result.dropped["not_applicable_without_line"] == sum(1 for *_, e in fx.KEPT if e == -1) == 1
    assert -1 not in set(result.frame["score"])
    assert all(parse_prompt(p).allowed == rubric_scale(parse_prompt(p).scale) for p in result.frame["prompt"])


def test_a_hub_id_is_read_with_datasets_and_an_offline_failure_is_one_line(tmp_path, monkeypatch):
    import datasets

    asked = []

    def load_dataset(name, split):
        asked.append((name, split))
        if name != "ai-forever/POLLUX":
            raise ConnectionError("Couldn't reach the Hub\nmore detail")
        return datasets.Dataset.from_pandas(pd.read_parquet(fx.write_parquet(tmp_path / "p.parquet")))

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    result, _ = import_pollux("ai-forever/POLLUX", tmp_path / "out", split="test")
    assert asked == [("ai-forever/POLLUX", "test")] and len(result.frame) == len(fx.KEPT)
    with pytest.raises(PolluxError, match=r"^someone/else: could not load the hub dataset \(ConnectionError: "
                                          r"Couldn't reach the Hub\); download it") as error:
        import_pollux("someone/else", tmp_path / "out2")
    assert "\n" not in str(error.value)


def test_a_long_file_logs_progress_off_a_terminal(tmp_path, monkeypatch, caplog):
    from trainer.data import pollux

    monkeypatch.setattr(pollux, "_PROGRESS_EVERY", 5)
    with caplog.at_level("INFO", logger="trainer.data.pollux"):
        import_pollux(fx.write_jsonl(tmp_path / "p.jsonl"), tmp_path / "out")
    total = len(fx.records())
    assert [r.getMessage() for r in caplog.records] == [f"pollux: {n}/{total} rows" for n in (5, 10, 15)]


def test_a_rubric_with_its_own_minus_one_line_gets_no_second_one():
    from trainer.data.pollux import convert_row

    record = fx.records()[5] | {"rubrics": "-1: Неприменимо.\n\n0: Нет.\n\n1: Да."}
    row, reason = convert_row(record)
    assert reason is None and row["score"] == -1
    assert parse_prompt(row["prompt"]).scale == record["rubrics"]
    assert convert_row(record, not_applicable_line=False)[0]["score"] == -1  # listed by the rubric itself: kept
