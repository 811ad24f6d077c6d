"""The runtime's decisions on the tiny models: auto-pick, ensembles, deadlines, priors (faults: tests/robustness/)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from submission.choice.autopick import candidate_model_dirs, rank_candidates
from submission.data import read_test_csv
from submission.prompts.sections import parse_prompt
from submission.runtime import runtime
from submission.runtime.run_meta import RunMeta
from submission.runtime.runtime import Deadline, RunSettings, choose_engine, predict
from submission.scoring import scorer

ROOT = Path(__file__).resolve().parents[3]


def write_report(model_dir: Path, **fields) -> None:
    (model_dir / "validation_report.json").write_text(json.dumps(fields), encoding="utf-8")


@pytest.fixture(scope="module")
def two_models(tmp_path_factory):
    """Two different tiny models (hidden 32), built once for this module."""
    from trainer.tiny.models import make_tiny_model_dir

    base = tmp_path_factory.mktemp("two_models")
    return [make_tiny_model_dir(base / f"m{seed}", hidden_size=32, num_layers=1, seed=seed) for seed in (1, 2)]


@pytest.fixture(scope="module")
def frame(synth_dir):
    return read_test_csv(synth_dir / "test.csv").head(24).reset_index(drop=True)


def place(src: Path, dst: Path, **report) -> Path:
    shutil.copytree(src, dst)
    if report:
        write_report(dst, **report)
    return dst


def test_auto_pick_takes_the_better_report_and_says_why(two_models, frame, tmp_path):
    place(two_models[0], tmp_path / "runs" / "weak" / "merged", qwk=0.30, created="2026-11-01T00:00:00")
    place(two_models[1], tmp_path / "runs" / "strong" / "merged", qwk=0.60, created="2026-10-01T00:00:00")
    place(two_models[0], tmp_path / "runs" / "noreport" / "merged")
    result = predict(frame, RunSettings(models=tmp_path / "runs", device="cpu"))
    assert result.meta["model_dirs"] == [str(tmp_path / "runs" / "strong" / "merged")]
    assert "strong=0.6" in result.meta["choice_reason"] and result.meta["strategy"] == "single"
    # Lower is better for mae; a folder without a report is last either way.
    dirs = candidate_model_dirs([tmp_path / "runs"])
    for d, mae in zip(dirs, (0.9, 0.4), strict=False):
        report = json.loads((d / "validation_report.json").read_text()) if (d / "validation_report.json").is_file() else {}
        write_report(d, **report, mae=mae)
    ranked = rank_candidates(dirs, "mae")
    assert [c.value for c in ranked] == [0.4, 0.9, None]


def test_a_training_in_progress_is_not_a_candidate(two_models, tmp_path):
    """``runs/.NAME.next`` (a training writing, or one that failed) holds a model with a better report: not picked."""
    done = place(two_models[0], tmp_path / "runs" / "exp1" / "merged", qwk=0.3)
    place(two_models[1], tmp_path / "runs" / ".exp1.next" / "merged", qwk=0.9)
    place(two_models[1], tmp_path / "runs" / ".exp2.next", qwk=0.9)
    assert candidate_model_dirs([tmp_path / "runs"]) == [done]
    assert candidate_model_dirs([tmp_path / "runs" / ".exp1.next"]) == [tmp_path / "runs" / ".exp1.next" / "merged"]


def test_tie_goes_to_the_newer_report(two_models, tmp_path):
    old = place(two_models[0], tmp_path / "old", qwk=0.5, created="2026-01-01T00:00:00")
    new = place(two_models[1], tmp_path / "new", qwk=0.5, created="2026-06-01T00:00:00")
    assert rank_candidates([old, new], "qwk")[0].path == new


def test_a_model_that_fails_to_load_is_skipped_with_a_note(two_models, frame, tmp_path):
    broken = place(two_models[0], tmp_path / "runs" / "broken" / "merged", qwk=0.9)
    for weights in broken.glob("*.safetensors"):
        weights.write_bytes(b"not a safetensors file")
    good = place(two_models[1], tmp_path / "runs" / "good" / "merged", qwk=0.1)
    result = predict(frame, RunSettings(models=tmp_path / "runs", device="cpu"))
    assert result.meta["model_dirs"] == [str(good)]
    assert result.meta["skipped_models"][0]["path"] == str(broken)


def test_ensemble_averages_member_probabilities_with_stored_weights(two_models, frame, tmp_path):
    bundle = tmp_path / "bundle"
    a = place(two_models[0], bundle / "models" / "a", qwk=0.5)
    b = place(two_models[1], bundle / "models" / "b", qwk=0.4)
    decision = {"rule": "thresholds", "thresholds": [0.7, 1.4, 2.2]}
    (bundle / "ensemble.json").write_text(json.dumps({
        "members": [{"model": "models/a", "weight": 0.25}, {"model": "models/b", "weight": 0.75}],
        "decision": decision, "metric": "qwk", "value": 0.55}))
    result = predict(frame, RunSettings(models=bundle / "models", device="cpu", time_limit_s=600))
    assert result.meta["strategy"] == "ensemble" and len(result.meta["models"]) == 2
    assert result.meta["decision"] == decision
    alone = [predict(frame, RunSettings(model_dir=d, device="cpu")).probabilities for d in (a, b)]
    np.testing.assert_allclose(result.probabilities, 0.25 * alone[0] + 0.75 * alone[1], atol=1e-6)
    single = predict(frame, RunSettings(models=bundle / "models", device="cpu", ensemble=False))
    assert single.meta["strategy"] == "single" and single.meta["model_dirs"] == [str(a)]


class StepClock:
    """A clock that moves only when a chunk starts, so deadline tests do not depend on machine speed."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_deadline_fills_unreached_rows_with_the_prior_and_counts_them(tiny_model_dir, frame, tmp_path, monkeypatch):
    model = place(tiny_model_dir, tmp_path / "m", qwk=0.5,
                  class_prior={"overall": {"0": 0.1, "2": 0.9}, "by_criterion": {}})
    full = predict(frame, RunSettings(model_dir=model, device="cpu", chunk_tokens=2000))
    clock = StepClock()
    chunks = []

    def next_chunk():
        chunks.append(clock.now)
        clock.now += 40.0

    deadline = Deadline(100.0, clock=clock, before_chunk=next_chunk)  # 10 s margin: chunks at 0, 40, 80; none at 120
    cut = predict(frame, RunSettings(model_dir=model, device="cpu", chunk_tokens=2000), deadline)
    assert len(chunks) == 3
    fallbacks = cut.meta["fallback_rows"]
    assert 0 < fallbacks < len(frame) and cut.meta["fallback_reasons"]["deadline"] == fallbacks
    scored = ~np.all(cut.probabilities == full.probabilities, axis=1)
    assert scored.sum() == fallbacks  # exactly the fallback rows differ from the full run
    for i in np.flatnonzero(scored):
        allowed = parse_prompt(frame["prompt"][i]).allowed
        assert cut.scores[i] == (2 if 2 in allowed else 0)


