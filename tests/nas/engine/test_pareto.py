from __future__ import annotations

import itertools
import random

import pytest

from nas.engine.pareto import Point, hypervolume, pareto_front


def brute_force_front(points: list[Point], *, maximize: bool) -> set[int]:
    def loss(p: Point) -> tuple[float, float]:
        return (-p.metric if maximize else p.metric, p.latency_ms)

    def dominates(a: Point, b: Point) -> bool:
        la, lb = loss(a), loss(b)
        return all(x <= y for x, y in zip(la, lb)) and la != lb

    keep = [p for p in points if not any(dominates(q, p) for q in points)]
    unique: dict[tuple[float, float], int] = {}
    for p in keep:
        unique[loss(p)] = min(unique.get(loss(p), p.key), p.key)
    return set(unique.values())


def brute_force_hypervolume(points: list[Point], reference: tuple[float, float]) -> float:
    """Union area of the boxes [metric, ref_m] x [latency, ref_l], by cells of the coordinate grid."""
    xs = sorted({p.metric for p in points if p.metric < reference[0]} | {reference[0]})
    ys = sorted({p.latency_ms for p in points if p.latency_ms < reference[1]} | {reference[1]})
    area = 0.0
    for (x0, x1), (y0, y1) in itertools.product(zip(xs, xs[1:]), zip(ys, ys[1:])):
        if any(p.metric <= x0 and p.latency_ms <= y0 for p in points):
            area += (x1 - x0) * (y1 - y0)
    return area


@pytest.mark.parametrize("seed", range(20))
@pytest.mark.parametrize("maximize", [False, True])
def test_front_equals_brute_force(seed: int, maximize: bool) -> None:
    rng = random.Random(seed)
    points = [Point(i, round(rng.uniform(0, 5), 1), round(rng.uniform(0, 5), 1)) for i in range(rng.randint(1, 40))]
    front = pareto_front(points, maximize_metric=maximize)
    assert {p.key for p in front} == brute_force_front(points, maximize=maximize)
    assert [p.latency_ms for p in front] == sorted(p.latency_ms for p in front)


@pytest.mark.parametrize("seed", range(20))
def test_hypervolume_equals_brute_force(seed: int) -> None:
    rng = random.Random(seed)
    points = [Point(i, rng.uniform(0, 5), rng.uniform(0, 5)) for i in range(rng.randint(1, 30))]
    reference = (4.0, 4.0)
    assert hypervolume(points, reference=reference) == pytest.approx(brute_force_hypervolume(points, reference))


def test_hypervolume_of_maximized_metric_mirrors_minimized() -> None:
    points = [Point(0, 0.9, 1.0), Point(1, 0.8, 0.5)]
    mirrored = [Point(p.key, -p.metric, p.latency_ms) for p in points]
    assert hypervolume(points, reference=(0.5, 2.0), maximize_metric=True) == pytest.approx(
        hypervolume(mirrored, reference=(-0.5, 2.0)))
    assert hypervolume([], reference=(1.0, 1.0)) == 0.0
