"""Small frozen value types shared by every room of the engine.

Nothing here does I/O or imports another module of ours.
"""

from __future__ import annotations

import enum
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

Role = Literal["system", "user", "assistant"]

_EMPTY: Mapping[str, Any] = MappingProxyType({})
TRUNCATED = frozenset({"length", "max_tokens"})  # finish reasons that mean "cut by max_tokens"


@dataclass(frozen=True, slots=True)
class Message:
    """One turn of a conversation."""

    role: Role
    content: str


@dataclass(frozen=True, slots=True)
class Request:
    """What the caller asked: the whole conversation plus routing metadata."""

    messages: tuple[Message, ...]
    feature: str = "default"
    metadata: Mapping[str, str] = field(default_factory=lambda: _EMPTY)
    # per-request overrides of every tier's settings (None: the tier's own)
    max_tokens: int | None = None
    temperature: float | None = None
    stop: tuple[str, ...] | None = None

    @property
    def text(self) -> str:
        """All turns joined, as routers and estimators see the conversation."""
        return "\n".join(m.content for m in self.messages)

    @property
    def last_user_text(self) -> str:
        for message in reversed(self.messages):
            if message.role == "user":
                return message.content
        return ""


@dataclass(frozen=True, slots=True)
class Choice:
    """One generated answer. ``label`` is the recorded quality in [0, 1] (replay only)."""

    text: str
    token_logprobs: tuple[float, ...] | None = None
    top_logprobs: tuple[Mapping[str, float], ...] | None = None
    finish_reason: str | None = None
    label: float | None = None

    @property
    def truncated(self) -> bool:
        """Cut by the token limit (OpenAI-style ``length``, Anthropic ``max_tokens``)."""
        return self.finish_reason in TRUNCATED


@dataclass(frozen=True, slots=True)
class Completion:
    """What a provider returned for one call (``choices`` has ``n`` entries)."""

    choices: tuple[Choice, ...]
    model: str
    input_tokens: int
    output_tokens: int
    recorded_cost: float | None = None  # replay data carries its own cost
    usage_estimated: bool = False  # True when the provider did not report usage

    @property
    def text(self) -> str:
        return self.choices[0].text


@dataclass(frozen=True, slots=True)
class ModelCall:
    """Everything a provider needs to make one call; built by the engine per attempt."""

    model: str
    messages: tuple[Message, ...]
    max_tokens: int
    temperature: float = 0.0
    stop: tuple[str, ...] = ()
    logprobs: bool = False
    top_logprobs: int = 0
    n: int = 1
    seed: int | None = None
    request: Request | None = None  # the original request (replay keys rows on it)


class Decision(str, enum.Enum):
    """What the engine did with one attempt."""

    ACCEPT = "accept"  # confidence >= threshold (or the tier has no estimator)
    ESCALATE = "escalate"  # below threshold, a higher tier follows
    REJECT = "reject"  # below threshold at the last tier reached
    ERROR = "error"  # the provider failed; the run moves on
    TIMEOUT = "timeout"  # the run's deadline expired during this attempt
    SKIP = "skip"  # the prompt does not fit this tier's context window


class ReplayFormat(str, enum.Enum):
    """Formats of recorded answers the replay provider reads as-is."""

    ROUTERBENCH = "routerbench"  # RouterBench 0-shot CSV, per-query cost
    ROUTELLM = "routellm"  # RouteLLM response CSV, no cost
    MOT = "mot"  # MoT JSON, many samples per question, one model per file


class StopReason(str, enum.Enum):
    ACCEPTED = "accepted"
    EXHAUSTED = "exhausted"  # every tier ran, none accepted: best answer so far
    DEADLINE = "deadline"  # the run's deadline expired: best answer so far
    BUDGET = "budget"  # a spending budget could not afford the next call: best answer so far
    UNAVAILABLE = "unavailable"  # a tier had no available deployment (on_unavailable: best_so_far)
    CONTENT_FILTERED = "content_filtered"  # an upstream's filter refused (on_content_filter: stop)


class CallPurpose(str, enum.Enum):
    """Why a model call was made (every call of a run passes through one seam)."""

    TIER = "tier"  # a tier's answer
    MEMBER = "member"  # one model of an ensemble tier
    SAMPLE = "sample"  # self-consistency samples
    RATER = "rater"  # self-rating
    GRADER = "grader"  # a causal-LLM router's grade


