"""What observers are told: plain, frozen records (no I/O, no OpenTelemetry).

``RunInfo`` and ``AttemptInfo`` identify a run and one of its attempts; the seam events
(``RetryEvent``, ``FallbackEvent``, ``BreakerTransition``, ``BudgetDecision``) come from the
resilience seam (``cascade.resilience``) while a model call is under way."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field

from cascade.types import Request


@dataclass(frozen=True, slots=True, eq=False)
class RunInfo:
    """One run: the observers' key for whatever they keep per run (compared by identity)."""

    feature: str
    request: Request
    id: str = field(default_factory=lambda: f"{random.getrandbits(128):032x}")
    started_ns: int = field(default_factory=time.time_ns)  # wall clock, for spans


@dataclass(frozen=True, slots=True, eq=False)
class AttemptInfo:
    """One tier's attempt within a run, as it starts (what will be asked of which model)."""

    run: RunInfo
    tier: int
    tier_name: str
    model: str
    max_tokens: int
    temperature: float
    server_address: str | None = None  # host of the first deployment (None: in-process)
    server_port: int | None = None


@dataclass(frozen=True, slots=True)
class EstimateInfo:
    """An estimator's verdict on one attempt's answer, with what it cost.

    ``error`` is set (and ``confidence`` is None) when the estimator failed or timed out;
    ``calls`` counts the model calls it made (self-rating, samples)."""

    estimator: str
    confidence: float | None
    threshold: float | None
    accepted: bool
    cost: float = 0.0
    input_tokens: int = 0
    output_tokens: int = 0
    calls: int = 0
    error: str | None = None
    started_ns: int = 0
    ended_ns: int = 0


@dataclass(frozen=True, slots=True)
class RetryEvent:
    """A model call is tried again on ``deployment`` after ``wait_s`` of backoff."""

    deployment: str
    retry: int  # 1 for the first retry
    wait_s: float
    error: str  # the error type that caused it


@dataclass(frozen=True, slots=True)
class FallbackEvent:
    """A deployment failed (``error``) and the call moves on to another deployment of the
    same tier. A tier-to-tier fallback after an error is an ``Attempt`` with decision error
    followed by the next tier's attempt (``Result.fallbacks``)."""

    deployment: str
    error: str
    retryable: bool


@dataclass(frozen=True, slots=True)
class BreakerTransition:
    deployment: str
    old: str  # BreakerState values: closed, open, half_open, forced_open
    new: str
    reason: str


@dataclass(frozen=True, slots=True)
class BudgetDecision:
    """A spending budget allowed or denied a call's worst-case cost."""

    deployment: str
    allowed: bool
    worst_cost: float
    budget: str | None = None  # the budget that denied it


SeamEvent = RetryEvent | FallbackEvent | BreakerTransition | BudgetDecision

__all__ = ["AttemptInfo", "BreakerTransition", "BudgetDecision", "EstimateInfo",
           "FallbackEvent", "RetryEvent", "RunInfo", "SeamEvent"]
