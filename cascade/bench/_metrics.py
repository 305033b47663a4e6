"""Cost–quality metrics (pure, numpy only): RouterBench's AIQ, RouteLLM's APGR and CPT, the
cost to reach a share of the best single model's accuracy, and bootstrap intervals.

A *point* is (total cost on the evaluated queries, accuracy). A method's curve is the set of
points its settings reach (thresholds, router cut-offs).

- **Non-decreasing convex hull** (RouterBench ``evaluation/AIQ.py``): the upper concave
  envelope of the points, from the cheapest point up to the most accurate one, then flat.
  Any point on it is reachable by mixing two settings at random per query.
- **AIQ** = (1 / c_max) · ∫ hull(c) dc from the cheapest point to ``c_max`` (the hull extended
  flat to ``c_max``; nothing is counted below the cheapest point, as in RouterBench).
- **APGR** (RouteLLM, generalised from "share of calls to the strong model" to normalised
  cost): PGR(c) = (hull(c) − acc_weak) / (acc_strong − acc_weak) with
  x = (c − c_weak) / (c_strong − c_weak) over [0, 1]; APGR = ∫ PGR dx (PGR clipped to ≤ 1 is
  *not* applied: a method above the strong model scores above 1 there).
- **CPT(p)**: the smallest normalised cost x at which PGR reaches p (RouteLLM's CPT(50 %) and
  CPT(80 %)), or None when never reached.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

Point = tuple[float, float]  # (total cost, accuracy)


def _cross(o: Point, a: Point, b: Point) -> float:
    return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])


def hull(points: Sequence[Point]) -> list[Point]:
    """The non-decreasing convex hull, as its vertices sorted by cost."""
    if not points:
        raise ValueError("no points")
    best: dict[float, float] = {}
    for cost, accuracy in points:
        best[float(cost)] = max(float(accuracy), best.get(float(cost), -np.inf))
    ordered = sorted(best.items())
    upper: list[Point] = []
    for point in ordered:  # Andrew's monotone chain, upper half
        while len(upper) >= 2 and _cross(upper[-2], upper[-1], point) >= 0:
            upper.pop()
        upper.append(point)
    peak = max(range(len(upper)), key=lambda i: (upper[i][1], -i))
    return upper[: peak + 1]


def hull_value(vertices: Sequence[Point], cost: float) -> float | None:
    """The hull's accuracy at ``cost`` (flat after its last vertex); None below its start."""
    xs = [v[0] for v in vertices]
    if cost < xs[0]:
        return None
    return float(np.interp(cost, xs, [v[1] for v in vertices]))


def aiq(points: Sequence[Point], c_max: float) -> float:
    vertices = hull(points)
    if c_max <= 0:
        raise ValueError("c_max must be positive")
    xs = [v[0] for v in vertices if v[0] <= c_max]
    ys = [v[1] for v in vertices if v[0] <= c_max]
    if not xs:
        return 0.0
    end = hull_value(vertices, c_max)
    xs.append(c_max)
    ys.append(ys[-1] if end is None else end)
    return float(np.trapezoid(ys, xs)) / c_max


def cost_to_reach(points: Sequence[Point], accuracy: float) -> float | None:
    """The least cost at which the hull reaches ``accuracy`` (None if it never does)."""
    vertices = hull(points)
    if vertices[0][1] >= accuracy:
        return vertices[0][0]
    for (x0, y0), (x1, y1) in zip(vertices, vertices[1:]):
        if y1 >= accuracy:
            return x0 + (x1 - x0) * (accuracy - y0) / (y1 - y0)
    return None


@dataclass(frozen=True, slots=True)
class Gap:
    """The weak and strong reference models of APGR / CPT."""

    weak: Point
    strong: Point


def _pgr_curve(points: Sequence[Point], gap: Gap, grid: int) -> tuple[np.ndarray, np.ndarray]:
    (cw, aw), (cs, as_) = gap.weak, gap.strong
    if cs <= cw or as_ <= aw:
        raise ValueError("the strong model must cost more and score higher than the weak one")
    vertices = hull([*points, gap.weak])  # calling only the weak model is always possible
    xs = np.linspace(0.0, 1.0, grid)
    accuracy = [hull_value(vertices, cw + x * (cs - cw)) for x in xs]
    pgr = np.array([(aw if a is None else a) - aw for a in accuracy]) / (as_ - aw)
    return xs, pgr


def apgr(points: Sequence[Point], gap: Gap, grid: int = 1001) -> float:
    xs, pgr = _pgr_curve(points, gap, grid)
    return float(np.trapezoid(pgr, xs))


def cpt(points: Sequence[Point], gap: Gap, share: float, grid: int = 10001) -> float | None:
    xs, pgr = _pgr_curve(points, gap, grid)
    reached = np.nonzero(pgr >= share - 1e-12)[0]
    return float(xs[reached[0]]) if reached.size else None


def curve_points(cost: np.ndarray, correct: np.ndarray) -> list[Point]:
    """Points from per-setting, per-query outcomes: ``cost`` and ``correct`` have shape
    (settings, queries); total cost and accuracy per setting."""
    return [(float(c), float(a)) for c, a in zip(cost.sum(axis=1), correct.mean(axis=1))]


Arrays = tuple[np.ndarray, np.ndarray]  # (cost, correct), each of shape (settings, queries)


def _resampled(curves: Sequence[Arrays], statistic: Callable[[list[Point]], float | None],
               rounds: int, seed: int) -> list[list[float]]:
    """``statistic`` of every curve on each round's query resample (one index set per round,
    shared by all curves); rounds where it is undefined for any curve are dropped."""
    n = curves[0][0].shape[1]
    if any(cost.shape[1] != n for cost, _ in curves):
        raise ValueError("paired bootstrap needs every method measured on the same queries")
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(rounds):
        index = rng.integers(0, n, n)
        values = [statistic(curve_points(cost[:, index], correct[:, index])) for cost, correct in curves]
        if all(v is not None for v in values):
            out.append(values)  # type: ignore[arg-type]
    return out


def _interval(values: Sequence[float], level: float) -> tuple[float, float]:
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


def bootstrap(cost: np.ndarray, correct: np.ndarray, statistic: Callable[[list[Point]], float | None],
              *, rounds: int = 200, seed: int = 0, level: float = 0.95) -> tuple[float, float] | None:
    """Percentile interval of ``statistic(points)`` over query resamples (with replacement).
    Rounds where the statistic is undefined are dropped; None if all are."""
    values = [v[0] for v in _resampled([(cost, correct)], statistic, rounds, seed)]
    return _interval(values, level) if values else None


def paired_margin(candidate: Arrays, rivals: Sequence[Arrays],
                  statistic: Callable[[list[Point]], float | None], *, rounds: int = 200, seed: int = 0,
                  level: float = 0.95) -> tuple[float, float, float] | None:
    """``statistic(candidate) - max(statistic(rival))`` over the same query resamples (a paired
    bootstrap). Returns the margin's percentile interval and the share of rounds in which the
    candidate beats every rival; None if the statistic is never defined for all of them."""
    margins = [v[0] - max(v[1:]) for v in _resampled([candidate, *rivals], statistic, rounds, seed)]
    if not margins:
        return None
    return (*_interval(margins, level), float(np.mean(np.array(margins) > 0)))
