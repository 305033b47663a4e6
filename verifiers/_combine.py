"""Several estimators on one tier: min, weighted mean, or a learned logistic stacker."""

from __future__ import annotations

import enum
import math
from collections.abc import Sequence
from dataclasses import dataclass

import anyio
import numpy as np

from verifiers._types import Capability, Estimate, EstimateContext, Estimator, EstimatorError, Usage


class CombineMethod(str, enum.Enum):
    MIN = "min"
    WEIGHTED_MEAN = "weighted_mean"
    STACKER = "stacker"


def _logit(p: float) -> float:
    p = min(1 - 1e-4, max(1e-4, p))
    return math.log(p / (1 - p))


def combine(confidences: Sequence[float], method: CombineMethod,
            weights: Sequence[float] | None = None, intercept: float = 0.0) -> float:
    """Pure: the combined confidence."""
    if method is CombineMethod.MIN:
        return min(confidences)
    if method is CombineMethod.WEIGHTED_MEAN:
        w = [1.0] * len(confidences) if weights is None else list(weights)
        return math.fsum(c * x for c, x in zip(confidences, w)) / math.fsum(w)
    if weights is None:
        raise ValueError("a stacker needs weights")
    z = intercept + math.fsum(w * _logit(c) for w, c in zip(weights, confidences))
    return 1.0 / (1.0 + math.exp(-z))


def fit_stacker(confidences: np.ndarray, correct: np.ndarray, *, c: float = 1.0) -> tuple[tuple[float, ...], float]:
    """Logistic regression on the members' logit confidences: (weights, intercept)."""
    from sklearn.linear_model import LogisticRegression

    x = np.vectorize(_logit)(np.asarray(confidences, dtype=float))
    y = np.asarray(correct).astype(int)
    if len(set(y.tolist())) < 2:
        raise ValueError("the stacker needs both correct and wrong examples")
    model = LogisticRegression(C=c).fit(x, y)
    return tuple(float(v) for v in model.coef_[0]), float(model.intercept_[0])


@dataclass(frozen=True, slots=True)
class CombinedEstimator:
    members: tuple[Estimator, ...]
    method: CombineMethod = CombineMethod.MIN
    weights: tuple[float, ...] | None = None
    intercept: float = 0.0

    def __post_init__(self) -> None:
        if len(self.members) < 2:
            raise ValueError("combine at least two estimators")
        if self.weights is not None:
            if len(self.weights) != len(self.members):
                raise ValueError(f"{len(self.weights)} weights for {len(self.members)} members")
            if self.method is CombineMethod.WEIGHTED_MEAN and (
                    min(self.weights) < 0 or not math.fsum(self.weights) > 0):
                raise ValueError("weighted-mean weights must be non-negative and not all zero")
        elif self.method is CombineMethod.STACKER:
            raise ValueError("a stacker needs weights (fit_stacker)")

    @property
    def name(self) -> str:
        return f"{self.method.value}({','.join(m.name for m in self.members)})"

    @property
    def requires(self) -> frozenset[Capability]:
        return frozenset().union(*(m.requires for m in self.members))

    async def estimate(self, ctx: EstimateContext) -> Estimate:
        results: list[Estimate | EstimatorError | None] = [None] * len(self.members)

        async def one(i: int) -> None:
            try:
                results[i] = await self.members[i].estimate(ctx)
            except EstimatorError as exc:  # a member that cannot judge counts as confidence 0
                results[i] = exc

        async with anyio.create_task_group() as group:
            for i in range(len(self.members)):
                group.start_soon(one, i)
        confidences, usage, details = [], Usage(), {}
        for member, result in zip(self.members, results):
            if isinstance(result, Estimate):
                confidences.append(result.confidence)
                usage = usage + result.usage
                details[member.name] = result.confidence
            else:
                confidences.append(0.0)
                details[member.name] = f"failed: {type(result).__name__}: {result}"
        value = combine(confidences, self.method, self.weights, self.intercept)
        return Estimate(min(1.0, max(0.0, value)), usage, {"method": self.method.value, "members": details})
