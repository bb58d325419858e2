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
                            alpha: float, temperature: float) -> torch.Tensor:
    """`(1 - alpha) CE(labels) + alpha T^2 KL(teacher || student)` on temperature-softened logits (Hinton)."""
    kd = F.kl_div(F.log_softmax(logits / temperature, dim=-1), F.log_softmax(teacher_logits / temperature, dim=-1),
                  reduction="batchmean", log_target=True) * temperature ** 2
    return (1 - alpha) * F.cross_entropy(logits, labels) + alpha * kd