def test_generative_judge_extracts_scores_and_counts_rows_without_one(tiny_model_dir, frame, tmp_path, monkeypatch):
    from submission.engines.engine_hf import TransformersEngine

    model = place(tiny_model_dir, tmp_path / "gen")
    (model / "judge.json").write_text(json.dumps({"mode": "generate"}))

    def texts(self, prompts, max_new_tokens):
        return ["Рассуждение... Оценка: 0" if i % 2 else "не знаю" for i in range(len(prompts))]

    monkeypatch.setattr(TransformersEngine, "generate_texts", texts)
    result = predict(frame, RunSettings(model_dir=model, device="cpu"))
    assert result.meta["strategy"] == "generate"
    unextracted = result.meta["fallback_reasons"]["no_score_in_text"]
    assert unextracted == result.meta["fallback_rows"] and 0 < unextracted < len(frame)
    assert result.scores.count(0) >= len(frame) - unextracted


def test_engine_choice_follows_estimated_time():
    assert choose_engine("auto", "cpu", 10**7, True)[0] == "hf"
    assert choose_engine("auto", "cuda", 3_900_000, False)[0] == "hf"
    assert choose_engine("auto", "cuda", 3_900_000, True)[0] == "hf"  # 5+33 s beats 253+10 s
    assert choose_engine("auto", "cuda", 200_000_000, True)[0] == "vllm"
    assert choose_engine("vllm", "cpu", 1, False)[0] == "vllm"


