"""Pareto fronts and 2-D hypervolume for (task metric, latency) points."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Point:
    """A candidate in objective space; `key` identifies it (a trial id)."""

    key: int
    metric: float
    latency_ms: float


def _loss(point: Point, *, maximize_metric: bool) -> tuple[float, float]:
    return (-point.metric if maximize_metric else point.metric, point.latency_ms)


def pareto_front(points: Sequence[Point], *, maximize_metric: bool = False) -> list[Point]:
    """The non-dominated points, sorted by latency. Exact duplicates are kept once (lowest key).

    Sorting by (latency, loss) and keeping each point that strictly improves the best loss seen so
    far is the classic O(n log n) 2-D sweep.
    """
    ordered = sorted(points, key=lambda p: (p.latency_ms, _loss(p, maximize_metric=maximize_metric)[0], p.key))
    front: list[Point] = []
    best = float("inf")
    for point in ordered:
        loss = _loss(point, maximize_metric=maximize_metric)[0]
        if loss < best:
            front.append(point)
            best = loss
    return front


def best_under(points: Sequence[Point], *, max_latency_ms: float, maximize_metric: bool = False) -> Point | None:
    """The point with the best metric among those with latency at most `max_latency_ms`, or None."""
    feasible = [p for p in points if p.latency_ms <= max_latency_ms]
    if not feasible:
        return None
    return (max if maximize_metric else min)(feasible, key=lambda p: p.metric)


def hypervolume(points: Sequence[Point], *, reference: tuple[float, float], maximize_metric: bool = False) -> float:
    """Area dominated by `points` and bounded by `reference` = (metric, latency_ms) in loss space.

    Points outside the reference box contribute nothing.
    """
    ref_loss = -reference[0] if maximize_metric else reference[0]
    inside = [p for p in pareto_front(points, maximize_metric=maximize_metric)
              if _loss(p, maximize_metric=maximize_metric)[0] < ref_loss and p.latency_ms < reference[1]]
    area = 0.0
    for i, point in enumerate(inside):
        next_latency = inside[i + 1].latency_ms if i + 1 < len(inside) else reference[1]
        area += (next_latency - point.latency_ms) * (ref_loss - _loss(point, maximize_metric=maximize_metric)[0])
    return area
