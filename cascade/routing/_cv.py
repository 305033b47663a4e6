"""Router hyperparameters chosen by cross-validation on the training data (pure numpy).

As RouterBench does for its KNN router, every variant is scored on out-of-fold predictions
(each training query predicted by a model that did not see it) by the AIQ of the routing
curve those predictions give: per query the model maximising P(ok) − λ·cost / max cost
(RouterBench's willingness-to-pay rule), λ swept over ``LAMBDAS``; AIQ is the area under the
non-decreasing convex hull of (total cost, mean quality), flat to the dearest single model's
total cost, divided by it. Data without costs is scored by the mean squared error of the
predicted quality instead. Ties go to the smoother variant (larger k).

kNN: k in ``KNN_KS`` × neighbour weighting (uniform, 1 / distance, similarity), all from one
neighbour search per fold. MF: ``_train.choose_mf`` uses the same folds and score.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from cascade.routing._models import KnnWeighting, knn_weights

FOLDS = 5
KNN_KS = (1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144)
LAMBDAS = (0.0, *(float(x) for x in np.geomspace(1e-3, 1e3, 31)))


def fold_rows(n: int, folds: int = FOLDS, seed: int = 0) -> list[np.ndarray]:
    """Disjoint held-out row sets covering 0..n-1 (a seeded permutation split in ``folds``)."""
    if n < 2:
        raise ValueError("cross-validation needs at least two training queries")
    return [np.sort(f) for f in np.array_split(np.random.default_rng(seed).permutation(n), min(folds, n))]


def hull_aiq(points: Sequence[tuple[float, float]], c_max: float) -> float:
    """RouterBench's AIQ of (cost, quality) points: the non-decreasing upper convex hull from
    the cheapest point, extended flat to ``c_max``, integrated and divided by ``c_max``."""
    best: dict[float, float] = {}
    for cost, quality in points:
        best[float(cost)] = max(float(quality), best.get(float(cost), -np.inf))
    upper: list[tuple[float, float]] = []
    for point in sorted(best.items()):
        while len(upper) >= 2 and ((upper[-1][0] - upper[-2][0]) * (point[1] - upper[-2][1])
                                   - (upper[-1][1] - upper[-2][1]) * (point[0] - upper[-2][0])) >= 0:
            upper.pop()
        upper.append(point)
    peak = max(range(len(upper)), key=lambda i: (upper[i][1], -i))
    xs = np.array([p[0] for p in upper[: peak + 1]])
    ys = np.array([p[1] for p in upper[: peak + 1]])
    if c_max <= 0 or xs[0] >= c_max:
        return 0.0
    end = float(np.interp(c_max, xs, ys))
    keep = xs < c_max
    xs, ys = np.append(xs[keep], c_max), np.append(ys[keep], end)
    return float(np.sum((xs[1:] - xs[:-1]) * (ys[1:] + ys[:-1]) / 2)) / c_max


def routing_aiq(p: np.ndarray, labels: np.ndarray, cost: np.ndarray) -> float:
    """AIQ of the utility rule swept over λ on predictions ``p`` (queries, models)."""
    rows = np.arange(labels.shape[0])
    relative = cost.mean(axis=0) / max(float(cost.mean(axis=0).max()), 1e-300)
    points = []
    for weight in LAMBDAS:
        start = np.argmax(p - weight * relative[None, :], axis=1)
        points.append((float(cost[rows, start].sum()), float(labels[rows, start].mean())))
    return hull_aiq(points, float(cost.sum(axis=0).max()))


def score(p: np.ndarray, labels: np.ndarray, cost: np.ndarray | None) -> float:
    """Higher is better: routing AIQ with costs, else −MSE of the predicted quality."""
    if cost is not None:
        return routing_aiq(p, labels, cost)
    return -float(np.mean((p - labels) ** 2))


@dataclass(frozen=True, slots=True)
class KnnChoice:
    k: int
    weighting: KnnWeighting
    score: float
    scores: dict[str, float]  # "k=.., weighting" -> its cross-validated score


def _top(queries: np.ndarray, keys: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    sims = queries @ keys.T
    part = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    order = np.take_along_axis(sims, part, axis=1).argsort(axis=1)[:, ::-1]
    index = np.take_along_axis(part, order, axis=1)
    return np.take_along_axis(sims, index, axis=1), index


def choose_knn(embeddings: np.ndarray, labels: np.ndarray, cost: np.ndarray | None, *,
               ks: Sequence[int] = KNN_KS, folds: int = FOLDS, seed: int = 0) -> KnnChoice:
    """The (k, weighting) with the best cross-validated score; ks above a fold's training
    size are left out."""
    n = labels.shape[0]
    held = fold_rows(n, folds, seed)
    usable = sorted({k for k in ks if k <= n - max(len(f) for f in held)} or {1})
    variants = [(k, w) for w in KnnWeighting for k in usable]
    oof = {v: np.zeros(labels.shape, dtype=np.float64) for v in variants}
    for rows in held:
        fit = np.setdiff1d(np.arange(n), rows)
        sims, index = _top(embeddings[rows], embeddings[fit], usable[-1])
        neighbour_labels = labels[fit][index]  # (held, kmax, models)
        for weighting in KnnWeighting:
            w = knn_weights(sims, weighting)
            num = np.cumsum(w[:, :, None] * neighbour_labels, axis=1)
            den = np.cumsum(w, axis=1)[:, :, None]
            for k in usable:
                oof[(k, weighting)][rows] = num[:, k - 1] / den[:, k - 1]
    scores = {v: score(oof[v], labels, cost) for v in variants}
    k, weighting = max(variants, key=lambda v: (round(scores[v], 12), v[0]))
    return KnnChoice(k, weighting, scores[(k, weighting)],
                     {f"k={a}, {b.value}": s for (a, b), s in scores.items()})