@pytest.mark.parametrize("args, message", [
    (["--engine", "tpu"], "--engine"),
    (["--metric", "bleu"], "--metric"),
    (["--models", "/nonexistent/models"], "does not exist"),
])
def test_bad_flags_exit_2_with_one_line(synth_dir, tmp_path, args, message):
    proc = subprocess.run([sys.executable, "submission/run_optimized.py", "--test_path", str(synth_dir / "test.csv"),
                           "--pred_path", str(tmp_path / "p.csv"), *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, env={k: v for k, v in os.environ.items() if k != "AIJ_MODEL_DIR"})
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("error: ") and message in proc.stderr
    assert "Traceback" not in proc.stderr


THRESHOLDS_A = {"rule": "thresholds", "thresholds": [0.5, 1.5, 2.5]}
THRESHOLDS_B = {"rule": "thresholds", "thresholds": [0.7, 1.7, 2.3]}


def test_equally_good_reports_form_an_equal_weight_ensemble_and_a_worse_one_does_not(two_models, frame, tmp_path):
    runs = tmp_path / "runs"
    a = place(two_models[0], runs / "a" / "merged", qwk=0.60, decision=THRESHOLDS_A)
    b = place(two_models[1], runs / "b" / "merged", qwk=0.59, decision=THRESHOLDS_B)
    result = predict(frame, RunSettings(models=runs, device="cpu"))
    meta = result.meta
    assert meta["strategy"] == "ensemble" and meta["model_dirs"] == [str(a), str(b)]
    assert meta["ensemble"]["source"] == "auto" and meta["ensemble"]["weights"] == [0.5, 0.5]
    assert meta["ensemble"]["members"] == [str(a), str(b)] and "2 models within 0.02 qwk" in meta["ensemble"]["reason"]
    assert meta["ensemble"]["strategy"] == "ensemble" and meta["ensemble"]["first_chunk_tokens_per_s"] > 0
    assert meta["decision"]["thresholds"] == pytest.approx([0.6, 1.6, 2.4])  # mean of the members' thresholds
    assert RunMeta.from_dict(meta).to_dict() == meta  # the ensemble entry is part of the schema too
    alone = [predict(frame, RunSettings(model_dir=d, device="cpu")).probabilities for d in (a, b)]
    np.testing.assert_allclose(result.probabilities, (alone[0] + alone[1]) / 2, atol=1e-6)

    off = predict(frame, RunSettings(models=runs, device="cpu", ensemble=False))
    assert off.meta["strategy"] == "single" and off.meta["model_dirs"] == [str(a)] and "ensemble" not in off.meta
    write_report(b, qwk=0.40, decision=THRESHOLDS_B)  # clearly worse: the best model alone
    worse = predict(frame, RunSettings(models=runs, device="cpu"))
    assert worse.meta["strategy"] == "single" and worse.meta["model_dirs"] == [str(a)] and "ensemble" not in worse.meta
    assert worse.meta["decision"] == THRESHOLDS_A


def test_auto_ensemble_takes_close_scoring_models_only_up_to_the_cap(tmp_path):
    from submission.choice.autopick import Candidate, auto_ensemble

    def candidate(name, value, mode="score"):
        path = tmp_path / name
        path.mkdir()
        if mode != "score":
            (path / "judge.json").write_text(json.dumps({"mode": mode}))
        return Candidate(path, {"qwk": value} if value is not None else {}, value)

    ranked = [candidate("gen", 0.70, "generate"), candidate("a", 0.69), candidate("b", 0.68), candidate("c", 0.675),
              candidate("d", 0.60), candidate("none", None)]
    ensemble = auto_ensemble(ranked, "qwk", tolerance=0.02, max_members=2)
    assert [m.path.name for m in ensemble.members] == ["a", "b"] and [m.weight for m in ensemble.members] == [0.5, 0.5]
    assert ensemble.decision["rule"] == "argmax"  # the members have no thresholds
    assert [m.path.name for m in auto_ensemble(ranked, "qwk", 0.02, 3).members] == ["a", "b", "c"]
    assert auto_ensemble(ranked, "qwk", 0.005, 3) is None  # nobody within 0.005 of a
    assert auto_ensemble(ranked, "qwk", 0.02, 1) is None


def slow_engine(monkeypatch, tokens_per_s: float) -> None:
    """Make the transformers engine report ``tokens_per_s`` (its measured time grows by tokens / tokens_per_s)."""
    from submission.engines.engine_hf import TransformersEngine

    real = TransformersEngine.label_logits

    def label_logits(self, prompts, progress=None):
        out = real(self, prompts, progress)
        self.seconds += sum(len(p) for p in prompts) / tokens_per_s
        return out

    monkeypatch.setattr(TransformersEngine, "label_logits", label_logits)


@pytest.mark.parametrize("time_limit, expected", [(600.0, "single"), (1e7, "ensemble")])
def test_ensemble_is_decided_on_the_first_chunks_measured_throughput(two_models, frame, tmp_path, monkeypatch,
                                                                      time_limit, expected):
    runs = tmp_path / "runs"
    place(two_models[0], runs / "a" / "merged", qwk=0.6)
    place(two_models[1], runs / "b" / "merged", qwk=0.6)
    slow_engine(monkeypatch, tokens_per_s=10.0)  # 24 rows of ~1k tokens: each member needs ~40 min at this rate
    chunks, decided_after = [], []
    real_fits = runtime.ensemble_fits
    monkeypatch.setattr(runtime, "ensemble_fits", lambda *a: (decided_after.append(len(chunks)), real_fits(*a))[1])
    deadline = Deadline(time_limit, before_chunk=lambda: chunks.append(1))
    result = predict(frame, RunSettings(models=runs, device="cpu", time_limit_s=time_limit, chunk_tokens=4000), deadline)
    ensemble = result.meta["ensemble"]
    assert decided_after == [1]  # decided right after the first chunk, before the rest of the rows
    assert ensemble["first_chunk_tokens_per_s"] == pytest.approx(10.0, rel=0.05)
    assert result.meta["strategy"] == ensemble["strategy"] == expected
    assert "at 10 tokens/s (first chunk)" in ensemble["why"]
    assert len(result.meta["model_dirs"]) == (1 if expected == "single" else 2)


def test_runtime_applies_a_stored_minus_one_threshold_only_where_the_rubric_allows_minus_one(tiny_model_dir, frame,
                                                                                             tmp_path):
    old = place(tiny_model_dir, tmp_path / "old", qwk=0.5, decision={"rule": "argmax", "thresholds": []})
    new = place(tiny_model_dir, tmp_path / "new", qwk=0.5,
                decision={"rule": "argmax", "thresholds": [], "minus_one_threshold": 0.0})
    before = predict(frame, RunSettings(model_dir=old, device="cpu"))
    after = predict(frame, RunSettings(model_dir=new, device="cpu"))
    allows = [-1 in parse_prompt(p).allowed for p in frame["prompt"]]
    assert any(allows) and not all(allows)
    # A cut at P(-1) >= 0: every row whose rubric has the -1 line says -1, no other row does, the rest is unchanged.
    assert [s == -1 for s in after.scores] == allows
    assert [a for a, m in zip(after.scores, allows, strict=True) if not m] == \
           [b for b, m in zip(before.scores, allows, strict=True) if not m]
    assert after.meta["decision"]["minus_one_threshold"] == 0.0 and "minus_one_threshold" not in before.meta["decision"]


def test_auto_ensemble_averages_the_members_minus_one_thresholds(tmp_path):
    from submission.choice.autopick import Candidate, auto_ensemble

    def candidate(name, value, cut):
        decision = {**THRESHOLDS_A, **({"minus_one_threshold": cut} if cut is not None else {})}
        return Candidate(tmp_path / name, {"qwk": value, "decision": decision}, value)

    both = auto_ensemble([candidate("a", 0.6, 0.2), candidate("b", 0.6, 0.4)], "qwk", 0.02, 2)
    assert both.decision["minus_one_threshold"] == pytest.approx(0.3)
    one = auto_ensemble([candidate("a", 0.6, 0.2), candidate("b", 0.6, None)], "qwk", 0.02, 2)
    assert "minus_one_threshold" not in one.decision  # a member without a cut: argmax decides -1


def test_each_prompt_is_parsed_once_per_run_even_with_two_models(two_models, frame, tmp_path, monkeypatch):
    from collections import Counter

    from submission.prompts import prompting, sections

    runs = tmp_path / "runs"
    place(two_models[0], runs / "a" / "merged", qwk=0.6)
    place(two_models[1], runs / "b" / "merged", qwk=0.6)
    parsed = Counter()
    real = sections.parse_prompt

    def counting(prompt, *labels):
        parsed[prompt] += 1
        return real(prompt, *labels)

    monkeypatch.setattr(scorer, "parse_prompt", counting)
    monkeypatch.setattr(prompting, "parse_prompt", counting)
    result = predict(frame, RunSettings(models=runs, device="cpu", time_limit_s=1e7))
    assert result.meta["strategy"] == "ensemble"  # both models rendered every row
    assert {p: parsed[p] for p in frame["prompt"]} == dict(Counter(frame["prompt"]))
