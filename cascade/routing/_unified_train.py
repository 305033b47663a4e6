"""Fitting the unified cost–quality decision (``cascade.routing._unified``) on recorded data,
replaying it, and calibrating its cost weight λ to a target.

Inputs are per query × tier arrays: the router's **cross-fitted** prior P(good) (a router that
saw a query's label would flatter it), the quality (0/1 or graded in [0, 1]), the recorded
cost, and the answer group (equal normalised answers share an id; -1: no answer)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from cascade.errors import RoutingDataError
from cascade.routing._cv import hull_aiq
from cascade.routing._select import RouteCalibrationError, RouteTargetKind
from cascade.routing._unified import (
    CALLED_FEATURES,
    WAITING_FEATURES,
    AnswerStats,
    DecisionRule,
    UnifiedModel,
    called_features,
    waiting_features,
)
from verifiers._calibrate import GOOD

__all__ = [
    "Replayed",
    "UnifiedData",
    "UnifiedDataError",
    "answer_stats",
    "calibrate_cost_weight",
    "candidate_models",
    "choose_rule",
    "cost_weight_grid",
    "fit_unified",
    "replay_unified",
    "sweep_unified",
]

PERMUTATIONS = 4
LOOKAHEAD_MAX_TIERS = 3  # random call orders sampled per training query


class UnifiedDataError(RoutingDataError):
    """Recorded data that cannot fit a unified model (shapes, ranges)."""

    def __init__(self, message: str) -> None:
        super().__init__("unified data", message)


@dataclass(frozen=True, slots=True)
class UnifiedData:
    models: tuple[str, ...]
    prior: np.ndarray  # (n, m) router P(good), cross-fitted on train
    quality: np.ndarray  # (n, m) in [0, 1]
    cost: np.ndarray  # (n, m) recorded cost of one call
    groups: np.ndarray  # (n, m) int answer group, -1 where no answer

    def __post_init__(self) -> None:
        m = len(self.models)
        n = self.prior.shape[0] if self.prior.ndim == 2 else -1
        for name in ("prior", "quality", "cost", "groups"):
            value = getattr(self, name)
            if value.shape != (n, m):
                raise UnifiedDataError(f"{name} has shape {value.shape}, expected ({n}, {m})")
        if n < 1:
            raise UnifiedDataError("no queries")
        for name in ("prior", "quality"):
            value = getattr(self, name)
            if not np.all((value >= 0) & (value <= 1)):
                raise UnifiedDataError(f"{name} must lie in [0, 1]")
        if not np.all(np.isfinite(self.cost)) or np.any(self.cost < 0):
            raise UnifiedDataError("costs must be finite and non-negative")

    def group_list(self, row: int, tiers: Sequence[int]) -> list[int | None]:
        return [None if self.groups[row, t] < 0 else int(self.groups[row, t]) for t in tiers]


def candidate_models(quality: np.ndarray, cost: np.ndarray, limit: int = 5) -> list[int]:
    """The tiers worth offering (the default rule for files with many models): those no
    other tier beats on both mean cost and mean quality on train, cheapest first; above
    ``limit`` the cheapest, the best and evenly spaced ones between."""
    q, c = quality.mean(axis=0), cost.mean(axis=0)
    order = sorted(range(q.size), key=lambda t: (c[t], -q[t]))
    front, best = [], -math.inf
    for t in order:
        if q[t] > best + 1e-12:
            front.append(t)
            best = q[t]
    if len(front) <= limit:
        return front
    picks = np.unique(np.round(np.linspace(0, len(front) - 1, limit)).astype(int))
    return [front[i] for i in picks]


def _rows(data: UnifiedData, rng: np.random.Generator, depth: int):  # type: ignore[no-untyped-def]
    """Training rows (features, tier, quality) for called and waiting tiers over random
    call orders and every prefix up to ``depth`` answers."""
    n, m = data.prior.shape
    called_rows: list[tuple[np.ndarray, int, float]] = []
    waiting_rows: list[tuple[np.ndarray, int, float]] = []
    for row in range(n):
        prior = data.prior[row]
        for _ in range(PERMUTATIONS):
            order = [int(t) for t in rng.permutation(m)]
            for k in range(depth + 1):
                called = order[:k]
                groups = data.group_list(row, called)
                if k:
                    for f, t in zip(called_features(prior, called, groups), called):
                        called_rows.append((f, t, float(data.quality[row, t])))
                rest = order[k:]
                if rest:
                    for f, t in zip(waiting_features(prior, rest, groups), rest):
                        waiting_rows.append((f, t, float(data.quality[row, t])))
    return called_rows, waiting_rows


def _logistic(rows: Sequence[tuple[np.ndarray, int, float]], m: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Each tier's own weights and intercept (one fit on tier-crossed features, so a tier
    with few rows borrows nothing but the regularisation); graded targets as two weighted
    samples (quality q: a positive of weight q and a negative of weight 1 − q)."""
    from sklearn.linear_model import LogisticRegression

    x = np.zeros((len(rows), m * (width + 1)))
    for r, (f, t, _) in enumerate(rows):
        x[r, t * (width + 1):(t + 1) * (width + 1)] = np.append(f, 1.0)
    y = np.array([v for _, _, v in rows])
    xx = np.concatenate([x, x])
    yy = np.concatenate([np.ones(len(y)), np.zeros(len(y))])
    ww = np.concatenate([y, 1.0 - y])
    keep = ww > 0
    if len(np.unique(yy[keep])) < 2:  # every answer right (or wrong): the base rate says it all
        rate = float(y.mean())
        logit = math.log(max(rate, 1e-4) / max(1 - rate, 1e-4))
        return np.zeros((m, width)), np.full(m, logit)
    fit = LogisticRegression(C=1.0, fit_intercept=False, max_iter=3000)
    fit.fit(xx[keep], yy[keep], sample_weight=ww[keep])
    coef = fit.coef_[0].reshape(m, width + 1)
    return coef[:, :width], coef[:, width]


