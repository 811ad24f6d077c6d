"""A judge whose judge.json declares ``"max_score": 4`` (trained on ``import-pollux --keep-0-4`` data) scores through
the runtime's own path: the "4" token is read, 4 is allowed on rows whose rubric states it, the output validates;
a judge without it runs exactly as before (no p_4 column, no ``labels`` in the meta)."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

from submission.choice.autopick import artefact_problem
from submission.cli import build_parser, run
from submission.data import read_predictions_csv, validate_predictions
from submission.prompts.sections import LABELS_0_4, compose_prompt, parse_prompt

SCALES = {
    "four": "-1: критерий неприменим\n\n0: нет\n\n1: слабо\n\n2: средне\n\n3: хорошо\n\n4: отлично",
    "two": "0: нет\n1: частично\n2: да",
    "three": "0: плохо\n1: слабо\n2: хорошо\n3: отлично",
}


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    from trainer.tiny.models import make_tiny_model_dir

    return make_tiny_model_dir(tmp_path_factory.mktemp("m04") / "m", hidden_size=32, num_layers=1, seed=3)


@pytest.fixture
def test_csv(tmp_path):
    path = tmp_path / "test.csv"
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "prompt"])
        for name, scale in SCALES.items():
            writer.writerow([name, compose_prompt("Сколько будет 2+2?", "4", "Правильность", scale)])
    return path


def _run(model_dir: Path, test_csv: Path, out: Path) -> tuple[list[dict], dict, list[dict]]:
    args = build_parser().parse_args(["--test_path", str(test_csv), "--pred_path", str(out / "pred.csv"),
                                      "--model-dir", str(model_dir), "--device", "cpu", "--engine", "hf",
                                      "--probabilities", str(out / "probs.csv")])
    assert run(args) == 0
    predictions = read_predictions_csv(out / "pred.csv").to_dict("records")
    meta = json.loads((out / "pred_meta.json").read_text(encoding="utf-8"))
    with (out / "probs.csv").open(encoding="utf-8") as handle:
        probabilities = list(csv.DictReader(handle))
    return predictions, meta, probabilities


def test_a_0_4_judge_reads_the_4_token_and_its_output_validates(model, test_csv, tmp_path):
    judge = tmp_path / "judge04"
    shutil.copytree(model, judge)
    (judge / "judge.json").write_text(json.dumps({"max_score": 4}), encoding="utf-8")
    predictions, meta, probabilities = _run(judge, test_csv, tmp_path)
    assert meta["labels"] == list(LABELS_0_4) and meta["fallback_rows"] == 0
    assert list(probabilities[0]) == ["id", "p_-1", "p_0", "p_1", "p_2", "p_3", "p_4"]
    by_id = {row["id"]: {k: float(v) for k, v in row.items() if k != "id"} for row in probabilities}
    assert by_id["four"]["p_4"] > 0.0  # the rubric states 4: the "4" token's logit is read
    assert by_id["two"]["p_4"] == by_id["two"]["p_3"] == 0.0 and by_id["three"]["p_4"] == 0.0
    assert all(abs(sum(row.values()) - 1.0) < 1e-9 for row in by_id.values())
    prompts = {name: compose_prompt("Сколько будет 2+2?", "4", "Правильность", s) for name, s in SCALES.items()}
    stated = [parse_prompt(prompts[p["id"]], LABELS_0_4).stated for p in predictions]
    validate_predictions([p["id"] for p in predictions], [p["score"] for p in predictions], stated, LABELS_0_4)
    assert {p["id"]: p["score"] for p in predictions}["two"] in (0, 1, 2)


def test_a_judge_without_max_score_runs_as_before(model, test_csv, tmp_path):
    predictions, meta, probabilities = _run(model, test_csv, tmp_path)
    assert "labels" not in meta
    assert list(probabilities[0]) == ["id", "p_-1", "p_0", "p_1", "p_2", "p_3"]
    assert all(p["score"] in (-1, 0, 1, 2, 3) for p in predictions)


def test_a_bad_max_score_is_an_artefact_problem(model, tmp_path):
    judge = tmp_path / "bad"
    shutil.copytree(model, judge)
    (judge / "judge.json").write_text(json.dumps({"max_score": 5}), encoding="utf-8")
    assert "max_score 5 is not one of 3, 4" in artefact_problem(judge, "qwk")
    (judge / "judge.json").write_text(json.dumps({"max_score": 4}), encoding="utf-8")
    assert artefact_problem(judge, "qwk") is None


def test_one_run_scores_one_label_range_the_best_ranked_judges(tmp_path):
    from submission.choice.autopick import Candidate, Ensemble, Member, one_label_set

    dirs = []
    for name, judge in (("best04", {"max_score": 4}), ("plain", None), ("other04", {"max_score": 4})):
        (tmp_path / name).mkdir()
        if judge:
            (tmp_path / name / "judge.json").write_text(json.dumps(judge), encoding="utf-8")
        dirs.append(tmp_path / name)
    ranked = [Candidate(d) for d in dirs]
    ensemble = Ensemble(None, [Member(d, 1.0) for d in dirs], None)
    labels, dropped = one_label_set(ranked, ensemble)
    assert labels == LABELS_0_4 and [c.path for c in ranked] == [dirs[0], dirs[2]]
    assert [m.path for m in ensemble.members] == [dirs[0], dirs[2]]
    assert dropped == [(str(dirs[1]), "scores -1..3 (judge.json max_score); the best-ranked judge scores -1..4")]
