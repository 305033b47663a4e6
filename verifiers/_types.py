"""The estimator interface: what an estimator is given and what it returns.

``verifiers`` never imports ``cascade``: the engine adapts its own types to these.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal, Protocol, runtime_checkable

Capability = Literal["logprobs", "samples", "ask"]


class EstimatorError(Exception):
    """An estimator could not produce a confidence. The engine records it as low confidence."""


class MissingInputError(EstimatorError):
    """The candidate lacks what the estimator needs (e.g. token logprobs)."""


@dataclass(frozen=True, slots=True)
class Turn:
    role: str
    content: str


@dataclass(frozen=True, slots=True)
class Candidate:
    """An answer to judge, with whatever the provider returned about it."""

    text: str
    model: str = ""
    token_logprobs: tuple[float, ...] | None = None


@dataclass(frozen=True, slots=True)
class Usage:
    """Extra model usage an estimator caused; the engine adds it to the run's cost."""

    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost: float = 0.0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.calls + other.calls,
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.cost + other.cost,
        )


@dataclass(frozen=True, slots=True)
class Sampled:
    """What ``EstimateContext.sample`` returns: the samples and what they cost."""

    candidates: tuple[Candidate, ...]
    usage: Usage


SampleFn = Callable[[int], Awaitable[Sampled]]


@dataclass(frozen=True, slots=True)
class Asked:
    """What ``EstimateContext.ask`` returns: the model's reply and what it cost."""

    text: str
    usage: Usage


AskFn = Callable[[tuple["Turn", ...]], Awaitable[Asked]]


@dataclass(frozen=True, slots=True)
class Peer:
    """Another answer to the same query that the run has already paid for: a fellow member of
    the tier's ensemble, or (``earlier``) an answer of a cheaper tier."""

    source: str  # the model that gave it (the key of learned agreement weights)
    text: str | None  # None: the member failed or timed out
    earlier: bool = False
    tier: str = ""


@dataclass(frozen=True, slots=True)
class EstimateContext:
    """The one state object every estimator receives.

    ``sample(k)`` draws k more answers from the same tier (the engine supplies it);
    it is ``None`` where no sampling is possible. ``ask(messages)`` sends a conversation to
    the model the policy chose for judging (self-rating); ``None`` where there is none.
    ``peers`` are the other answers already paid for in this run (ensemble members, earlier
    tiers): the evidence of the agreement estimator. ``metadata`` is the request's (e.g.
    ``tests`` for code answers).
    """

    query: tuple[Turn, ...]
    candidate: Candidate
    tier: str = ""
    sample: SampleFn | None = None
    ask: AskFn | None = None
    peers: tuple[Peer, ...] = ()
    metadata: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True, slots=True)
class Estimate:
    confidence: float
    usage: Usage = Usage()
    details: Mapping[str, object] = field(default_factory=lambda: MappingProxyType({}))

    def __post_init__(self) -> None:
        if not 0.0 <= self.confidence <= 1.0:
            raise EstimatorError(f"confidence {self.confidence!r} is outside [0, 1]")


@runtime_checkable
class Estimator(Protocol):
    """One main method: how confident are we that ``ctx.candidate`` is acceptable?"""

    @property
    def name(self) -> str: ...

    @property
    def requires(self) -> frozenset[Capability]: ...

    async def estimate(self, ctx: EstimateContext) -> Estimate: ...


def as_turns(pairs: Sequence[tuple[str, str]]) -> tuple[Turn, ...]:
    return tuple(Turn(role, content) for role, content in pairs)