def _moves(model: UnifiedModel, data: UnifiedData, rng: np.random.Generator,
           depth: int) -> tuple[np.ndarray, np.ndarray]:
    """How each tier's estimate still moves from k to n answers seen: root-mean-square by
    state (waiting, called) and the correlation between tiers (both among the first n)."""
    n, m = data.prior.shape
    sq, count = np.zeros((2, m, m + 1, m + 1)), np.zeros((2, m, m + 1, m + 1))
    cross, pairs = np.zeros((m + 1, m + 1, m, m)), np.zeros((m + 1, m + 1, m, m))
    for row in range(n):
        prior = data.prior[row]
        for _ in range(PERMUTATIONS):
            order = [int(t) for t in rng.permutation(m)]
            est = [model.qualities(prior, order[:k], data.group_list(row, order[:k]))
                   for k in range(depth + 1)]
            for k in range(depth + 1):
                for size in range(k + 1, depth + 1):
                    inside = order[:size]
                    move = est[size][inside] - est[k][inside]
                    for pos, t in enumerate(inside):
                        state = 1 if pos < k else 0
                        sq[state, t, k, size] += move[pos] ** 2
                        count[state, t, k, size] += 1
                    cross[k, size][np.ix_(inside, inside)] += np.outer(move, move)
                    pairs[k, size][np.ix_(inside, inside)] += 1
    spread = np.sqrt(np.divide(sq, count, out=np.zeros_like(sq), where=count > 0))
    second = np.divide(cross, pairs, out=np.zeros_like(cross), where=pairs > 0)
    scale = np.sqrt(np.clip(np.einsum("knii->kni", second), 0, None))
    denom = scale[:, :, :, None] * scale[:, :, None, :]
    corr = np.divide(second, denom, out=np.zeros_like(second), where=denom > 1e-12)
    corr = np.clip(corr, -1.0, 1.0)
    eye = np.eye(m)
    for k in range(m + 1):
        for size in range(m + 1):
            corr[k, size] = _nearest_correlation(np.where(eye > 0, 1.0, corr[k, size]))
    return spread, corr


