"""Training a weight-sharing supernet with the sandwich rule (Once-for-All, BigNAS, HAT, AutoMoE).

Each step trains the largest arch, the smallest and `random_archs` random ones on the same batch, their
gradients summed into the shared weights. With `distill`, the smaller archs learn from the largest arch's
predictions on that batch (in-place distillation) besides the labels. Language modelling only for now:
the sparse-transformer supernet (`search_spaces.sparse_transformer.supernet`).

Not yet here (issue 16): running it as a resumable Ray task with checkpoints and progress, caching it per
(space options, task, budget, seed), and the search and final-training phases that use it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from search_spaces.arch import Arch
from search_spaces.base import random_archs

if TYPE_CHECKING:
    import torch

    from search_spaces.sparse_transformer.space import SparseTransformerSpace
    from search_spaces.sparse_transformer.supernet import SparseSupernet
    from workers.tasks.base import Task


def largest_arch(space: SparseTransformerSpace) -> Arch:
    """The widest, deepest arch: the most heads, and the largest feed-forward block the space allows (a
    mixture of the most experts at the widest width and top-k, else the widest dense block)."""
    o = space.options
    if "moe" in o.ffn_kinds:
        experts = max(o.moe_experts_choices)
        ffn = {"kind": "moe", "experts": experts, "top_k": min(max(o.moe_top_k_choices), experts),
               "width": max(o.moe_width_choices)}
    elif "dense" in o.ffn_kinds:
        ffn = {"kind": "dense", "width": max(o.dense_width_choices)}
    else:
        ffn = {"kind": "none"}
    layer = {"attn_heads": max(o.heads_choices), "ffn": ffn}
    return space.make_arch(d_model=max(o.d_model_choices), layers=[dict(layer) for _ in range(o.max_layers)])


def smallest_arch(space: SparseTransformerSpace) -> Arch:
    """The narrowest, shallowest arch: the fewest heads and the smallest feed-forward block (none if allowed)."""
    o = space.options
    if "none" in o.ffn_kinds:
        ffn: dict[str, Any] = {"kind": "none"}
    elif "dense" in o.ffn_kinds:
        ffn = {"kind": "dense", "width": min(o.dense_width_choices)}
    else:
        experts = min(o.moe_experts_choices)
        ffn = {"kind": "moe", "experts": experts, "top_k": min(min(o.moe_top_k_choices), experts),
               "width": min(o.moe_width_choices)}
    layer = {"attn_heads": min(o.heads_choices), "ffn": ffn}
    return space.make_arch(d_model=min(o.d_model_choices), layers=[dict(layer) for _ in range(o.min_layers)])


@dataclass(frozen=True)
class SandwichStep:
    step: int
    loss_largest: float
    loss_smallest: float


def lm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    import torch.nn.functional as F

    return F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1))


def train_supernet(supernet: SparseSupernet, space: SparseTransformerSpace, task: Task, *, steps: int, seed: int,
                   learning_rate: float = 3e-3, random_archs_per_step: int = 2, distill: bool = True,
                   first_step: int = 0) -> list[SandwichStep]:
    """Train `supernet` in place for `steps` sandwich steps; the losses of the largest and the smallest arch
    at each step. Seeded: the same seed and steps give the same weights."""
    import torch
    import torch.nn.functional as F

    torch.manual_seed(seed)
    rng = random.Random(seed)
    largest, smallest = largest_arch(space), smallest_arch(space)
    optimizer = torch.optim.AdamW(supernet.parameters(), lr=learning_rate, weight_decay=0.01)
    supernet.train()
    history = []
    for step in range(first_step, first_step + steps):
        (batch,) = task.sample_batches(count=1, seed=seed * 1_000_003 + step)
        inputs, labels = batch["input_ids"], batch["labels"]
        optimizer.zero_grad(set_to_none=True)
        teacher_logits = supernet(inputs, largest)
        loss_largest = lm_loss(teacher_logits, labels)
        loss_largest.backward()
        soft_targets = F.softmax(teacher_logits.detach(), dim=-1) if distill else None
        others = [smallest, *random_archs(space, count=random_archs_per_step, seed=rng.randrange(2**31))]
        loss_smallest = float("nan")
        for index, arch in enumerate(others):
            logits = supernet(inputs, arch)
            loss = lm_loss(logits, labels)
            if soft_targets is not None:
                loss = 0.5 * loss + 0.5 * F.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                                          soft_targets.reshape(-1, soft_targets.shape[-1]))
            loss.backward()
            if index == 0:
                loss_smallest = float(loss.detach())
        torch.nn.utils.clip_grad_norm_(supernet.parameters(), 1.0)
        optimizer.step()
        history.append(SandwichStep(step, float(loss_largest.detach()), loss_smallest))
    supernet.eval()
    return history
