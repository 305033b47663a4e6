"""Pure routing decisions and their calibration (numpy only, no I/O).

The decision rule, for every router that predicts per-tier probabilities: start at the
cheapest tier whose P(acceptable) reaches that tier's threshold; when none does, start at the
safe default tier. Thresholds are calibrated to one of three targets:

- ``shares``: a given share of requests starting at each tier (RouteLLM's
  ``calibrate_threshold``, generalised from 2 models to N),
- ``quality``: the cheapest shared threshold whose routed accuracy reaches a share of the
  best tier's accuracy, on labelled data,
- ``cost``: the most accurate shared threshold whose routed cost stays within a share of the
  most expensive tier's cost, on labelled data.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


class RouteTargetKind(enum.Enum):
    SHARES = "shares"
    QUALITY = "quality"
    COST = "cost"


class RouteCalibrationError(ValueError):
    """The target cannot be met or the inputs do not fit together."""


def start_tier(p_ok: np.ndarray, thresholds: Sequence[float]) -> int | None:
    """The first (cheapest) tier whose probability reaches its threshold, else None."""
    for index, (p, t) in enumerate(zip(p_ok, thresholds)):
        if p >= t:
            return index
    return None


class RouteRule(enum.Enum):
    THRESHOLD = "threshold"  # the cheapest tier whose P(acceptable) reaches its threshold
    UTILITY = "utility"  # argmax P(acceptable) - cost_weight * expected cost / dearest cost


def utility_starts(p_ok: np.ndarray, cost: Sequence[float], cost_weight: float) -> np.ndarray:
    """RouterBench's willingness-to-pay rule: per row, the tier maximising P(ok) minus
    ``cost_weight`` times its expected cost relative to the dearest tier's (ties: cheaper)."""
    relative = np.asarray(cost, dtype=float) / max(max(cost), 1e-300)
    return np.argmax(p_ok - cost_weight * relative[None, :], axis=1)


def starts(p_ok: np.ndarray, thresholds: Sequence[float], default: int) -> np.ndarray:
    """``start_tier`` for every row of an (n, tiers) matrix, the default where none passes."""
    passed = p_ok >= np.asarray(thresholds, dtype=float)[None, :]
    first = passed.argmax(axis=1)
    return np.where(passed.any(axis=1), first, default)


def share_thresholds(p_ok: np.ndarray, shares: Sequence[float]) -> tuple[float, ...]:
    """Per-tier thresholds so that, on these predictions, ``shares[i]`` of the requests start
    at tier i: tier 0 takes its share of the highest P(tier 0 ok), tier 1 its share of the
    rest by P(tier 1 ok), and so on; the last tier takes what remains (threshold 0)."""
    n, tiers = p_ok.shape
    if len(shares) != tiers:
        raise RouteCalibrationError(f"{len(shares)} shares for {tiers} tiers")
    if any(s < 0 for s in shares) or not np.isclose(sum(shares), 1.0, atol=1e-6):
        raise RouteCalibrationError(f"shares must be ≥ 0 and sum to 1, not {list(shares)}")
    if n == 0:
        raise RouteCalibrationError("no requests to calibrate on")
    left = np.ones(n, dtype=bool)
    thresholds: list[float] = []
    taken = 0
    for tier in range(tiers - 1):
        want = int(round(sum(shares[: tier + 1]) * n)) - taken
        scores = np.where(left, p_ok[:, tier], -np.inf)
        if want <= 0:
            thresholds.append(float(np.inf))
            continue
        order = np.argsort(-scores, kind="stable")[:want]
        cut = float(scores[order[-1]])
        thresholds.append(cut)
        chosen = left & (p_ok[:, tier] >= cut)
        taken += int(chosen.sum())
        left &= ~chosen
    thresholds.append(0.0)
    return tuple(thresholds)


@dataclass(frozen=True, slots=True)
class RoutedOutcome:
    threshold: float
    cost: float  # mean per request
    accuracy: float
    shares: tuple[float, ...]


def routed(p_ok: np.ndarray, correct: np.ndarray, cost: np.ndarray, threshold: float,
           default: int) -> RoutedOutcome:
    """Route every request with one shared threshold; what it would cost and score."""
    begin = starts(p_ok, [threshold] * p_ok.shape[1], default)
    rows = np.arange(p_ok.shape[0])
    shares = np.bincount(begin, minlength=p_ok.shape[1]) / max(1, p_ok.shape[0])
    return RoutedOutcome(threshold, float(cost[rows, begin].mean()),
                         float(correct[rows, begin].mean()), tuple(float(s) for s in shares))


def target_threshold(p_ok: np.ndarray, correct: np.ndarray, cost: np.ndarray,
                     kind: RouteTargetKind, value: float, default: int) -> RoutedOutcome:
    """The shared threshold meeting a quality or cost target on labelled data."""
    if p_ok.shape != correct.shape or p_ok.shape != cost.shape:
        raise RouteCalibrationError("predictions, labels and costs differ in shape")
    grid = np.unique(np.concatenate([p_ok.ravel(), [0.0, 1.0 + 1e-9]]))
    outcomes = [routed(p_ok, correct, cost, float(t), default) for t in grid]
    if kind is RouteTargetKind.QUALITY:
        goal = value * float(correct.mean(axis=0).max())
        meeting = [o for o in outcomes if o.accuracy >= goal]
        if not meeting:
            raise RouteCalibrationError(f"no threshold reaches {value:.1%} of the best tier's accuracy")
        return min(meeting, key=lambda o: (o.cost, -o.accuracy))
    if kind is RouteTargetKind.COST:
        limit = value * float(cost.mean(axis=0).max())
        within = [o for o in outcomes if o.cost <= limit]
        if not within:
            raise RouteCalibrationError(f"no threshold keeps the cost within {value:.1%} of the "
                                        "dearest tier's")
        return max(within, key=lambda o: (o.accuracy, -o.cost))
    raise RouteCalibrationError(f"{kind} is not a labelled-data target")
