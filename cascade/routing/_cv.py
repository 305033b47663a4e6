"""Router hyperparameters chosen by cross-validation on the training data (pure numpy).

As RouterBench does for its KNN router, every variant is scored on out-of-fold predictions
(each training query predicted by a model that did not see it) by the AIQ of the routing
curve those predictions give: per query the model maximising P(ok) − λ·cost / max cost
(RouterBench's willingness-to-pay rule), λ swept over ``LAMBDAS``; AIQ is the area under the
non-decreasing convex hull of (total cost, mean quality), flat to the dearest single model's
total cost, divided by it (``routing_aiq``; MF is scored so). Data without costs is scored
by the mean squared error of the predicted quality instead.

kNN: k in ``KNN_KS`` × neighbour weighting (uniform, 1 / distance, similarity) × prior strength
m in ``KNN_PRIORS``, all from one neighbour search per fold. The prior shrinks each model's
neighbourhood mean toward its mean quality over the training queries (in CV: the fit folds'),
p = (Σ w·quality + m·mean) / (Σ w + m) (``_models.knn_shrink``; a neighbour of weight 1 counts
as one pseudo-observation): m = 0 is the plain kNN mean, m = ∞ routes every query by the global
means alone, which through the λ rule gives the single models' hull. Two guards keep CV from
trusting neighbourhoods that carry no signal:

- kNN variants are scored by the *held-out* AIQ (``heldout_aiq``): the λ values on the hull of
  one random half of the out-of-fold points are measured on the other half and their curve
  integrated as measured (points in cost order, not re-hulled), both ways, over
  ``HALF_SPLITS`` splits. This is what the bench does with train and test, and it stops
  rewarding what the in-sample hull rewards: many noisy mixtures of models, a few of which
  land above the line by luck (on pure-noise neighbours the in-sample hull AIQ of a plain kNN
  beats the single models' by 0.02–0.03; on fresh data it does not).
- the one-standard-error rule: among variants whose score is within ``ONE_SE`` standard errors
  (of the paired per-fold score differences) of the best, the smoothest wins — the stronger
  prior, then uniform weights, then the larger k.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from cascade.routing._models import KnnWeighting, knn_shrink, knn_weights, prior_label

FOLDS = 5
KNN_KS = (1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144)
KNN_PRIORS = (0.0, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, math.inf)  # pseudo-neighbours
ONE_SE = 1.0  # a smoother kNN variant within this many standard errors of the best is preferred
LAMBDAS = (0.0, *(float(x) for x in np.geomspace(1e-3, 1e3, 31)))
HALF_SPLITS = 5


def fold_rows(n: int, folds: int = FOLDS, seed: int = 0) -> list[np.ndarray]:
    """Disjoint held-out row sets covering 0..n-1 (a seeded permutation split in ``folds``)."""
    if n < 2:
        raise ValueError("cross-validation needs at least two training queries")
    return [np.sort(f) for f in np.array_split(np.random.default_rng(seed).permutation(n), min(folds, n))]


def _upper_hull(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """The non-decreasing upper convex hull of (cost, quality) points, from the cheapest."""
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
    return upper[: peak + 1]


def _area(points: Sequence[tuple[float, float]], c_max: float) -> float:
    """The curve through ``points`` (in cost order) from the cheapest, extended flat to
    ``c_max``, integrated and divided by ``c_max``."""
    xs = np.array([p[0] for p in points], dtype=np.float64)
    ys = np.array([p[1] for p in points], dtype=np.float64)
    if c_max <= 0 or xs[0] >= c_max:
        return 0.0
    end = float(np.interp(c_max, xs, ys))
    keep = xs < c_max
    xs, ys = np.append(xs[keep], c_max), np.append(ys[keep], end)
    return float(np.sum((xs[1:] - xs[:-1]) * (ys[1:] + ys[:-1]) / 2)) / c_max


def hull_aiq(points: Sequence[tuple[float, float]], c_max: float) -> float:
    """RouterBench's AIQ of (cost, quality) points: the non-decreasing upper convex hull from
    the cheapest point, extended flat to ``c_max``, integrated and divided by ``c_max``."""
    return _area(_upper_hull(points), c_max)


def _routed(p: np.ndarray, labels: np.ndarray, cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per λ (rows) and query (columns): the cost and quality of the model the λ rule picks."""
    rows = np.arange(labels.shape[0])
    relative = cost.mean(axis=0) / max(float(cost.mean(axis=0).max()), 1e-300)
    start = np.stack([np.argmax(p - weight * relative[None, :], axis=1) for weight in LAMBDAS])
    return cost[rows[None, :], start], labels[rows[None, :], start]


