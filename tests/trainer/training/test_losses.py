"""The distillation and regression-aware loss terms (trainer/training/losses.py) against independent references."""

from __future__ import annotations

import numpy as np
import pytest
import torch

ALL = torch.ones(1, 5, dtype=torch.bool)


def test_kl_is_teacher_first_as_scipy_computes_it():
    from scipy.stats import entropy

    from trainer.training.losses import kl_teacher_student, student_log_probs

    teacher = torch.tensor([[0.0, 0.7, 0.2, 0.1, 0.0]])
    logits = torch.tensor([[0.3, -1.0, 0.5, 2.0, 0.1]])
    allowed = torch.tensor([[False, True, True, True, True]])  # a 0..3 rubric: -1 not allowed
    log_student = student_log_probs(logits, allowed)
    student = torch.exp(log_student)
    got = float(kl_teacher_student(teacher, log_student, allowed)[0])
    forward = entropy(teacher[0, 1:].numpy(), student[0, 1:].numpy())  # KL(teacher || student)
    backward = entropy(student[0, 1:].numpy(), teacher[0, 1:].numpy() + 1e-12)
    assert got == pytest.approx(forward, rel=1e-5)
    assert abs(forward - backward) > 0.1  # the two directions differ here, so a swapped KL fails above


def test_kl_is_zero_only_when_the_student_matches_the_teacher_on_the_rubric():
    from trainer.training.losses import kl_teacher_student, student_log_probs

    teacher = torch.tensor([[0.0, 0.1, 0.2, 0.7, 0.0]])
    allowed = torch.tensor([[False, True, True, True, False]])  # rubric 0..2
    matching = torch.log(torch.tensor([[0.5, 0.1, 0.2, 0.7, 3.0]]))  # -1 and 3 logits are masked out
    assert float(kl_teacher_student(teacher, student_log_probs(matching, allowed), allowed)[0]) == pytest.approx(0, abs=1e-6)
    other = torch.log(torch.tensor([[0.5, 0.3, 0.3, 0.4, 3.0]]))
    assert float(kl_teacher_student(teacher, student_log_probs(other, allowed), allowed)[0]) > 0.05


def test_student_distribution_is_renormalised_over_the_rubric_like_the_runtime():
    from submission.scoring.decoding import probabilities_from_label_logits
    from trainer.training.losses import student_log_probs

    logits = np.array([[1.0, 0.2, -0.3, 0.9, 2.0]])
    allowed = [(0, 1, 2)]
    mask = torch.tensor([[False, True, True, True, False]])
    ours = torch.exp(student_log_probs(torch.tensor(logits), mask)).numpy()
    assert np.allclose(ours, probabilities_from_label_logits(logits, allowed))


def test_expected_score_leaves_minus_one_out_as_the_runtime_does():
    from submission.scoring.decoding import expected_score, probabilities_from_label_logits
    from trainer.training.losses import expected_ordinal_score, student_log_probs

    logits = np.array([[4.0, 0.0, 1.0, 0.5, -1.0], [-2.0, 1.0, 1.0, 1.0, 1.0]])  # row 0: most mass on -1
    probs = probabilities_from_label_logits(logits, [(-1, 0, 1, 2, 3)] * 2)
    ours = expected_ordinal_score(student_log_probs(torch.tensor(logits), ALL.expand(2, 5)), ALL.expand(2, 5))
    assert np.allclose(ours.numpy(), expected_score(probs))
    # If -1 counted as the value -1 (or as 0 without renormalising) row 0's expectation would drop well below this.
    ordinal = probs[0, 1:] / probs[0, 1:].sum()
    assert float(ours[0]) == pytest.approx(float((ordinal * np.arange(4)).sum()))


def test_squared_error_ignores_minus_one_and_unlabelled_gold():
    from trainer.training.losses import squared_score_error, student_log_probs

    logits = torch.tensor([[5.0, 0.0, 0.0, 0.0, 3.0]] * 3)
    log_student = student_log_probs(logits, ALL.expand(3, 5))
    errors = squared_score_error(log_student, ALL.expand(3, 5), torch.tensor([3, -1, -100]))
    expected = float(torch.exp(log_student[0, 1:]) @ torch.tensor([0.0, 1, 2, 3]) / torch.exp(log_student[0, 1:]).sum())
    assert float(errors[0]) == pytest.approx((expected - 3) ** 2, rel=1e-5)
    assert errors[1:].tolist() == [0.0, 0.0]


def test_squared_error_gradient_pushes_the_expected_score_towards_gold():
    from trainer.training.losses import expected_ordinal_score, squared_score_error, student_log_probs

    logits = torch.zeros(1, 5, requires_grad=True)
    for _ in range(50):
        loss = squared_score_error(student_log_probs(logits, ALL), ALL, torch.tensor([3])).sum()
        loss.backward()
        with torch.no_grad():
            logits -= 0.5 * logits.grad
            logits.grad.zero_()
    assert float(expected_ordinal_score(student_log_probs(logits.detach(), ALL), ALL)[0]) > 2.5
