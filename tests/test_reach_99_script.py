"""``benchmarks/reach_99.py``: the arithmetic behind the published "what 99 % at ≤ 50 % would
take" figures, on hand-made outcomes."""

from __future__ import annotations

import math

import numpy as np

from benchmarks import reach_99


def test_cost_to_share_reads_the_hull_as_the_bench_does_or_inf() -> None:
    points = [(1.0, 0.50), (3.0, 0.80), (2.0, 0.80), (10.0, 0.81)]  # hull: (1, .5), (2, .8), (10, .81)
    assert math.isclose(reach_99.cost_to_share(points, best_accuracy=0.65, best_cost=10.0, share=1.0), 0.15)
    assert math.isclose(reach_99.cost_to_share(points, best_accuracy=0.81, best_cost=10.0, share=1.0), 1.0)
    assert math.isclose(reach_99.cost_to_share(points, best_accuracy=0.80, best_cost=10.0), 0.1 + 0.1 * 0.292 / 0.3,
                        rel_tol=1e-6)  # 0.99 · 0.80 = 0.792 between (1, .5) and (2, .8)
    assert math.isinf(reach_99.cost_to_share(points, best_accuracy=0.95, best_cost=10.0))


def test_routing_points_send_the_lowest_scores_on_first() -> None:
    quality = np.array([[1.0, 1.0], [0.0, 1.0], [1.0, 0.0], [0.0, 0.0]])
    cost = np.array([[1.0, 10.0]] * 4)
    score = np.array([0.9, 0.1, 0.8, 0.5])  # query 1 first, then 3, then 2, then 0
    points = reach_99.routing_points(score, quality, cost)
    assert points[0] == (4.0, 0.5)  # all on the cheap tier: queries 0 and 2 right
    assert points[1] == (13.0, 0.75)  # query 1 moved up: right now
    assert points[2] == (22.0, 0.75)  # query 3: wrong on both
    assert points[4] == (40.0, 0.5)  # all on tier 1: queries 0 and 1 right


def test_a_stronger_synthetic_score_has_a_higher_auroc_and_reaches_cheaper() -> None:
    rng = np.random.default_rng(3)
    cheap = rng.uniform(size=400) < 0.65
    dear = cheap | (rng.uniform(size=400) < 0.6)
    quality = np.stack([cheap, dear], axis=1).astype(float)
    cost = np.tile([0.02, 1.0], (400, 1))
    rows = reach_99.needed_auroc(quality, cost, strengths=(0.5, 3.0), draws=5)
    (s_weak, auroc_weak, share_weak), (s_strong, auroc_strong, share_strong) = rows
    assert (s_weak, s_strong) == (0.5, 3.0)
    assert 0.5 < auroc_weak < auroc_strong
    assert share_strong < share_weak <= 1.0
