"""The whole training objective: the labelled-token window, its cross-entropy and the terms beyond it (no Trainer).

Batches are LEFT-padded (as the inference engine pads), so every row's target (score tokens + <|im_end|>) sits at
the end; :func:`labelled_window` asks the model for logits at the last few positions only (``logits_to_keep``), i.e.
the lm_head runs only where labels are (plus at most a couple of masked slots), never over the 151k vocab x
sequence. Going through the model's own forward keeps DDP, PEFT and Unsloth wrappers in the loop. The loss is a mean
per labelled token over the whole optimizer step (all accumulated micro-batches on all ranks): each micro-batch's
summed loss is divided by the Trainer's ``num_items_in_batch``, so batch 8 x accumulation 1 and 2 x 4 give the same
step (:func:`labelled_loss`).

Beyond cross-entropy (:class:`Objective`, pure tensor functions), every tensor with a last dimension of 5 is over
:data:`submission.scoring.decoding.LABELS` (-1, 0, 1, 2, 3); ``allowed`` is the rubric's boolean mask per row. The student's label distribution is read exactly as the runtime reads it
(docs/ARCHITECTURE.md §4): the next-token logits of the label tokens at the answer position, renormalised over the allowed
labels.

- distillation (G-Eval-style soft targets from a bigger judge): ``KL(teacher || student)`` per row;
- regression-aware term (RAFT/TRACT, arXiv 2503.04381): squared error of the expected score over 0..3, with -1
  left out and the rest renormalised, as :func:`submission.scoring.decoding.expected_score` does at inference.
"""

from __future__ import annotations

import torch

from submission.scoring.decoding import ordinal_values  # -1 has none and is masked out below

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
    values = torch.tensor(ordinal_values(probs.shape[-1]), dtype=probs.dtype, device=probs.device)
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


# -- the labelled-token window and its cross-entropy -------------------------------------------------------------
class LabelledWindow:
    """The model's logits over the trailing window that holds every labelled target of a left-padded batch.

    ``logits`` is ``[B, W, V]`` (float32), ``targets`` ``[B, W]`` with -100 where a position carries no label,
    ``row_weight`` ``[B]`` (class weights; 1.0 by default). Loss terms read this and return a per-token or per-row
    tensor; :func:`labelled_loss` sums the terms and divides by one normaliser.
    """

    def __init__(self, logits, targets, row_weight, kept_logits=None):
        self.logits, self.targets, self.row_weight = logits, targets, row_weight
        self.kept_logits = kept_logits  # [B, W + 1, V]: ``logits`` plus the last position (no target after it)

    def answer_label_logits(self, answer_offset, label_ids):
        """``[B, 5]`` label-token logits at each row's answer position, ``answer_offset`` tokens before the end
        (the position whose next token is the score: where the runtime reads the label distribution)."""
        kept = self.kept_logits
        position = kept.shape[1] - 1 - answer_offset.to(kept.device)
        return kept[torch.arange(kept.shape[0], device=kept.device), position][:, label_ids].float()

    @property
    def labelled(self):
        """``[B, W]`` bool: where a target token is."""
        return self.targets != -100


def labelled_window(model, inputs: dict) -> LabelledWindow:
    """One forward through the model's own ``forward`` (DDP/PEFT/Unsloth stay in the loop), logits only at the end."""
    labels = inputs["labels"]
    targets = labels[:, 1:]  # position t predicts token t+1
    has_label = (targets != -100).any(dim=0)
    first = int(has_label.nonzero()[0]) if has_label.any() else targets.shape[1] - 1
    window = targets.shape[1] - first  # labelled target positions are within the last `window` of `targets`
    out = model(
        input_ids=inputs["input_ids"],
        attention_mask=inputs["attention_mask"],
        position_ids=inputs["position_ids"],
        logits_to_keep=window + 1,
        use_cache=False,
    )
    logits = out.logits[:, :-1, :].float()  # [B, window, V]: predictions for targets[:, first:]
    return LabelledWindow(logits, targets[:, first:], inputs["weight"].to(logits.device), out.logits)


def token_cross_entropy(window: LabelledWindow):
    """``[B, W]`` class-weighted cross-entropy of each labelled target token, 0 elsewhere."""
    import torch.nn.functional as F

    targets = window.targets
    token_loss = F.cross_entropy(
        window.logits.reshape(-1, window.logits.shape[-1]), targets.reshape(-1), ignore_index=-100, reduction="none"
    ).view_as(targets)
    return token_loss * window.row_weight.unsqueeze(1) * window.labelled


def labelled_loss(model, inputs: dict, normaliser=None, objective: Objective | None = None,
                  counts: dict | None = None):
    """(loss, tokens): summed weighted cross-entropy of the labelled tokens divided by ``normaliser``.

    ``normaliser`` is the number of labelled tokens the loss is a mean over: the whole accumulated (and, under DDP,
    all-rank) batch during training, this batch's own count when None. Dividing every micro-batch by the same global
    count makes any split of the same rows (batch x accumulation x ranks) give the same loss and gradients. Class
    weights (mean 1 over the rows) scale each row's tokens, they do not change the normaliser. ``tokens`` counts the
    batch's real (unpadded) tokens for throughput.

    ``objective`` (:class:`Objective`, from ``soft_labels``/``loss: ce_mse``) adds per-row terms read at the answer
    position, each a mean over its own rows of the step (``counts``; this batch's own when None).
    """
    window = labelled_window(model, inputs)
    summed = token_cross_entropy(window).sum()
    count = labelled_token_count(inputs) if normaliser is None else normaliser
    tokens = torch.as_tensor(int(inputs["attention_mask"].sum()))
    if objective is None:
        loss = summed / torch.as_tensor(count, dtype=summed.dtype, device=summed.device).clamp(min=1)
        return loss, tokens
    counts = dict(counts or step_counts([inputs]), tokens=float(count))
    label_logits = window.answer_label_logits(inputs["answer_offset"], objective.label_ids)
    return objective.combine(summed, objective.row_terms(label_logits, inputs), counts), tokens
