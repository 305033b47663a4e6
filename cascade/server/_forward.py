"""The ``on_unjudgeable: {action: tier, tier: NAME}`` rule: a request the estimators cannot
judge (tools, response_format, images) is sent as it is to one tier's OpenAI-compatible
deployments, through the call seam (budgets with the caller's key, breakers, bulkheads,
retries), and its answer returned unverified (``cascade.accepted: false``)."""

from __future__ import annotations

import contextvars
import math
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from cascade._tier import Tier
from cascade.engine import Cascade
from cascade.errors import ConfigError
from cascade.providers._openai import parse_chat_completion
from cascade.resilience import Deployment, Resilience, RunScope, Target, call_model
from cascade.types import CallPurpose, Completion, Message, ModelCall

__all__ = ["Forwarded", "check_forwardable", "forward"]

_BODY: contextvars.ContextVar[dict[str, Any]] = contextvars.ContextVar("cascade_forward_body")
_ANSWER: contextvars.ContextVar[list[Any]] = contextvars.ContextVar("cascade_forward_answer")
_VIEWS: weakref.WeakKeyDictionary[Resilience, dict[int, _Forwarding]] = \
    weakref.WeakKeyDictionary()


@runtime_checkable
class Forwarder(Protocol):
    deployment: str

    async def forward(self, body: Mapping[str, Any]) -> Any: ...


@dataclass(frozen=True, slots=True)
class Forwarded:
    data: dict[str, Any]  # the upstream's answer as it came
    tier: Tier
    cost: float
    latency_s: float


class _Forwarding:
    """A forwarding provider seen by the seam as a plain one (shares its state)."""

    def __init__(self, inner: Forwarder) -> None:
        self.inner = inner
        self.deployment = inner.deployment
        self.supports_n = False

    async def complete(self, call: ModelCall) -> Completion:
        data = await self.inner.forward({**_BODY.get(), "model": call.model})
        completion = parse_chat_completion(data, call, self.deployment)
        _ANSWER.get().append(data)
        return completion

    async def check(self) -> None:
        await self.inner.check()  # type: ignore[attr-defined]

    async def aclose(self) -> None:
        """The inner provider belongs to the cascade's factory."""


def check_forwardable(model: str, cascade: Cascade, tier_name: str) -> None:
    tier = next((t for t in cascade.tiers if t.name == tier_name), None)
    if tier is None:
        raise ConfigError(f"gateway config models.{model}.on_unjudgeable.tier: no tier "
                          f"{tier_name!r} (tiers: {[t.name for t in cascade.tiers]})")
    if tier.members or not all(isinstance(p, Forwarder) for p in tier.providers):
        raise ConfigError(f"gateway config models.{model}.on_unjudgeable.tier: tier "
                          f"{tier_name!r} must be one model on OpenAI-compatible deployments")


def _target(resilience: Resilience, tier: Tier) -> Target:
    views = _VIEWS.setdefault(resilience, {})
    deployments = []
    for d in tier.target.deployments:
        view = views.get(id(d.provider))
        if view is None:
            view = views[id(d.provider)] = _Forwarding(d.provider)  # type: ignore[arg-type]
            resilience.share_state(view, d.provider)
        deployments.append(Deployment(view, d.weight, d.context_window))  # type: ignore[arg-type]
    t = tier.target
    return Target(tuple(deployments), t.cost_of, t.timeout_s, t.strategy, price_in=t.price_in,
                  price_out=t.price_out)


async def forward(cascade: Cascade, tier_name: str, body: dict[str, Any],
                  texts: tuple[Mapping[str, str], ...], metadata: Mapping[str, str],
                  max_tokens: int | None) -> Forwarded:
    """Send ``body`` to the tier; ``texts`` (its text turns) size the budget reservation."""
    tier = next(t for t in cascade.tiers if t.name == tier_name)
    r = cascade.resilience
    scope = RunScope(r, cascade.feature, metadata,
                     None if cascade.deadline_s is None else r.clock() + cascade.deadline_s)
    call = ModelCall(tier.model, tuple(Message(m["role"], m["content"]) for m in texts),  # type: ignore[arg-type]
                     max_tokens or tier.max_tokens)
    answers: list[Any] = []
    body_token, answer_token = _BODY.set(body), _ANSWER.set(answers)
    started = r.clock()
    try:
        await call_model(scope, _target(r, tier), call, CallPurpose.TIER, patient=True)
    finally:
        _BODY.reset(body_token)
        _ANSWER.reset(answer_token)
    return Forwarded(answers[-1], tier, math.fsum(e.cost for e in scope.events),
                     r.clock() - started)
