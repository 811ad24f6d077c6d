"""The training objectives beyond plain cross-entropy, as pure tensor functions (no model, no Trainer).

Every tensor with a last dimension of 5 is over :data:`submission.scoring.LABELS` (-1, 0, 1, 2, 3); ``allowed`` is
the rubric's boolean mask per row. The student's label distribution is read exactly as the runtime reads it
(DESIGN.md §4): the next-token logits of the label tokens at the answer position, renormalised over the allowed
labels.

- distillation (G-Eval-style soft targets from a bigger judge): ``KL(teacher || student)`` per row;
- regression-aware term (RAFT/TRACT, arXiv 2503.04381): squared error of the expected score over 0..3, with -1
  left out and the rest renormalised, as :func:`submission.scoring.expected_score` does at inference.
"""

from __future__ import annotations

import torch

# The ordinal value of each label; -1 ("not applicable") carries no ordinal value and is masked out below.
_ORDINAL = (0.0, 0.0, 1.0, 2.0, 3.0)


def student_log_probs(label_logits: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """[B, 5] label logits -> log-probabilities renormalised over each row's allowed labels (-inf elsewhere)."""
    return torch.log_softmax(label_logits.float().masked_fill(~allowed, float("-inf")), dim=-1)


def kl_teacher_student(teacher: torch.Tensor, log_student: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """Per-row KL(teacher || student) = sum_l p_t(l) (log p_t(l) - log p_s(l)) over the allowed labels.

    The forward KL (teacher first) is the distillation objective: it is the cross-entropy against the teacher's
    distribution minus the teacher's entropy, so every label the teacher finds plausible must keep student mass.
    The teacher is renormalised over the allowed labels (mass outside the rubric is dropped).
    """
    teacher = teacher.float() * allowed
    teacher = teacher / teacher.sum(dim=-1, keepdim=True).clamp(min=1e-12)
    safe_log_student = torch.where(allowed, log_student, torch.zeros_like(log_student))
    return (torch.xlogy(teacher, teacher) - teacher * safe_log_student).sum(dim=-1)


def expected_ordinal_score(log_student: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """Per-row expected score over the allowed labels among 0..3 (the -1 mass left out, the rest renormalised)."""
    ordinal = allowed.clone()
    ordinal[:, 0] = False
    probs = torch.exp(log_student) * ordinal
    values = torch.tensor(_ORDINAL, dtype=probs.dtype, device=probs.device)
    return (probs * values).sum(dim=-1) / probs.sum(dim=-1).clamp(min=1e-12)


def squared_score_error(log_student: torch.Tensor, allowed: torch.Tensor, gold: torch.Tensor) -> torch.Tensor:
    """Per-row (expected score - gold)^2; rows whose gold is -1 (no ordinal value) or missing give 0."""
    has_ordinal_gold = gold >= 0
    error = expected_ordinal_score(log_student, allowed) - gold.float().clamp(min=0)
    return torch.where(has_ordinal_gold, error.pow(2), torch.zeros_like(error))
