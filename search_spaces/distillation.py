"""Knowledge-distillation losses shared by the supernets' training and a task's standalone training."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def hidden_state_mse(pairs: list[tuple[torch.Tensor, torch.Tensor]], *,
                     attention_mask: torch.Tensor | None) -> torch.Tensor:
    """DynaBERT's hidden-state loss: for each (student layer output, the teacher's layer it maps to), the mean
    squared error over the real tokens (`attention_mask`), averaged over the pairs."""
    errors = []
    for mine, theirs in pairs:
        weights = (attention_mask if attention_mask is not None else torch.ones(mine.shape[:2])).unsqueeze(-1).float()
        errors.append((((mine - theirs) ** 2) * weights).sum() / (weights.sum() * mine.shape[-1]))
    return torch.stack(errors).mean()


def logit_distillation_loss(logits: torch.Tensor, labels: torch.Tensor, teacher_logits: torch.Tensor, *,
                            alpha: float, temperature: float, gold: torch.Tensor | None = None) -> torch.Tensor:
    """`(1 - alpha) CE(labels) + alpha T^2 KL(teacher || student)` on temperature-softened logits (Hinton).

    `gold` (a boolean per row) marks the rows whose labels hold: the others (perturbed copies, whose gold label
    may not hold) learn from the teacher alone. Each row weighs 1/batch: a gold row `(1 - alpha) CE + alpha KL`,
    a perturbed row `KL`.
    """
    student_log_p, teacher_log_p = F.log_softmax(logits / temperature, dim=-1), \
        F.log_softmax(teacher_logits / temperature, dim=-1)
    if gold is None:
        kd = F.kl_div(student_log_p, teacher_log_p, reduction="batchmean", log_target=True) * temperature ** 2
        return (1 - alpha) * F.cross_entropy(logits, labels) + alpha * kd
    kd_rows = F.kl_div(student_log_p, teacher_log_p, reduction="none", log_target=True).sum(-1) * temperature ** 2
    weights = torch.where(gold, torch.full_like(kd_rows, alpha), torch.ones_like(kd_rows))
    loss = (weights * kd_rows).mean()
    if bool(gold.any()):
        loss = loss + (1 - alpha) * F.cross_entropy(logits[gold], labels[gold]) * gold.float().mean()
    return loss
