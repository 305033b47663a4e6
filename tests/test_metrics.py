"""Benchmark metrics against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from cascade.bench._metrics import (
    Gap, aiq, apgr, bootstrap, cost_to_reach, cpt, curve_points, hull, paired_margin,
)

POINTS = [(1.0, 0.5), (2.0, 0.8), (3.0, 0.6), (4.0, 0.9), (5.0, 0.85)]


def test_hull_drops_points_under_the_envelope_and_after_the_peak() -> None:
    assert hull(POINTS) == [(1.0, 0.5), (2.0, 0.8), (4.0, 0.9)]
    assert hull([(1.0, 0.5), (1.0, 0.7)]) == [(1.0, 0.7)]  # same cost: the better point


def test_aiq_on_a_known_hull() -> None:
    # trapezoids 1..2: 0.65, 2..4: 1.7, flat 4..5: 0.9 -> 3.25 / 5
    assert aiq(POINTS, 5.0) == pytest.approx(0.65)
    # nothing counts below the cheapest point (RouterBench): one point at (2, 1) up to 4 -> 0.5
    assert aiq([(2.0, 1.0)], 4.0) == pytest.approx(0.5)
    # c_max inside the hull: the hull is cut there (interpolated)
    assert aiq(POINTS, 3.0) == pytest.approx((0.65 + (0.8 + 0.85) / 2) / 3.0)


def test_cost_to_reach_interpolates_on_the_hull() -> None:
    assert cost_to_reach(POINTS, 0.85) == pytest.approx(3.0)
    assert cost_to_reach(POINTS, 0.5) == pytest.approx(1.0)
    assert cost_to_reach(POINTS, 0.95) is None


def test_apgr_and_cpt_on_two_point_curves() -> None:
    gap = Gap(weak=(1.0, 0.5), strong=(3.0, 0.9))
    assert apgr([gap.weak, gap.strong], gap) == pytest.approx(0.5, abs=1e-4)  # the diagonal
    better = [gap.weak, (2.0, 0.9), gap.strong]  # full gap at half the extra cost
    assert apgr(better, gap) == pytest.approx(0.75, abs=1e-4)
    assert cpt(better, gap, 0.5) == pytest.approx(0.25, abs=1e-3)
    assert cpt(better, gap, 0.8) == pytest.approx(0.40, abs=1e-3)
    assert cpt([gap.weak], gap, 0.5) is None
    with pytest.raises(ValueError):
        apgr(better, Gap(weak=(3.0, 0.5), strong=(1.0, 0.9)))


def test_curve_points_and_bootstrap_interval_contains_the_estimate() -> None:
    rng = np.random.default_rng(1)
    correct = (rng.random((3, 400)) < np.array([[0.5], [0.7], [0.9]])).astype(float)
    cost = np.tile(np.array([[0.001], [0.01], [0.1]]), (1, 400))
    points = curve_points(cost, correct)
    assert points[2][0] == pytest.approx(40.0)
    c_max = 40.0
    low, high = bootstrap(cost, correct, lambda p: aiq(p, c_max), rounds=100)
    assert low <= aiq(points, c_max) <= high and high - low < 0.1


def test_paired_margin_resamples_the_same_queries_for_every_method() -> None:
    rng = np.random.default_rng(2)
    cost = np.full((1, 300), 0.01)
    base = (rng.random((1, 300)) < 0.6).astype(float)
    better = np.maximum(base, (rng.random((1, 300)) < 0.3).astype(float))  # right wherever base is
    c_max = 6.0  # each curve is one point at $3; AIQ = accuracy × (c_max − 3) / c_max
    low, high, wins = paired_margin((cost, better), [(cost, base)], lambda p: aiq(p, c_max), rounds=50)
    assert 0 < low <= high and wins == 1.0  # paired: it wins every round, not only on average
    low, high, wins = paired_margin((cost, base), [(cost, base)], lambda p: aiq(p, c_max), rounds=20)
    assert low == high == 0.0 and wins == 0.0  # a tie is not a win
    # against two rivals the margin is over the better one
    low, high, wins = paired_margin((cost, base), [(cost, better), (cost, base)],
                                    lambda p: aiq(p, c_max), rounds=20)
    assert high < 0 and wins == 0.0
    with pytest.raises(ValueError, match="same queries"):
        paired_margin((cost, base), [(cost[:, :10], base[:, :10])], lambda p: aiq(p, c_max))


def test_metric_boundaries_are_exact() -> None:
    """Each boundary once, by hand (mutation testing found these untested)."""
    from cascade.bench._metrics import hull_value

    vertices = hull(POINTS)  # (1, 0.5), (2, 0.8), (4, 0.9)
    assert hull_value(vertices, 1.0) == 0.5 and hull_value(vertices, 0.999) is None
    assert hull_value(vertices, 9.0) == 0.9  # flat after the last vertex
    # accuracy reached exactly at a vertex: that vertex's cost, not the next one's
    assert cost_to_reach(POINTS, 0.8) == 2.0 and cost_to_reach(POINTS, 0.9) == 4.0
    assert cost_to_reach(POINTS, 0.6) == pytest.approx(1 + 0.1 / 0.3)  # interpolated, not 1
    assert cost_to_reach([(1.0, 0.5)], 0.5) == 1.0
    # c_max: positive, may be below 1, and below the cheapest point nothing counts
    assert aiq([(0.2, 0.6)], 0.4) == pytest.approx(0.3)
    assert aiq(POINTS, 0.5) == 0.0
    for bad in (0.0, -1.0):
        with pytest.raises(ValueError, match="^c_max must be positive$"):
            aiq(POINTS, bad)
    for gap in (Gap(weak=(1.0, 0.5), strong=(1.0, 0.9)), Gap(weak=(1.0, 0.5), strong=(3.0, 0.5))):
        with pytest.raises(ValueError, match="^the strong model must cost more and score higher than the weak one$"):
            apgr([(2.0, 0.7)], gap)


def test_cpt_and_apgr_are_exact_on_grid_points() -> None:
    """Weak (0, 0), strong (1, 1), a point (0.5, 1): PGR = 2x up to x = 0.5, then 1.
    CPT(50 %) = 0.25 and CPT(100 %) = 0.5 exactly (grid points of the default 10001-point
    grid); APGR = 0.25 + 0.5 = 0.75 exactly (the kink sits on the default 1001-point grid)."""
    gap = Gap(weak=(0.0, 0.0), strong=(1.0, 1.0))
    points = [gap.weak, (0.5, 1.0), gap.strong]
    assert cpt(points, gap, 0.5) == 0.25 and cpt(points, gap, 1.0) == 0.5
    assert apgr(points, gap) == pytest.approx(0.75, abs=1e-13)
