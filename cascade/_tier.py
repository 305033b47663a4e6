"""A tier ready to run: a live provider and estimator plus the call settings."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from cascade.policy import (
    HedgeSpec,
    LoadBalancing,
    OnContentFilter,
    OnUnavailable,
    Price,
    RoutingMode,
)
from cascade.providers import Provider, estimate_message_tokens
from cascade.providers._base import with_system_prompt
from cascade.resilience import Deployment, Target
from cascade.routing._types import Router
from cascade.routing._unified import UnifiedSettings
from cascade.types import Completion, Message, ModelCall, Request
from verifiers import Estimator


@dataclass(frozen=True, slots=True)
class Member:
    """One model of an ensemble tier, with its own provider and prices."""

    model: str
    provider: Provider
    price: Price = field(default_factory=Price)
    name: str | None = None  # alias: one model with two prompts or deployments is two members

    @property
    def source(self) -> str:
        return self.name or self.model

    def cost_of(self, completion: Completion) -> float:
        if completion.recorded_cost is not None:
            return completion.recorded_cost
        return self.price.cost(completion.input_tokens, completion.output_tokens)

    def target(self, timeout_s: float) -> Target:
        return Target((Deployment(self.provider),), self.cost_of, timeout_s,
                      price_in=self.price.input_per_1m / 1e6,
                      price_out=self.price.output_per_1m / 1e6)


class Consensus(Protocol):
    """Picks an ensemble's answer among its members' (the agreement estimator is one)."""

    async def choose(self, texts: Sequence[str | None], sources: Sequence[str],
                     metadata: Mapping[str, str]) -> int: ...


@dataclass(frozen=True, slots=True)
class Tier:
    """A tier ready to run: its provider and estimator are live objects. An ensemble tier has
    ``members`` (its ``model`` is their names joined by '+', its ``provider`` the first
    member's) and a ``consensus`` that picks the tier's answer."""

    name: str
    model: str
    provider: Provider
    estimator: Estimator | None = None
    threshold: float | None = None
    price: Price = field(default_factory=Price)
    max_tokens: int = 256
    timeout_s: float = 60.0
    temperature: float = 0.0
    sample_temperature: float = 0.7
    context_window: int | None = None
    system_prompt: str | None = None
    stop: tuple[str, ...] = ()
    logprobs: bool = False
    top_logprobs: int = 0
    n: int = 1
    rater: str | None = None  # the tier whose model answers ``ask`` (self-rating)
    members: tuple[Member, ...] = ()
    consensus: Consensus | None = None
    deployments: tuple[Deployment, ...] = ()  # several deployments (default: just `provider`)
    load_balancing: LoadBalancing = LoadBalancing.WEIGHTED_RANDOM
    on_unavailable: OnUnavailable = OnUnavailable.ESCALATE
    on_content_filter: OnContentFilter = OnContentFilter.ESCALATE
    hedge: HedgeSpec | None = None
    _target: Target | None = field(default=None, init=False, repr=False, compare=False)
    accept_truncated: bool = False  # accept answers cut by max_tokens (finish_reason length)
    degeneracy_checks: bool = True  # echo / loop / empty / unclosed code: confidence 0
    fallback_estimator: Estimator | None = None  # when the upstream returns no token logprobs

    def __post_init__(self) -> None:
        if self.members and (len(self.members) < 2 or self.consensus is None):
            raise ValueError(f"tier {self.name!r}: an ensemble needs at least two members and a consensus")
        if self.deployments and self.deployments[0].provider is not self.provider:
            raise ValueError(f"tier {self.name!r}: `provider` must be the first deployment's")
        object.__setattr__(self, "_target", self._make_target())

    @property
    def target(self) -> Target:
        """Where this tier's calls go (the call seam's view of the tier)."""
        assert self._target is not None  # set in __post_init__
        return self._target

    def _make_target(self) -> Target:
        hedge = self.hedge
        return Target(self.deployments or (Deployment(self.provider),), self.cost_of,
                      self.timeout_s, self.load_balancing,
                      price_in=self.price.input_per_1m / 1e6,
                      price_out=self.price.output_per_1m / 1e6,
                      hedge_after_s=hedge.after_s if hedge else None,
                      hedge_min_samples=hedge.min_samples if hedge else 20)

    @property
    def models(self) -> tuple[str, ...]:
        """Every model this tier calls."""
        return tuple(m.model for m in self.members) or (self.model,)

    @property
    def providers(self) -> tuple[Provider, ...]:
        if self.members:
            return tuple(m.provider for m in self.members)
        return tuple(d.provider for d in self.deployments) or (self.provider,)

    @property
    def deployment(self) -> str:
        names = dict.fromkeys(p.deployment for p in self.providers)
        return ",".join(names)

    def call_for(self, request: Request) -> ModelCall:
        wants_logprobs = self.logprobs or (
            self.estimator is not None and "logprobs" in self.estimator.requires)
        return ModelCall(self.model, with_system_prompt(request.messages, self.system_prompt),
                         request.max_tokens or self.max_tokens,
                         self.temperature if request.temperature is None else request.temperature,
                         self.stop if request.stop is None else request.stop, wants_logprobs,
                         self.top_logprobs, self.n, None, request)

    def cost_of(self, completion: Completion) -> float:
        """Recorded cost (replay) or tokens × this tier's prices."""
        if completion.recorded_cost is not None:
            return completion.recorded_cost
        return self.price.cost(completion.input_tokens, completion.output_tokens)

    def fits(self, messages: tuple[Message, ...], max_tokens: int | None = None) -> bool:
        if self.context_window is None:
            return True
        needed = estimate_message_tokens(with_system_prompt(messages, self.system_prompt))
        return needed + (max_tokens or self.max_tokens) <= self.context_window


@dataclass(frozen=True, slots=True)
class Routing:
    """A policy's routing, ready to run: the router, the mode, and the grader model (causal-LLM
    routers) whose calls are costed into the run."""

    router: Router
    mode: RoutingMode = RoutingMode.BOTH
    timeout_s: float = 5.0
    max_chars: int = 500
    grader: Tier | None = None
    unified: UnifiedSettings | None = None  # mode unified: the per-step decision
