"""Which estimator judges an answer: the tier's, or — when the upstream sent no token logprobs
for an answer that a logprob estimator needs — the tier's ``fallback_estimator``, else a loud
``LogprobsUnavailableError`` (never a silent escalation of every request)."""

from __future__ import annotations

from dataclasses import dataclass

from cascade._tier import Tier
from cascade.errors import LogprobsUnavailableError
from cascade.types import Completion
from verifiers import Capability, Estimate, EstimateContext, Estimator

__all__ = ["LogprobFallback", "estimator_for"]


@dataclass(frozen=True, slots=True)
class LogprobFallback:
    """A tier's ``fallback_estimator`` serving an answer without token logprobs; its estimates
    say so in ``details['fallback']``."""

    inner: Estimator

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def requires(self) -> frozenset[Capability]:
        return self.inner.requires

    async def estimate(self, ctx: EstimateContext) -> Estimate:
        estimate = await self.inner.estimate(ctx)
        details = {**estimate.details,
                   "fallback": f"{self.inner.name}: the upstream sent no token logprobs"}
        return Estimate(estimate.confidence, estimate.usage, details)


def estimator_for(tier: Tier, estimator: Estimator, completion: Completion) -> Estimator:
    """``estimator`` (the tier's), unless it needs token logprobs and no choice of
    ``completion`` has any: then the tier's fallback, or ``LogprobsUnavailableError``."""
    if "logprobs" not in estimator.requires or any(
            c.token_logprobs is not None for c in completion.choices):
        return estimator
    if tier.fallback_estimator is None:
        raise LogprobsUnavailableError(tier.name, tier.deployment, estimator.name)
    return LogprobFallback(tier.fallback_estimator)