def routing_aiq(p: np.ndarray, labels: np.ndarray, cost: np.ndarray) -> float:
    """AIQ of the utility rule swept over λ on predictions ``p`` (queries, models)."""
    spent, quality = _routed(p, labels, cost)
    return hull_aiq(list(zip(spent.sum(axis=1).tolist(), quality.mean(axis=1).tolist())),
                    float(cost.sum(axis=0).max()))


def heldout_aiq(p: np.ndarray, labels: np.ndarray, cost: np.ndarray, *,
                splits: int = HALF_SPLITS, seed: int = 0) -> float:
    """The λ rule's AIQ as the bench measures it: the λ values on one half's hull measured on
    the other half, their curve taken as measured (not re-hulled); the mean over ``splits``
    random halvings, both ways round."""
    n = labels.shape[0]
    if n < 4:
        return routing_aiq(p, labels, cost)
    spent, quality = _routed(p, labels, cost)
    rng = np.random.default_rng(seed)
    areas = []
    for _ in range(splits):
        half = rng.permutation(n) < n // 2
        for chosen, measured in ((half, ~half), (~half, half)):
            on_chosen = list(zip(spent[:, chosen].sum(axis=1).tolist(), quality[:, chosen].mean(axis=1).tolist()))
            first = {}  # each hull vertex's first λ
            for i, point in enumerate(on_chosen):
                first.setdefault(point, i)
            kept = [first[v] for v in _upper_hull(on_chosen)]
            points = sorted(zip(spent[kept][:, measured].sum(axis=1).tolist(),
                                quality[kept][:, measured].mean(axis=1).tolist()))
            areas.append(_area(points, float(cost[measured].sum(axis=0).max())))
    return float(np.mean(areas))


def score(p: np.ndarray, labels: np.ndarray, cost: np.ndarray | None) -> float:
    """Higher is better: routing AIQ with costs, else −MSE of the predicted quality."""
    if cost is not None:
        return routing_aiq(p, labels, cost)
    return -float(np.mean((p - labels) ** 2))


def knn_score(p: np.ndarray, labels: np.ndarray, cost: np.ndarray | None) -> float:
    """Higher is better: held-out routing AIQ with costs, else −MSE of the predicted quality."""
    if cost is not None:
        return heldout_aiq(p, labels, cost)
    return -float(np.mean((p - labels) ** 2))


@dataclass(frozen=True, slots=True)
class KnnChoice:
    k: int
    weighting: KnnWeighting
    score: float
    scores: dict[str, float]  # "k=.., weighting, m=.." -> its cross-validated score
    prior: float = 0.0  # m: pseudo-neighbours at each model's global mean quality (math.inf: only those)
    score_without_prior: float = field(default=math.nan)  # best score with m = 0 (the plain kNN)

    def describe(self) -> str:
        if math.isinf(self.prior):
            return "prior m=inf (every query routed by each model's mean quality on train; k and weighting unused)"
        return f"k={self.k}, {self.weighting.value} weighting, prior m={prior_label(self.prior)}"


