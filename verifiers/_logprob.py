"""Token-logprob confidence (Gupta et al. 2024, "Language Model Cascades: Token-level
uncertainty and beyond"): a statistic of the answer's token logprobs, mapped to a probability."""

from __future__ import annotations

import enum
import math
from collections.abc import Sequence
from dataclasses import dataclass

from verifiers._types import Capability, Estimate, EstimateContext, MissingInputError


class LogprobStatistic(str, enum.Enum):
    MEAN = "mean"  # exp(mean logprob): geometric-mean token probability
    MIN = "min"  # probability of the least likely token
    QUANTILE = "quantile"  # exp(q-quantile of the logprobs), e.g. q=0.1


def summarise(logprobs: Sequence[float], statistic: LogprobStatistic, q: float = 0.1) -> float:
    """The chosen statistic of ``logprobs`` (pure; raises on empty input)."""
    if not logprobs:
        raise MissingInputError("the answer has no token logprobs")
    if statistic is LogprobStatistic.MEAN:
        return math.fsum(logprobs) / len(logprobs)
    if statistic is LogprobStatistic.MIN:
        return min(logprobs)
    ordered = sorted(logprobs)
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@dataclass(frozen=True, slots=True)
class TokenLogprobEstimator:
    """Confidence = exp(statistic of token logprobs), in [0, 1]."""

    statistic: LogprobStatistic = LogprobStatistic.MEAN
    quantile: float = 0.1

    @property
    def name(self) -> str:
        if self.statistic is LogprobStatistic.QUANTILE:
            return f"logprob-q{self.quantile:g}"
        return f"logprob-{self.statistic.value}"

    @property
    def requires(self) -> frozenset[Capability]:
        return frozenset({"logprobs"})

    async def estimate(self, ctx: EstimateContext) -> Estimate:
        logprobs = ctx.candidate.token_logprobs
        if logprobs is None:
            raise MissingInputError("the provider returned no token logprobs for this answer")
        value = summarise(logprobs, self.statistic, self.quantile)
        confidence = min(1.0, max(0.0, math.exp(min(0.0, value))))
        return Estimate(
            confidence,
            details={"statistic": self.statistic.value, "value": value, "tokens": len(logprobs)},
        )