def _nearest_correlation(c: np.ndarray) -> np.ndarray:
    """Clip negative eigenvalues (a pairwise estimate need not be positive semi-definite)."""
    values, vectors = np.linalg.eigh((c + c.T) / 2)
    fixed = vectors @ np.diag(np.clip(values, 1e-6, None)) @ vectors.T
    d = np.sqrt(np.diag(fixed))
    return np.clip(fixed / np.outer(d, d), -1.0, 1.0)  # type: ignore[no-any-return]


def _pair_agreement(data: UnifiedData, good: bool) -> float:
    """P(two answers share a group) over pairs of tiers that are both good (both bad) on a
    query and both gave an answer; add-one smoothed."""
    ok = (data.quality >= GOOD) if good else (data.quality < GOOD)
    ok &= data.groups >= 0
    agree = pairs = 0
    m = len(data.models)
    for a in range(m):
        for b in range(a + 1, m):
            both = ok[:, a] & ok[:, b]
            pairs += int(both.sum())
            agree += int((both & (data.groups[:, a] == data.groups[:, b])).sum())
    return (agree + 1) / (pairs + 2)


def answer_stats(data: UnifiedData) -> AnswerStats:
    """How answers group on ``data``: what the look-ahead rule predicts outcomes with."""
    return AnswerStats(_pair_agreement(data, True), _pair_agreement(data, False),
                       tuple(float(v) for v in (data.groups < 0).mean(axis=0)))


def fit_unified(data: UnifiedData, max_calls: int = 3, seed: int = 0,
                rule: DecisionRule = DecisionRule.SPREAD) -> UnifiedModel:
    """Fit the quality models, their spreads and the answer statistics on ``data`` (train).
    ``choose_rule`` picks the rule on the data instead."""
    m = len(data.models)
    depth = max(1, min(max_calls, m))
    rng = np.random.default_rng(seed)
    called_rows, waiting_rows = _rows(data, rng, depth)
    w_c, b_c = _logistic(called_rows, m, len(CALLED_FEATURES))
    w_w, b_w = _logistic(waiting_rows, m, len(WAITING_FEATURES))
    mean_cost = data.cost.mean(axis=0)
    rel = mean_cost / max(float(mean_cost.max()), 1e-12)
    base = data.quality.mean(axis=0)
    model = UnifiedModel(data.models, w_c, b_c, w_w, b_w, np.zeros((2, m, m + 1, m + 1)),
                         np.tile(np.eye(m), (m + 1, m + 1, 1, 1)), rel, base, depth)
    spread, corr = _moves(model, data, np.random.default_rng(seed + 1), depth)
    return UnifiedModel(data.models, w_c, b_c, w_w, b_w, spread, corr, rel, base, depth, rule,
                        answer_stats(data))


@dataclass(frozen=True, slots=True)
class Replayed:
    """Per query: total cost, quality of the returned answer, tiers called (n, m)."""

    cost: np.ndarray
    quality: np.ndarray
    reached: np.ndarray

    @property
    def calls(self) -> np.ndarray:
        return self.reached.sum(axis=1)  # type: ignore[no-any-return]

    @property
    def point(self) -> tuple[float, float]:
        return float(self.cost.sum()), float(self.quality.mean())


def replay_unified(model: UnifiedModel, data: UnifiedData, cost_weight: float) -> Replayed:
    """Run the decision on recorded data: every call is charged its recorded cost."""
    return sweep_unified(model, data, [cost_weight])[0][1]


def _replay_row(model: UnifiedModel, data: UnifiedData, row: int, cost_weight: float,
                cache: dict) -> tuple[list[int], int]:  # type: ignore[type-arg]
    called: list[int] = []
    while True:
        step = model.decide(data.prior[row], called, data.group_list(row, called), cost_weight,
                            cache=cache)
        if step.call is None:
            break
        called.append(step.call)
    assert step.answer is not None  # decide calls at least one tier
    return called, step.answer


def cost_weight_grid(steps: int = 72) -> list[float]:
    """λ from 0 (quality only) to 20 (a call must gain 20× its relative cost)."""
    return [0.0] + [float(v) for v in np.geomspace(1e-3, 20.0, steps - 1)]