class CallOutcome(str, enum.Enum):
    OK = "ok"
    ERROR = "error"  # the try failed (see ``error``)
    SKIPPED = "skipped"  # the deployment's circuit breaker was open: not called
    SHED = "shed"  # the deployment's bulkhead was full: not called
    DENIED = "denied"  # a spending budget could not afford it: not called
    CANCELLED = "cancelled"  # the run's deadline, or a hedge that lost


@dataclass(frozen=True, slots=True)
class CallEvent:
    """One try of one model call at the call seam: what was called, how it ended, and the
    backoff waited before it (retries have ``retry`` > 0)."""

    purpose: CallPurpose
    deployment: str
    outcome: CallOutcome
    error: str | None = None
    latency_s: float = 0.0
    wait_s: float = 0.0
    retry: int = 0
    hedge: bool = False
    cost: float = 0.0

    def to_dict(self) -> dict[str, object]:
        return {"purpose": self.purpose.value, "deployment": self.deployment,
                "outcome": self.outcome.value, "error": self.error, "latency_s": self.latency_s,
                "wait_s": self.wait_s, "retry": self.retry, "hedge": self.hedge,
                "cost": self.cost}


@dataclass(frozen=True, slots=True)
class MemberAnswer:
    """One model of an ensemble tier: what it answered (None: it failed or timed out) and cost."""

    model: str
    answer: str | None
    cost: float = 0.0
    input_tokens: int = 0
    output_tokens: int = 0
    latency_s: float = 0.0
    error: str | None = None
    label: float | None = None  # recorded quality in [0, 1]: 0/1 or graded (replay data only)
    chosen: bool = False  # this member's answer is the tier's answer
    name: str | None = None  # the member's alias (policy `name:`); None: known by its model

    @property
    def source(self) -> str:
        """The member's identity as agreement evidence: its alias, else its model."""
        return self.name or self.model

    def to_dict(self) -> dict[str, object]:
        return {"model": self.model, "answer": self.answer, "cost": self.cost,
                "input_tokens": self.input_tokens, "output_tokens": self.output_tokens,
                "latency_s": self.latency_s, "error": self.error, "label": self.label,
                "chosen": self.chosen, "name": self.name}


@dataclass(frozen=True, slots=True)
class Attempt:
    """One tier's try, as recorded in the result and the trace."""

    tier: int
    tier_name: str
    model: str
    deployment: str
    decision: Decision
    confidence: float | None
    threshold: float | None
    input_tokens: int = 0
    output_tokens: int = 0
    cost: float = 0.0
    latency_s: float = 0.0
    error: str | None = None
    estimator: str | None = None
    estimator_error: str | None = None
    answer: str | None = None
    details: Mapping[str, object] = field(default_factory=lambda: _EMPTY)
    label: float | None = None  # the answer's recorded quality in [0, 1] (replay data only)
    members: tuple[MemberAnswer, ...] = ()  # an ensemble tier's models (empty otherwise)
    calls: tuple[CallEvent, ...] = ()  # every try of every model call this attempt made

    @property
    def retries(self) -> int:
        """Tries beyond the first, over every call of this attempt."""
        return sum(1 for c in self.calls if c.retry > 0)
    finish_reason: str | None = None  # the provider's: stop, length (truncated), ...; None: unknown


class Climb(enum.Enum):
    """Why a run moved from one tier to the next."""

    ESCALATION = "escalation"  # the tier answered without enough confidence (or truncated)
    FALLBACK = "fallback"  # the tier failed: a provider error, a budget, an open breaker


def climbs(attempts: Sequence[Attempt]) -> tuple[tuple[Attempt, Attempt, Climb], ...]:
    """Each move of a run from one tried tier to the next, and why (skipped tiers are not
    tried: they are passed over, not climbed from)."""
    tried = [a for a in attempts if a.decision is not Decision.SKIP]
    return tuple((a, b, Climb.ESCALATION if a.decision is Decision.ESCALATE else Climb.FALLBACK)
                 for a, b in itertools.pairwise(tried))


