"""Stratified, seeded split; oversampling keeps every row; class priors come from the train split."""

from __future__ import annotations

import pandas as pd


def _frame(synth_dir):
    return pd.read_csv(synth_dir / "train.csv", dtype={"id": str})


def test_split_is_stratified_seeded_and_disjoint(synth_dir):
    from trainer.data.split import stratified_split

    frame = _frame(synth_dir)
    train, val = stratified_split(frame, 0.2, seed=3)
    again_train, again_val = stratified_split(frame, 0.2, seed=3)
    assert list(val.id) == list(again_val.id) and not set(train.id) & set(val.id)
    assert len(train) + len(val) == len(frame)
    assert set(val.score) == set(frame.score)  # every class (even rare -1) reaches validation
    shares = frame.score.value_counts(normalize=True)
    assert (val.score.value_counts(normalize=True) - shares).abs().max() < 0.06
    assert list(stratified_split(frame, 0.2, seed=4)[1].id) != list(val.id)


def test_val_ids_round_trip(synth_dir, tmp_path):
    from trainer.data.split import split_by_ids, stratified_split
    from trainer.training.rundir import RunDir

    frame = _frame(synth_dir)
    _, val = stratified_split(frame, 0.2, seed=0)
    run = RunDir(tmp_path / "run")
    run.write_val_ids(val["id"])
    assert run.read_val_ids() == set(val.id)
    assert sorted(split_by_ids(frame, run.val_ids_path)[1].id) == sorted(val.id)


def test_oversample_balances_without_dropping_rows(synth_dir):
    from trainer.data.split import oversample

    frame = _frame(synth_dir)
    balanced = oversample(frame, seed=0)
    counts = balanced.score.value_counts()
    assert counts.nunique() == 1 and counts.iloc[0] == frame.score.value_counts().max()
    assert set(frame.id) <= set(balanced.id)


def test_class_prior_overall_and_by_criterion(synth_dir):
    from trainer.data.split import class_prior

    prior = class_prior(_frame(synth_dir))
    assert set(prior["overall"]) == {"-1", "0", "1", "2", "3"}
    assert abs(sum(prior["overall"].values()) - 1) < 1e-9
    assert len(prior["by_criterion"]) > 1
    for shares in prior["by_criterion"].values():
        assert abs(sum(shares.values()) - 1) < 1e-9