def sweep_unified(model: UnifiedModel, data: UnifiedData,
                  grid: Sequence[float] | None = None) -> list[tuple[float, Replayed]]:
    """``replay_unified`` for each λ of ``grid`` (default ``cost_weight_grid()``); a query's
    estimates are computed once for every λ."""
    lams = list(cost_weight_grid() if grid is None else grid)
    n, m = data.prior.shape
    cost, quality = np.zeros((len(lams), n)), np.zeros((len(lams), n))
    reached = np.zeros((len(lams), n, m), dtype=bool)
    for row in range(n):
        cache: dict = {}  # type: ignore[type-arg]
        for i, lam in enumerate(lams):
            called, answer = _replay_row(model, data, row, lam, cache)
            cost[i, row] = float(data.cost[row, called].sum())
            quality[i, row] = float(data.quality[row, answer])
            reached[i, row, called] = True
    return [(lam, Replayed(cost[i], quality[i], reached[i])) for i, lam in enumerate(lams)]


def choose_rule(data: UnifiedData, max_calls: int = 3, seed: int = 0,
                grid: Sequence[float] | None = None) -> tuple[UnifiedModel, dict[DecisionRule, float]]:
    """Fit on ``data`` and keep the decision rule whose λ sweep (default: 24 λ) replayed on
    ``data`` has the larger area under its cost–quality hull (AIQ up to the dearest tier's
    total cost), with that score per rule. Both rules share the fitted estimates, so this compares how they
    decide, not what they know. The look-ahead is offered up to ``LOOKAHEAD_MAX_TIERS`` tiers,
    where its first step stays under 1 ms (``benchmarks/unified_latency.py``: 0.39 ms p50 for 3
    tiers, 1.1 ms for 4, 2.2 ms for 5); a policy may still load a look-ahead artifact of more."""
    spread = fit_unified(data, max_calls, seed, DecisionRule.SPREAD)
    models = {DecisionRule.SPREAD: spread}
    if len(data.models) <= LOOKAHEAD_MAX_TIERS:
        models[DecisionRule.LOOKAHEAD] = dataclasses.replace(spread, rule=DecisionRule.LOOKAHEAD)
    c_max = float(data.cost.sum(axis=0).max())
    lams = cost_weight_grid(24) if grid is None else grid
    scores = {rule: hull_aiq([r.point for _, r in sweep_unified(model, data, lams)], c_max)
              for rule, model in models.items()}
    best = max(scores, key=lambda rule: (scores[rule], rule is DecisionRule.SPREAD))
    return models[best], scores


def calibrate_cost_weight(swept: Sequence[tuple[float, Replayed]], data: UnifiedData,
                          kind: RouteTargetKind, value: float) -> float:
    """The λ meeting a target on labelled data: ``quality`` — the largest λ whose mean quality
    reaches ``value`` × the best single tier's; ``cost`` — the smallest λ whose mean cost is at
    most ``value`` × the dearest tier's. Monotone by construction: a higher quality target
    never gives a larger λ, a higher cost target never a larger λ either."""
    if not swept:
        raise RouteCalibrationError("no λ was replayed")
    if not 0 < value <= 1.5:
        raise RouteCalibrationError(f"target {kind.value}={value}: a share in (0, 1.5]")
    match kind:
        case RouteTargetKind.QUALITY:
            goal = value * float(data.quality.mean(axis=0).max())
            meeting = [lam for lam, r in swept if float(r.quality.mean()) >= goal - 1e-12]
            if not meeting:
                raise RouteCalibrationError(f"no λ reaches {value:g} of the best tier's quality")
            return max(meeting)
        case RouteTargetKind.COST:
            goal = value * float(data.cost.mean(axis=0).max())
            meeting = [lam for lam, r in swept if float(r.cost.mean()) <= goal + 1e-12]
            if not meeting:
                raise RouteCalibrationError(f"no λ keeps the cost within {value:g} of the dearest tier's")
            return min(meeting)
        case RouteTargetKind.SHARES:
            raise RouteCalibrationError("the unified decision calibrates to quality or cost, not shares")
    raise AssertionError(kind)
