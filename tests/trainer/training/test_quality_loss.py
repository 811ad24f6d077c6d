"""The distillation / ce_mse objective inside the trainer's loss: read where the runtime reads, mean per step."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch


@pytest.fixture(scope="module")
def rows(synth_dir):
    """6 rows: 2 with gold -1, 2 gold-labelled, 2 unlabelled (soft label only); every row has a soft label."""
    frame = pd.read_csv(synth_dir / "train.csv", dtype={"id": str})
    frame = pd.concat([frame[frame.score == -1].head(2), frame[frame.score != -1].head(4)]).reset_index(drop=True)
    frame["score"] = frame["score"].astype(float)
    frame.loc[4:, "score"] = np.nan
    rng = np.random.default_rng(0)
    soft = rng.dirichlet(np.ones(5), size=len(frame))
    for i, label in enumerate((-1, 0, 1, 2, 3)):
        frame[f"p_{label}"] = soft[:, i]
    return frame


@pytest.fixture(scope="module")
def batch(rows, tiny_tokenizer):
    from submission.prompts.prompting import PromptRenderer
    from trainer.training.train import LeftPadCollator, tokenise

    dataset = tokenise(rows, PromptRenderer(tiny_tokenizer, max_tokens=512), 512)
    return LeftPadCollator(tiny_tokenizer.pad_token_id)([dataset[i] for i in range(len(dataset))])


@pytest.fixture(scope="module")
def model(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)


def test_student_distribution_is_read_where_the_runtime_reads_it(rows, batch, model, tiny_model_dir, tiny_tokenizer):
    from submission.scoring.decoding import label_token_ids
    from trainer.evaluation.evaluate import score_rows
    from trainer.training.losses import student_log_probs
    from trainer.training.train import labelled_window

    window = labelled_window(model, batch)
    logits = window.answer_label_logits(batch["answer_offset"], label_token_ids(tiny_tokenizer))
    ours = torch.exp(student_log_probs(logits, batch["allowed"])).detach().numpy()
    runtime, _, _ = score_rows(tiny_model_dir, rows["prompt"], 512, "cpu")
    assert np.allclose(ours, runtime, atol=1e-4)  # gold rows (answer before the target) and soft-only rows alike


def test_objective_loss_is_the_alpha_mix_of_token_ce_kl_and_mse(rows, batch, model, tiny_model_dir, tiny_tokenizer):
    from scipy.stats import entropy

    from submission.scoring.decoding import expected_score, label_token_ids
    from trainer.evaluation.evaluate import score_rows
    from trainer.training.losses import Objective
    from trainer.training.train import labelled_loss

    alpha, mse_weight = 0.3, 0.7
    objective = Objective(label_token_ids(tiny_tokenizer), distill_alpha=alpha, mse_weight=mse_weight)
    with torch.no_grad():
        loss, _ = labelled_loss(model, batch, objective=objective)
        plain, _ = labelled_loss(model, batch)  # mean CE over the gold rows' labelled tokens
    student, allowed, _ = score_rows(tiny_model_dir, rows["prompt"], 512, "cpu")
    soft = rows[["p_-1", "p_0", "p_1", "p_2", "p_3"]].to_numpy()
    kls = []
    for p, q, a in zip(soft, student, allowed, strict=True):
        mask = np.array([label in a for label in (-1, 0, 1, 2, 3)])
        kls.append(entropy(p[mask] / p[mask].sum(), q[mask]))
    ordinal = rows["score"].fillna(-100).to_numpy() >= 0
    se = (expected_score(student) - rows["score"].fillna(0).to_numpy()) ** 2
    gold_share = rows["score"].notna().mean()  # 4 of 6: the 2 soft-only rows dilute the CE term, one mean over rows
    expected = (1 - alpha) * float(plain) * gold_share + alpha * np.mean(kls) + mse_weight * se[ordinal].mean()
    assert float(loss) == pytest.approx(expected, rel=1e-4)


def test_split_micro_batches_sum_to_the_whole_step():
    from trainer.training.losses import Objective, step_counts

    objective = Objective([0, 1, 2, 3, 4], distill_alpha=0.5, mse_weight=1.0)
    rng = np.random.default_rng(1)
    labels = torch.full((4, 3), -100)
    labels[:2, 1:] = 7  # rows 0-1 labelled (2 tokens each), rows 2-3 soft only
    whole = {"labels": labels, "has_soft": torch.tensor([True, False, True, True]), "gold": torch.tensor([2, -1, -100, -100])}
    token_ce = torch.tensor(rng.random(4))
    kl, se = torch.tensor(rng.random(4)), torch.tensor(rng.random(4))
    kl[~whole["has_soft"]] = 0
    se[whole["gold"] < 0] = 0
    counts = step_counts([whole])
    full = objective.combine(token_ce.sum(), {"kl": kl, "se": se}, counts)
    halves = sum(objective.combine(token_ce[s].sum(), {"kl": kl[s], "se": se[s]}, counts)
                 for s in (slice(0, 2), slice(2, 4)))
    assert float(full) == pytest.approx(float(halves))
    assert counts == {"tokens": 4, "gold": 2, "rows": 4, "ordinal_gold": 1}


def test_plain_ce_config_builds_no_objective():
    from trainer.training.config import TrainConfig
    from trainer.training.losses import Objective

    assert Objective.from_config(TrainConfig(), [1, 2, 3, 4, 5]) is None
    assert Objective.from_config(TrainConfig(loss="ce_mse"), [1, 2, 3, 4, 5]).mse_weight == 1.0
    with_soft = Objective.from_config(TrainConfig(soft_labels="s.csv", distill_alpha=0.25), [1, 2, 3, 4, 5])
    assert with_soft.distill_alpha == 0.25 and with_soft.mse_weight == 0.0
