"""Which estimator judges an answer: the tier's, or — when the upstream sent no token logprobs
for an answer that a logprob estimator needs — the tier's ``fallback_estimator``, else a loud
``LogprobsUnavailableError`` (never a silent escalation of every request). ``probe_logprobs``
finds out before any request (``cascade check``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from cascade._tier import Tier
from cascade.errors import LogprobsUnavailableError
from cascade.types import Completion, Message, ModelCall
from verifiers import Capability, Estimate, EstimateContext, Estimator

__all__ = ["LogprobFallback", "Served", "estimator_for", "probe_logprobs"]


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


@dataclass(frozen=True, slots=True)
class Served:
    """Whether a tier's upstream serves what its estimator needs (``cascade check``)."""

    tier: str
    deployment: str
    estimator: str | None
    needs_logprobs: bool
    has_logprobs: bool | None  # None: not asked (the estimator does not need them)
    fallback: str | None  # the fallback estimator's name, if the tier has one

    @property
    def ok(self) -> bool:
        return not self.needs_logprobs or bool(self.has_logprobs) or self.fallback is not None


_PROBE = (Message("user", "Reply with the word OK."),)


async def probe_logprobs(tiers: Sequence[Tier]) -> list[Served]:
    """Ask each tier whose estimator needs token logprobs for a one-token answer with
    logprobs, and report whether they came (one tiny billed call per such tier; a provider
    error is raised as itself)."""
    served = []
    for tier in tiers:
        estimator = tier.estimator
        needs = estimator is not None and "logprobs" in estimator.requires
        has = None
        if needs:
            call = ModelCall(tier.model, _PROBE, max_tokens=1, logprobs=True)
            completion = await tier.provider.complete(call)
            has = any(c.token_logprobs is not None for c in completion.choices)
        fallback = tier.fallback_estimator.name if tier.fallback_estimator is not None else None
        served.append(Served(tier.name, tier.deployment, estimator.name if estimator else None,
                             needs, has, fallback))
    return served
