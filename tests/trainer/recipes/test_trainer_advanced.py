"""Augmentation keeps labels (or lowers them by the rubric); blend weights are fitted, not assumed."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pandas as pd


def _frame(synth_dir):
    return pd.read_csv(synth_dir / "train.csv", dtype={"id": str})


def test_paraphrase_and_noise_keep_the_parsed_rubric_and_answer_words(synth_dir):
    from submission.prompts.sections import parse_prompt
    from trainer.data.augment import format_noise, paraphrase_headers

    rng = random.Random(0)
    changed = 0
    for prompt in _frame(synth_dir).prompt.head(40):
        new = format_noise(paraphrase_headers(prompt, rng), rng)
        before, after = parse_prompt(prompt), parse_prompt(new)
        assert after.parsed and after.allowed == before.allowed
        assert after.answer.split() == before.answer.split() and after.criterion.strip() == before.criterion.strip()
        changed += new != prompt
    assert changed > 30


def test_hard_negatives_only_lower_top_scores(synth_dir):
    from submission.prompts.sections import parse_prompt
    from trainer.data.augment import hard_negative

    rng = random.Random(0)
    made = 0
    for row in _frame(synth_dir).itertuples():
        result = hard_negative(row.prompt, int(row.score), rng)
        top = max(s for s in parse_prompt(row.prompt).allowed if s >= 0)
        if result is None:
            continue
        assert int(row.score) == top and result[1] < top
        assert result[1] in parse_prompt(result[0]).allowed
        assert parse_prompt(result[0]).answer != parse_prompt(row.prompt).answer
        made += 1
    assert made > 10


def test_augment_frame_keeps_originals_and_marks_new_ids(synth_dir):
    from trainer.data.augment import augment_frame

    frame = _frame(synth_dir).head(50)
    out = augment_frame(frame, seed=0)
    assert list(out.id[:50]) == list(frame.id) and out.id.is_unique
    assert all(("#aug" in i) or ("#neg" in i) for i in out.id[50:])


def test_blend_weights_pick_the_informative_member():
    from trainer.recipes.advanced import fit_blend_weights

    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, size=200)
    good = np.full((200, 5), 0.05)
    good[np.arange(200), y + 1] = 0.8
    noise = rng.dirichlet(np.ones(5), size=200)
    allowed = [(0, 1, 2, 3)] * 200
    weights, value = fit_blend_weights([noise, good], y.tolist(), allowed, "accuracy")
    assert weights[1] > weights[0] and value > 0.95


def _cli(args):
    from typer.testing import CliRunner

    from trainer.cli import app

    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return Path(result.stdout.strip().splitlines()[-1])


def test_kfold_scores_each_fold_once_and_saves_one_out_of_fold_prediction_per_id(
    tiny_model_dir, synth_dir, tmp_path, monkeypatch
):
    from trainer.evaluation import evaluate
    from trainer.training.rundir import RunDir

    scored = []
    real_score_rows = evaluate.score_rows

    def counting_score_rows(model_dir, prompts, *args, **kwargs):
        scored.append((Path(model_dir), len(list(prompts))))
        return real_score_rows(model_dir, prompts, *args, **kwargs)

    monkeypatch.setattr(evaluate, "score_rows", counting_score_rows)
    out = _cli(["advanced", "--kfold", "2", "--experiment", "demo", "--train-path", synth_dir / "train.csv",
                "--base-model", tiny_model_dir, "--output-dir", tmp_path, "--set", "max_steps=2"])
    frame = _frame(synth_dir)
    oof = pd.read_csv(out / "oof_predictions.csv", dtype={"id": str})
    assert sorted(oof.id) == sorted(frame.id)
    assert np.allclose(oof[[c for c in oof.columns if c.startswith("p_")]].sum(axis=1), 1.0)
    folds = [RunDir(out / f"fold{i}") for i in range(2)]
    assert sorted(scored) == sorted((fold.merged, len(fold.read_val_ids())) for fold in folds)  # once per fold
    assert sum(n for _, n in scored) == len(frame)
    for fold in folds:  # each fold validated on exactly its held-out rows, and trained on the rest
        assert fold.read_record()["rows"] == {"train": len(frame) - len(fold.read_val_ids()),
                                              "val": len(fold.read_val_ids())}
    assert not folds[0].read_val_ids() & folds[1].read_val_ids()


def test_ensemble_json_is_what_the_runtime_reads(tiny_model_dir, synth_dir, tmp_path):
    from submission.choice.autopick import ensemble_path, read_ensemble
    from trainer.training.rundir import RunDir

    path = _cli(["advanced", "--ensemble", "demo", "--ensemble", "trainer/configs/demo_full.yaml", "--experiment",
                 "demo", "--train-path", synth_dir / "train.csv", "--base-model", tiny_model_dir, "--output-dir",
                 tmp_path, "--set", "max_steps=2", "--set", "augment_not_applicable=0.3"])
    ensemble = read_ensemble(ensemble_path([path]))  # as submission/runtime/runtime.py finds and reads it
    assert len(ensemble.members) == 2 and all((m.path / "config.json").is_file() for m in ensemble.members)
    assert abs(sum(m.weight for m in ensemble.members) - 1) < 1e-9
    # the blend's P(-1) cut is fitted like a single run's: validation rows + not-applicable rows made from them
    record = json.loads(Path(path).read_text(encoding="utf-8"))
    first_run = RunDir((Path(path).parent / record["members"][0]["model"]).resolve().parent)
    val_rows = len(first_run.read_val_ids())
    block = record["not_applicable"]
    assert block["rows"] == val_rows + block["augmented_rows"] and block["augmented_rows"] == round(0.3 * val_rows)
    assert block["decision"]["support"] >= block["augmented_rows"]
