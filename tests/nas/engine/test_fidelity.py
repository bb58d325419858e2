"""Successive-halving rungs and the multi-objective promotion rule."""

from __future__ import annotations

import random

import pytest

from nas.engine.fidelity import decide, non_domination_ranks, rung_budgets
from nas.engine.pareto import Point


def test_rungs_multiply_by_the_reduction_factor_and_end_at_the_full_budget() -> None:
    assert rung_budgets(min_steps=10, max_steps=400, reduction_factor=3) == (10, 30, 90, 270, 400)
    assert rung_budgets(min_steps=20, max_steps=180, reduction_factor=3) == (20, 60, 180)
    assert rung_budgets(min_steps=None, max_steps=50, reduction_factor=3) == (50,)


def dominates(a: Point, b: Point) -> bool:  # minimise both
    return a.metric <= b.metric and a.latency_ms <= b.latency_ms and (a.metric, a.latency_ms) != (b.metric, b.latency_ms)


@pytest.mark.parametrize("seed", range(5))
def test_ranks_match_the_definition(seed: int) -> None:
    rng = random.Random(seed)
    points = [Point(i, rng.randint(0, 9) / 3, rng.randint(0, 9) / 2) for i in range(40)]
    ranks = non_domination_ranks(points, maximize_metric=False)
    for p in points:
        # rank 0: nobody dominates it; rank r: dominated by someone of rank r-1, by nobody of rank >= r
        better = [ranks[q.key] for q in points if dominates(q, p)]
        assert ranks[p.key] == (max(better) + 1 if better else 0)


def test_a_fast_weak_trial_on_the_front_outranks_dominated_ones() -> None:
    # Among five non-dominated peers the fast, weak one is last by metric and stops...
    peers = [Point(1, 1.0, 9.0), Point(2, 1.1, 8.0), Point(3, 1.2, 7.0), Point(4, 1.3, 6.0), Point(5, 3.0, 0.5),
             Point(6, 1.05, 9.5)]
    decision = decide(peers[4], peers, reduction_factor=3, maximize_metric=False)
    assert decision.kept == 2 and not decision.keep_going  # rank 0 with four others: place 5 of 6
    # ...but with only dominated trials beside the best one, it goes on, where ranking by metric would stop it.
    lonely_fast = [Point(1, 1.0, 9.0), Point(6, 1.05, 9.5), Point(7, 1.06, 9.6), Point(5, 3.0, 0.5)]
    assert decide(lonely_fast[3], lonely_fast, reduction_factor=3, maximize_metric=False).keep_going
    assert not decide(lonely_fast[2], lonely_fast, reduction_factor=3, maximize_metric=False).keep_going


def test_the_first_trial_at_a_rung_always_goes_on_and_direction_counts() -> None:
    one = Point(1, 0.5, 1.0)
    assert decide(one, [one], reduction_factor=3, maximize_metric=True).keep_going
    peers = [Point(1, 0.9, 1.0), Point(2, 0.5, 1.0), Point(3, 0.7, 1.0)]
    assert decide(peers[0], peers, reduction_factor=3, maximize_metric=True).keep_going
    assert not decide(peers[0], peers, reduction_factor=3, maximize_metric=False).keep_going
