"""Broken JSON artefacts, broken ensembles and models that output NaN: each model is skipped with the reason in the
meta (or the run stops with one line) before anything is scored; NaN/inf logits never become a score."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

from submission.data import DataError
from submission.runtime import runtime
from submission.runtime.runtime import RunSettings, predict
from submission.scoring import scorer
from submission.scoring.decoding import LABELS, finite_rows, probabilities_from_label_logits


@pytest.fixture
def frame(test_frame):
    return test_frame.head(6)


def model(root, name, tiny_model_dir, report=None, judge=None):
    path = root / name
    shutil.copytree(tiny_model_dir, path)
    if report is not None:
        (path / "validation_report.json").write_text(report if isinstance(report, str) else json.dumps(report))
    if judge is not None:
        (path / "judge.json").write_text(judge)
    return path


@pytest.mark.parametrize("report, judge, reason", [
    ({"qwk": 0.9, "decision": "argmax"}, None, "decision must be an object"),
    ({"qwk": 0.9, "decision": {"rule": "median"}}, None, "unknown decision rule 'median'"),
    ({"qwk": 0.9, "decision": {"rule": "thresholds", "thresholds": ["a", 1, 2]}}, None, "thresholds must be numbers"),
    ({"qwk": 0.9, "class_prior": [0.2, 0.8]}, None, "class_prior must be an object"),
    ({"qwk": 0.9, "class_prior": {"overall": {"0": "much"}}}, None, "probabilities must be finite numbers"),
    ({"qwk": "high"}, None, "qwk is 'high', not a number"),
    ('{"qwk": 0.9', None, "not JSON"),
    ({"qwk": 0.9}, "{mode: generate", "judge.json: not JSON"),
    ({"qwk": 0.9}, '{"mode": "chat"}', "mode 'chat' is not one of score, generate"),
])
def test_a_model_with_a_malformed_artefact_is_skipped_with_the_reason(tmp_path, tiny_model_dir, frame, report, judge,
                                                                       reason):
    good = model(tmp_path, "good", tiny_model_dir, {"qwk": 0.5})
    model(tmp_path, "bad", tiny_model_dir, report, judge)
    result = predict(frame, RunSettings(models=tmp_path, device="cpu", ensemble=False))
    assert result.meta["model_dirs"] == [str(good)] and result.meta["fallback_rows"] == 0
    [skipped] = result.meta["skipped_models"]
    assert skipped["path"].endswith("bad") and reason in skipped["error"], skipped


def test_an_explicit_model_with_a_malformed_report_is_one_line_before_loading(tmp_path, tiny_model_dir, frame):
    path = model(tmp_path, "m", tiny_model_dir, {"decision": {"rule": "median"}})
    with pytest.raises(DataError, match="unknown decision rule") as err:
        predict(frame, RunSettings(model_dir=path, device="cpu"))
    assert "\n" not in str(err.value)


def ensemble_root(tmp_path, tiny_model_dir, members):
    for name in ("a", "b"):
        model(tmp_path / "models", name, tiny_model_dir, {"qwk": 0.5})
    (tmp_path / "ensemble.json").write_text(members if isinstance(members, str) else json.dumps({"members": members}))
    return tmp_path / "models"


@pytest.mark.parametrize("members, reason", [
    ("{not json", "not JSON"),
    ([{"path": "models/a"}, {"model": "models/b"}], 'member 1 has no "model" path'),
    ([{"model": "models/a", "weight": "heavy"}], "weight 'heavy' is not a finite number"),
])
def test_a_malformed_ensemble_json_is_ignored_with_the_reason(tmp_path, tiny_model_dir, frame, members, reason):
    root = ensemble_root(tmp_path, tiny_model_dir, members)
    result = predict(frame, RunSettings(models=root, device="cpu"))
    assert any(s["path"].endswith("ensemble.json") and reason in s["error"] for s in result.meta["skipped_models"])
    assert result.meta["fallback_rows"] == 0 and result.meta["model_dirs"]


@pytest.mark.parametrize("weight", [0, -1.0])
def test_a_member_weighted_zero_or_below_is_left_out_not_every_row_the_prior(tmp_path, tiny_model_dir, frame, weight):
    root = ensemble_root(tmp_path, tiny_model_dir, [{"model": "models/a", "weight": weight},
                                                    {"model": "models/b", "weight": 1.0}])
    result = predict(frame, RunSettings(models=root, device="cpu"))
    assert result.meta["fallback_rows"] == 0
    assert [s["path"] for s in result.meta["skipped_models"]] == [str((root / "a").resolve())]
    assert "must be > 0" in result.meta["skipped_models"][0]["error"]
    assert result.meta["model_dirs"] == [str((root / "b").resolve())]


def test_a_missing_ensemble_member_is_named_as_missing(tmp_path, tiny_model_dir, frame):
    root = ensemble_root(tmp_path, tiny_model_dir, [{"model": "models/gone"}, {"model": "models/b"}])
    result = predict(frame, RunSettings(models=root, device="cpu"))
    [skipped] = result.meta["skipped_models"]
    assert "no such folder" in skipped["error"] and "Repo id" not in skipped["error"]


def test_after_a_member_fails_the_meta_says_single(tmp_path, tiny_model_dir, frame):
    root = ensemble_root(tmp_path, tiny_model_dir, [{"model": "models/a"}, {"model": "models/b"}])
    weights = root / "b" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])  # loads no further than the header
    result = predict(frame, RunSettings(models=root, device="cpu"))
    assert result.meta["strategy"] == "single" and result.meta["ensemble"]["strategy"] == "single"
    assert "the other members failed" in result.meta["ensemble"]["why"]


# -- NaN / inf -----------------------------------------------------------------------------------------------------
def test_nan_and_inf_logits_give_no_probabilities():
    logits = np.array([[0, 1, 2, 3, 4], [0, np.nan, 0, 0, 0], [0, 0, np.inf, 0, 0], [np.nan, 0, 1, 0, 0]], float)
    allowed = [LABELS, LABELS, LABELS, (0, 1)]  # the last row's NaN is on a label its rubric does not allow
    assert finite_rows(logits, allowed).tolist() == [True, False, False, True]
    probs = probabilities_from_label_logits(logits, allowed)
    assert np.isfinite(probs).all() and probs[1:3].sum() == 0 and probs[3].sum() == pytest.approx(1.0)


def nan_for(names, rows=None):
    """A scorer._score_chunk that gives NaN logits for models in ``names`` (every row, or the first ``rows``)."""
    real = scorer._score_chunk

    def score_chunk(model, chunk):
        logits = real(model, chunk)
        if model.candidate.path.name in names:
            logits[: rows if rows is not None else len(logits)] = np.nan
        return logits

    return score_chunk


def test_a_model_that_is_all_nan_on_its_first_chunk_is_skipped_for_the_next(tmp_path, tiny_model_dir, frame,
                                                                             monkeypatch):
    model(tmp_path, "fp16_overflow", tiny_model_dir, {"qwk": 0.9})
    good = model(tmp_path, "good", tiny_model_dir, {"qwk": 0.5})
    monkeypatch.setattr(scorer, "_score_chunk", nan_for({"fp16_overflow"}))
    result = predict(frame, RunSettings(models=tmp_path, device="cpu", ensemble=False))
    assert result.meta["model_dirs"] == [str(good)] and result.meta["fallback_rows"] == 0
    assert "NonFiniteScores" in result.meta["skipped_models"][0]["error"]


def test_nan_rows_get_the_prior_under_their_own_reason(tmp_path, tiny_model_dir, frame, monkeypatch):
    path = model(tmp_path, "m", tiny_model_dir)
    monkeypatch.setattr(scorer, "_score_chunk", nan_for({"m"}, rows=2))
    result = predict(frame, RunSettings(model_dir=path, device="cpu", chunk_tokens=10**6))
    assert result.meta["fallback_reasons"]["non_finite"] == 2 == result.meta["fallback_rows"]
    assert result.meta["fallback_reasons"]["no_score_in_text"] == 0


def test_an_all_nan_only_model_is_nothing_loaded_not_a_file_of_priors(tmp_path, tiny_model_dir, frame, monkeypatch):
    path = model(tmp_path, "m", tiny_model_dir)
    monkeypatch.setattr(scorer, "_score_chunk", nan_for({"m"}))
    with pytest.raises(FileNotFoundError, match="no model could be loaded: .*NaN or infinite"):
        predict(frame, RunSettings(model_dir=path, device="cpu"))


# -- trainer distill -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("corrupt", ["config", "weights"])
def test_distill_with_a_corrupt_teacher_is_one_line_exit_2(tmp_path, tiny_model_dir, synth_dir, corrupt):
    from trainer.cli import app

    teacher = model(tmp_path, "teacher", tiny_model_dir)
    if corrupt == "config":
        (teacher / "config.json").write_text("{not json")
    else:
        weights = teacher / "model.safetensors"
        weights.write_bytes(weights.read_bytes()[:1000])
    result = CliRunner().invoke(app, ["distill", "--teacher", str(teacher), "--data", str(synth_dir / "test.csv"),
                                      "--out", str(tmp_path / "soft.csv"), "--device", "cpu"])
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = result.stderr.strip().splitlines() if hasattr(result, "stderr") else result.output.strip().splitlines()
    assert lines[-1].startswith("error: --teacher") and "does not load" in lines[-1]
    assert not (tmp_path / "soft.csv").exists()


def test_runtime_skips_reasons_are_checked_before_loading(tmp_path, tiny_model_dir, frame, monkeypatch):
    model(tmp_path, "bad", tiny_model_dir, {"decision": "argmax"})
    good = model(tmp_path, "good", tiny_model_dir)
    opened = []
    real = runtime.open_model
    monkeypatch.setattr(runtime, "open_model", lambda c, *a, **k: opened.append(c.path) or real(c, *a, **k))
    predict(frame, RunSettings(models=tmp_path, device="cpu", ensemble=False))
    assert opened == [good]  # the broken one was never loaded
