"""kNN and MF hyperparameters chosen by cross-validation on train (cascade.routing._cv)."""

from __future__ import annotations

import numpy as np
import pytest

from cascade.bench._metrics import aiq
from cascade.routing import (
    CorrectnessData,
    KnnWeighting,
    choose_knn,
    choose_mf,
    train_knn,
    train_mf,
)
from cascade.routing._cv import fold_rows, hull_aiq, routing_aiq


def test_hull_aiq_matches_the_bench_metric() -> None:
    rng = np.random.default_rng(1)
    for _ in range(20):
        points = [(float(c), float(a)) for c, a in zip(rng.uniform(0.1, 2, 6), rng.uniform(0, 1, 6))]
        assert hull_aiq(points, 2.5) == pytest.approx(aiq(points, 2.5))
    assert hull_aiq([(0.04, 0.4375), (0.4, 0.75)], 0.4) == pytest.approx(0.534375)


def test_routing_aiq_by_hand() -> None:
    # two queries, two models; the cheap model is right on query 0 only, the dear one on both
    labels = np.array([[1.0, 1.0], [0.0, 1.0]])
    cost = np.array([[1.0, 10.0], [1.0, 10.0]])
    perfect = routing_aiq(labels, labels, cost)
    # points: all dear (20, 1), cheap on 0 and dear on 1 (11, 1), all cheap (2, 0.5):
    # hull (2, .5)-(11, 1) then flat to c_max 20: (9 × 0.75 + 9 × 1) / 20
    assert perfect == pytest.approx((9 * 0.75 + 9 * 1.0) / 20)
    assert routing_aiq(labels[::-1], labels, cost) < perfect  # predictions swapped: worse


def test_folds_cover_every_row_once() -> None:
    rows = np.concatenate(fold_rows(23, 5))
    assert sorted(rows.tolist()) == list(range(23))


def _clustered(n: int = 200, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two tight clusters: the cheap model is right on cluster A and wrong on cluster B, with
    10 % label noise; the dear model is always right. A large k mixes the clusters less
    than k = 1 amplifies noise, so CV must prefer a k above 1."""
    rng = np.random.default_rng(seed)
    side = rng.integers(0, 2, n)
    centres = np.eye(2, 16)
    x = centres[side] + 0.05 * rng.standard_normal((n, 16))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    cheap = (side == 0).astype(float)
    flip = rng.random(n) < 0.1
    cheap[flip] = 1 - cheap[flip]
    labels = np.stack([cheap, np.ones(n)], axis=1)
    cost = np.tile([1.0, 10.0], (n, 1))
    return x.astype(np.float32), labels, cost


def test_choose_knn_prefers_smoothing_over_noise() -> None:
    x, labels, cost = _clustered()
    choice = choose_knn(x, labels, cost, priors=(0.0,), tolerance=0.0)
    assert choice.k > 3 and choice.prior == 0.0
    assert choice.score == max(choice.scores.values())  # no one-standard-error rule: the best
    assert choice.scores[f"k={choice.k}, {choice.weighting.value}, m=0"] > choice.scores["k=1, uniform, m=0"]


def test_choose_knn_without_costs_scores_the_squared_error() -> None:
    x, labels, _ = _clustered()
    choice = choose_knn(x, labels, None)
    assert choice.score < 0 and choice.k > 3  # -MSE


def test_train_knn_records_the_cross_validated_choice() -> None:
    x, labels, cost = _clustered(120)
    data = CorrectnessData("toy", tuple(f"q{i}" for i in range(120)), ("cheap", "dear"),
                           labels.astype(np.float32), cost)
    model = train_knn(data, embeddings=np.pad(x, ((0, 0), (0, 384 - 16))))
    expected = choose_knn(np.pad(x, ((0, 0), (0, 384 - 16))), labels.astype(np.float32), cost)
    assert (model.k, model.weighting) == (expected.k, expected.weighting)
    assert model.header.metrics["cv"] == "aiq"
    fixed = train_knn(data, k=7, weighting=KnnWeighting.DISTANCE, embeddings=np.pad(x, ((0, 0), (0, 368))))
    assert (fixed.k, fixed.weighting) == (7, KnnWeighting.DISTANCE)


def test_choose_mf_picks_from_its_grid_and_train_mf_uses_it() -> None:
    x, labels, cost = _clustered(100)
    x = np.pad(x, ((0, 0), (0, 368)))
    choice = choose_mf(x, labels, cost, dims=(4, 8), weight_decays=(1e-4,), epochs=(20, 60))
    assert (choice.settings.dim, choice.settings.epochs) in {(4, 20), (4, 60), (8, 20), (8, 60)}
    assert len(choice.scores) == 4 and choice.score == max(choice.scores.values())
    data = CorrectnessData("toy", tuple(f"q{i}" for i in range(100)), ("cheap", "dear"),
                           labels.astype(np.float32), cost)
    model = train_mf(data, embeddings=x, dim=4, epochs=60, weight_decay=1e-4)
    assert model.header.metrics["dim"] == 4 and model.header.metrics["epochs"] == 60
    p = model.predict([], x)
    assert p[:, 1].mean() > p[:, 0].mean()  # the dear model is always right
