"""Early stopping across training budgets: asynchronous successive halving, with a multi-objective rule.

A job with `budget.min_train_steps` trains each candidate in rungs: `min_train_steps`, then times the
reduction factor, ..., up to `budget.train_steps`. When a trial finishes a rung it is compared at once
with every trial that reached the same rung before it (ASHA's asynchronous rule, as in Optuna's
`SuccessiveHalvingPruner`): it goes on to the next rung only if it is among the best `ceil(n / eta)` of
those `n` trials, else it is stopped and recorded with the budget it reached.

Why not the libraries' schedulers: Optuna's pruners take intermediate values through `Trial.report`,
which Optuna refuses for multi-objective studies, and Ray Tune's ASHA ranks trials on one metric with
one mode and expects to drive the trials itself. Here "best" must keep fast but weaker candidates alive
(they may end on the Pareto front), so trials at a rung are ranked by non-dominated sorting on (metric,
latency), as MO-ASHA does (Schmucker et al., 2021), then by metric within a front.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from nas.engine.pareto import Point, pareto_front


def rung_budgets(*, min_steps: int | None, max_steps: int, reduction_factor: int) -> tuple[int, ...]:
    """Training steps at each rung, ending with `max_steps`; one rung when early stopping is off."""
    if not min_steps or min_steps >= max_steps:
        return (max_steps,)
    budgets: list[int] = []
    steps = min_steps
    while steps < max_steps:
        budgets.append(steps)
        steps *= reduction_factor
    return (*budgets, max_steps)


def non_domination_ranks(points: Sequence[Point], *, maximize_metric: bool) -> dict[int, int]:
    """Each point's front number (0 = non-dominated), by peeling Pareto fronts off in turn."""
    ranks: dict[int, int] = {}
    left = list(points)
    rank = 0
    while left:
        front = pareto_front(left, maximize_metric=maximize_metric)
        keys = {p.key for p in front}
        # `pareto_front` keeps exact duplicates once; the twins share the rank.
        twins = {p.key for p in left if any(p.metric == f.metric and p.latency_ms == f.latency_ms for f in front)}
        for key in keys | twins:
            ranks[key] = rank
        left = [p for p in left if p.key not in ranks]
        rank += 1
    return ranks


@dataclass(frozen=True)
class RungDecision:
    keep_going: bool
    position: int  # 0-based place of the trial among its rung's peers
    kept: int  # how many of the peers go on (ceil(n / eta))
    peers: int


def decide(candidate: Point, peers: Sequence[Point], *, reduction_factor: int,
           maximize_metric: bool) -> RungDecision:
    """Whether `candidate` (one of `peers`: every trial that reached this rung) goes on to the next rung."""
    ranks = non_domination_ranks(peers, maximize_metric=maximize_metric)
    sign = -1.0 if maximize_metric else 1.0
    order = sorted(peers, key=lambda p: (ranks[p.key], sign * p.metric, p.latency_ms, p.key))
    position = next(i for i, p in enumerate(order) if p.key == candidate.key)
    kept = max(1, math.ceil(len(peers) / reduction_factor))
    return RungDecision(keep_going=position < kept, position=position, kept=kept, peers=len(peers))
