"""Reference dropout, unseen-group splits and seen/unseen metrics: pure functions on the synthetic rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest


def _frame(synth_dir):
    return pd.read_csv(synth_dir / "train.csv", dtype={"id": str})


def test_drop_reference_removes_only_the_reference_section(synth_dir):
    from submission.prompts.sections import parse_prompt
    from trainer.data.augment import drop_reference

    dropped = 0
    for prompt in _frame(synth_dir).prompt:
        before = parse_prompt(prompt)
        out = drop_reference(prompt)
        if before.reference is None:
            assert out is None
            continue
        after = parse_prompt(out)
        assert "### Эталонный ответ:" not in out and after.reference is None
        assert (after.task, after.answer, after.criterion, after.allowed) == (
            before.task, before.answer, before.criterion, before.allowed)
        dropped += 1
    assert dropped > 20


def test_reference_dropout_adds_the_configured_share_with_the_same_score(synth_dir):
    from trainer.data.augment import drop_reference, reference_dropout_frame

    frame = _frame(synth_dir)
    with_reference = sum(drop_reference(p) is not None for p in frame.prompt)
    out = reference_dropout_frame(frame, share=0.5, seed=3)
    copies = out.iloc[len(frame):]
    assert len(copies) == round(0.5 * with_reference) and out.id.is_unique
    source = frame.set_index("id")
    for row in copies.itertuples():
        original = source.loc[row.id.removesuffix("#noref")]
        assert row.score == original.score and row.prompt == drop_reference(original.prompt)
    assert reference_dropout_frame(frame, share=0.0, seed=3).equals(frame)


@pytest.mark.parametrize("split_by", ["criterion", "family"])
def test_group_split_never_puts_a_group_on_both_sides(synth_dir, split_by):
    from trainer.data.split import group_split, row_groups

    frame = _frame(synth_dir)
    for seed in range(5):
        train, val = group_split(frame, 0.2, seed, split_by)
        train_groups, val_groups = set(row_groups(train.prompt, split_by)), set(row_groups(val.prompt, split_by))
        assert val_groups and train_groups and not train_groups & val_groups
        assert len(train) + len(val) == len(frame) and not set(train.id) & set(val.id)


@pytest.mark.parametrize("split_by", ["criterion", "family"])
def test_group_folds_never_straddle(synth_dir, split_by):
    from trainer.data.split import fold_indices, row_groups

    frame = _frame(synth_dir)
    groups = np.asarray(row_groups(frame.prompt, split_by))
    folds = fold_indices(frame, 3, 0, split_by)
    assert sorted(np.concatenate([held for _, held in folds]).tolist()) == list(range(len(frame)))
    for train, held in folds:
        assert not set(groups[train]) & set(groups[held])


def test_too_few_groups_is_a_clear_data_error(synth_dir):
    from submission.data import DataError
    from trainer.data.split import fold_indices, group_split

    frame = _frame(synth_dir)
    with pytest.raises(DataError, match="3 distinct family"):
        fold_indices(frame, 4, 0, "family")
    static = frame[frame.prompt.str.contains("Правильность ответа и формата")]
    with pytest.raises(DataError, match="1 distinct criterion"):
        group_split(static, 0.2, 0, "criterion")


def test_seen_and_unseen_metrics_split_rows_by_training_groups(synth_dir):
    from trainer.data.split import row_groups
    from trainer.evaluation.evaluate import seen_unseen_metrics

    frame = _frame(synth_dir).head(120)
    groups = row_groups(frame.prompt, "criterion")
    seen_group = groups[0]
    y_true = frame.score.astype(int).tolist()
    y_pred = [t if g == seen_group else (t + 1 if t < 3 else 0) for t, g in zip(y_true, groups, strict=True)]
    out = seen_unseen_metrics(frame.prompt, y_true, y_pred, {"split_by": "criterion", "train_groups": [seen_group]})
    assert out["seen"]["accuracy"] == 1.0 and out["seen"]["n"] == groups.count(seen_group)
    assert out["unseen"]["accuracy"] < 0.5 and seen_group not in out["unseen_groups"]
    assert out["per_group"][seen_group]["seen"] is True
