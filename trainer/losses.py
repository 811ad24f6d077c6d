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
NO_GOLD = -100  # ``gold`` of a row that only has a teacher's soft label


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


class Objective:
    """Which terms a run's loss has, from its config: ``loss: ce | ce_mse`` and ``soft_labels`` + ``distill_alpha``.

    ``label_ids`` are the student tokenizer's label tokens (LABELS order), read at the answer position.
    """

    def __init__(self, label_ids, distill_alpha: float | None = None, mse_weight: float = 0.0):
        self.label_ids = list(label_ids)
        self.distill_alpha = distill_alpha  # None: no soft labels, the CE term alone carries the gold labels
        self.mse_weight = float(mse_weight)

    @classmethod
    def from_config(cls, config, label_ids) -> Objective | None:
        """None when the loss is plain cross-entropy (nothing beyond the token CE to compute)."""
        alpha = config.distill_alpha if config.soft_labels else None
        mse = config.mse_weight if config.loss == "ce_mse" else 0.0
        return None if alpha is None and not mse else cls(label_ids, alpha, mse)

    def row_terms(self, label_logits: torch.Tensor, batch: dict) -> dict[str, torch.Tensor]:
        """Per-row summed terms ``{"kl": [B], "se": [B]}`` (row-weighted, 0 where a row has no such term)."""
        allowed = batch["allowed"]
        log_student = student_log_probs(label_logits, allowed)
        weight = batch["weight"].to(log_student.device)
        terms = {}
        if self.distill_alpha is not None:
            kl = kl_teacher_student(batch["soft"], log_student, allowed)
            terms["kl"] = torch.where(batch["has_soft"], kl, torch.zeros_like(kl)) * weight
        if self.mse_weight:
            terms["se"] = squared_score_error(log_student, allowed, batch["gold"]) * weight
        return terms

    def combine(self, token_ce: torch.Tensor, rows: dict[str, torch.Tensor], counts: dict[str, float]) -> torch.Tensor:
        """The step's loss from this micro-batch's sums; ``counts`` are over the whole optimizer step (tokens, gold
        rows, rows with any label, ordinal-gold rows), so any split of the step's rows sums to the same loss.

        Plain/ce_mse: mean CE per labelled token (+ mse_weight * mean squared error over ordinal-gold rows).
        With soft labels: one mean over the step's rows of ``(1 - alpha) * CE_row + alpha * KL_row``, each term where
        the row has it (the CE rows' sum = mean token CE x gold rows). Rows without a gold label so dilute the CE term
        instead of leaving a few gold rows the CE weight of the whole step; with every row gold and soft this is
        ``(1 - alpha) * mean CE + alpha * mean KL``.
        """
        ce = token_ce / max(counts["tokens"], 1)
        if self.distill_alpha is None:
            loss = ce
        else:
            all_rows = max(counts["rows"], 1)
            loss = (1 - self.distill_alpha) * ce * counts["gold"] / all_rows
            loss = loss + self.distill_alpha * rows["kl"].sum() / all_rows
        if "se" in rows:
            loss = loss + self.mse_weight * rows["se"].sum() / max(counts["ordinal_gold"], 1)
        return loss


ROW_COUNTS = ("gold", "rows", "ordinal_gold")  # per-row counts of a step (summed over ranks under DDP)


def labelled_token_count(inputs: dict) -> int:
    """Labelled target tokens in one batch (what transformers counts into ``num_items_in_batch``)."""
    return int((inputs["labels"][:, 1:] != -100).sum())


def step_counts(batches: list[dict]) -> dict[str, int]:
    """What each term is a mean over, counted over the micro-batches of one optimizer step (one rank)."""
    counts = {"tokens": sum(labelled_token_count(b) for b in batches)}
    which = {"gold": lambda b: b["gold"] != NO_GOLD, "rows": lambda b: (b["gold"] != NO_GOLD) | b["has_soft"],
             "ordinal_gold": lambda b: b["gold"] >= 0}
    for name in ROW_COUNTS:
        counts[name] = sum(int(which[name](b).sum()) for b in batches if "gold" in b)
    return counts