class RouteReason(enum.Enum):
    PREDICTED = "predicted"  # the cheapest tier whose predicted P(acceptable) passed its threshold
    RULE = "rule"  # a rule matched
    DEFAULT = "default"  # nothing passed or matched: the policy's safe default tier
    COLD_START = "cold_start"  # the request is far from everything the router was trained on
    FAILED = "failed"  # the router raised, timed out or gave unusable output: the safe default


@dataclass(frozen=True, slots=True)
class TierScore:
    tier: str
    p_ok: float | None  # predicted probability that this tier's answer is acceptable
    expected_cost: float | None  # mean recorded cost of one call, where the router knows it


@dataclass(frozen=True, slots=True)
class RouteDecision:
    """Where a run started and why (``Result.route``)."""

    start: int  # index of the tier the run starts from
    tier: str
    reason: RouteReason
    router: str
    scores: tuple[TierScore, ...] = ()
    similarity: float | None = None  # cosine similarity to the nearest training query
    detail: str | None = None  # the matched rule, the grader's reply, the error
    cost: float = 0.0  # what routing itself cost (a grader model's call), in the run's cost
    latency_s: float = 0.0

    @property
    def cold_start(self) -> bool:
        return self.reason is RouteReason.COLD_START

    def to_dict(self) -> dict[str, object]:
        return {"start": self.start, "tier": self.tier, "reason": self.reason.value,
                "router": self.router, "similarity": self.similarity, "detail": self.detail,
                "cost": self.cost, "latency_s": self.latency_s,
                "scores": [{"tier": s.tier, "p_ok": s.p_ok, "expected_cost": s.expected_cost}
                           for s in self.scores]}


@dataclass(frozen=True, slots=True)
class Result:
    """The outcome of one cascade run."""

    answer: str
    accepted: bool
    stop_reason: StopReason
    tier: int
    tier_name: str
    model: str
    confidence: float | None
    attempts: tuple[Attempt, ...]
    cost: float
    latency_s: float
    escalations: int  # confidence escalations only (``Climb.ESCALATION``)
    trace_id: str
    feature: str
    route: RouteDecision | None = None  # None when the policy does not route
    finish_reason: str | None = None  # of the answer returned (``length``: cut by max_tokens)
    fallbacks: int = 0  # moves to the next tier because a tier failed (``Climb.FALLBACK``)

    @property
    def label(self) -> float | None:
        """The recorded quality in [0, 1] of the answer returned (replay data only)."""
        return next((a.label for a in reversed(self.attempts)
                     if a.tier == self.tier and a.answer is not None), None)

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready view (enums as their values)."""
        return {
            "answer": self.answer,
            "accepted": self.accepted,
            "stop_reason": self.stop_reason.value,
            "tier": self.tier,
            "tier_name": self.tier_name,
            "model": self.model,
            "confidence": self.confidence,
            "cost": self.cost,
            "latency_s": self.latency_s,
            "escalations": self.escalations,
            "fallbacks": self.fallbacks,
            "trace_id": self.trace_id,
            "feature": self.feature,
            "attempts": [attempt_to_dict(a) for a in self.attempts],
            "route": None if self.route is None else self.route.to_dict(),
            "finish_reason": self.finish_reason,
        }


def attempt_to_dict(attempt: Attempt) -> dict[str, object]:
    return {
        "tier": attempt.tier,
        "tier_name": attempt.tier_name,
        "model": attempt.model,
        "deployment": attempt.deployment,
        "decision": attempt.decision.value,
        "confidence": attempt.confidence,
        "threshold": "never" if attempt.threshold == float("inf") else attempt.threshold,
        "input_tokens": attempt.input_tokens,
        "output_tokens": attempt.output_tokens,
        "cost": attempt.cost,
        "latency_s": attempt.latency_s,
        "error": attempt.error,
        "estimator": attempt.estimator,
        "estimator_error": attempt.estimator_error,
        "answer": attempt.answer,
        "details": dict(attempt.details),
        "label": attempt.label,
        "members": [m.to_dict() for m in attempt.members],
        "retries": attempt.retries,
        "calls": [c.to_dict() for c in attempt.calls],
        "finish_reason": attempt.finish_reason,
    }