def _top(queries: np.ndarray, keys: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    sims = queries @ keys.T
    part = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    order = np.take_along_axis(sims, part, axis=1).argsort(axis=1)[:, ::-1]
    index = np.take_along_axis(part, order, axis=1)
    return np.take_along_axis(sims, index, axis=1), index


def _variant(k: int, weighting: KnnWeighting, prior: float) -> str:
    return f"k={k}, {weighting.value}, m={prior_label(prior)}"


def _smoothest(v: tuple[int, KnnWeighting, float]) -> tuple[float, bool, int]:
    """Smoother first: the stronger prior, then uniform weights, then the larger k."""
    return v[2], v[1] is KnnWeighting.UNIFORM, v[0]


def _within(values: dict, per_fold, best: tuple, tolerance: float, folds: int) -> list[tuple]:
    """The variants whose value is at most ``tolerance`` standard errors (of the paired
    per-fold differences) above ``best``'s (lower is better), ``best`` first."""
    top = per_fold(best)
    out = [best]
    for v, value in values.items():
        gap = value - values[best]
        error = float(np.std(per_fold(v) - top, ddof=1)) / math.sqrt(folds)
        if v != best and gap <= tolerance * error + 1e-6:  # 1e-6: float noise between equal variants
            out.append(v)
    return out


def _one_se(oof: dict, scores: dict, labels: np.ndarray, cost: np.ndarray | None,
            held: Sequence[np.ndarray], tolerance: float) -> tuple[int, KnnWeighting, float]:
    """The one-standard-error rule, twice: of the variants whose score is within ``tolerance``
    standard errors of the best (errors of the paired per-fold differences), keep those whose
    Brier score (mean squared error of the predicted quality) is within ``tolerance`` standard
    errors of the lowest among them, and take the smoothest. The AIQ cannot tell a well-scaled
    P(ok) from a heavily shrunk one that orders the models the same way (the λ grid is fine
    enough for both); the Brier score can."""
    best = max(scores, key=lambda v: (round(scores[v], 12), _smoothest(v)))
    if tolerance <= 0 or len(held) < 2:
        return best

    def fold_losses(v: tuple) -> np.ndarray:
        return np.array([-knn_score(oof[v][r], labels[r], None if cost is None else cost[r]) for r in held])

    loss = {v: -s for v, s in scores.items()}
    routing = _within(loss, fold_losses, best, tolerance, len(held))
    brier = {v: float(np.mean((oof[v] - labels) ** 2)) for v in routing}
    sharpest = min(routing, key=lambda v: (round(brier[v], 12), _smoothest(v)))
    calibrated = _within(brier, lambda v: np.array([np.mean((oof[v][r] - labels[r]) ** 2) for r in held]),
                         sharpest, tolerance, len(held))
    return max(calibrated, key=_smoothest)


def choose_knn(embeddings: np.ndarray, labels: np.ndarray, cost: np.ndarray | None, *,
               ks: Sequence[int] = KNN_KS, folds: int = FOLDS, seed: int = 0,
               weightings: Sequence[KnnWeighting] = tuple(KnnWeighting),
               priors: Sequence[float] = KNN_PRIORS, tolerance: float = ONE_SE) -> KnnChoice:
    """The (k, weighting, prior m) chosen by cross-validation: the best held-out score, or with
    ``tolerance`` > 0 the one-standard-error rule of ``_one_se``; ks above a fold's training
    size are left out. Each held-out fold is shrunk toward the means of the folds it was
    predicted from, as the trained router is toward all of train's."""
    n = labels.shape[0]
    held = fold_rows(n, folds, seed)
    usable = sorted({k for k in ks if k <= n - max(len(f) for f in held)} or {1})
    priors = sorted({float(m) for m in priors})
    variants = [(k, w, m) for m in priors for w in weightings for k in usable]
    oof = {v: np.zeros(labels.shape, dtype=np.float64) for v in variants}
    for rows in held:
        fit = np.setdiff1d(np.arange(n), rows)
        sims, index = _top(embeddings[rows], embeddings[fit], usable[-1])
        neighbour_labels = labels[fit][index]  # (held, kmax, models)
        mean = labels[fit].mean(axis=0, dtype=np.float64)  # the prior: the fit folds' (no held-out label)
        for weighting in weightings:
            w = knn_weights(sims, weighting)
            num = np.cumsum(w[:, :, None] * neighbour_labels, axis=1)
            den = np.cumsum(w, axis=1)[:, :, None]
            for k, m in itertools.product(usable, priors):
                oof[(k, weighting, m)][rows] = knn_shrink(num[:, k - 1], den[:, k - 1], mean, m)
    scores = {v: knn_score(oof[v], labels, cost) for v in variants}
    k, weighting, prior = _one_se(oof, scores, labels, cost, held, tolerance)
    plain = [s for v, s in scores.items() if v[2] == 0.0]
    return KnnChoice(k, weighting, scores[(k, weighting, prior)],
                     {_variant(*v): s for v, s in scores.items()}, prior,
                     max(plain) if plain else math.nan)
