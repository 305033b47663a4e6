"""Scripted providers and estimators for deterministic engine tests."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import anyio
import anyio.lowlevel

from cascade import Choice, Completion, ModelCall, ProviderError
from verifiers import Capability, Estimate, EstimateContext, EstimatorError


class FakeClock:
    """Time that moves only when a scripted provider says so."""

    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Scripted:
    """Answers ``text`` with fixed usage; can fail, or hang for ``delay`` seconds."""

    text: str = "answer"
    input_tokens: int = 10
    output_tokens: int = 5
    fail: Exception | None = None
    delay: float = 0.0
    logprobs: Sequence[float] = (-0.1, -0.2)
    name: str = "scripted"
    calls: list[ModelCall] = field(default_factory=list)
    closed: bool = False
    clock: FakeClock | None = None
    elapse: float = 0.0  # fake seconds each call takes

    @property
    def deployment(self) -> str:
        return f"scripted@{self.name}"

    @property
    def supports_n(self) -> bool:
        return False

    async def complete(self, call: ModelCall) -> Completion:
        self.calls.append(call)
        if self.clock is not None:
            self.clock.advance(self.elapse)
        if self.delay:
            await anyio.sleep(self.delay)
        if self.fail is not None:
            raise self.fail
        choice = Choice(self.text, tuple(self.logprobs) if call.logprobs else None)
        return Completion((choice,), call.model, self.input_tokens, self.output_tokens)

    async def check(self) -> None:
        if isinstance(self.fail, ProviderError):
            raise self.fail

    async def aclose(self) -> None:
        self.closed = True


@dataclass
class Fixed:
    """Returns a fixed confidence, or raises, or hangs."""

    confidence: float = 0.9
    raises: Exception | None = None
    delay: float = 0.0
    seen: list[EstimateContext] = field(default_factory=list)

    @property
    def name(self) -> str:
        return "fixed"

    @property
    def requires(self) -> frozenset[Capability]:
        return frozenset()

    async def estimate(self, ctx: EstimateContext) -> Estimate:
        self.seen.append(ctx)
        if self.delay:
            await anyio.sleep(self.delay)
        if self.raises is not None:
            raise self.raises
        return Estimate(self.confidence)


def boom() -> EstimatorError:
    return EstimatorError("scripted failure")


@dataclass
class Flaky(Scripted):
    """Fails by script: each call takes the next outcome (an exception to raise, or None to
    answer); once the script is used up it answers."""

    script: list[Exception | None] = field(default_factory=list)
    check_delay: float = 0.0

    async def complete(self, call: ModelCall) -> Completion:
        if self.script:
            outcome = self.script.pop(0)
            if outcome is not None:
                self.calls.append(call)
                if self.delay:
                    await anyio.sleep(self.delay)
                raise outcome
        return await super().complete(call)

    async def check(self) -> None:
        if self.check_delay:
            await anyio.sleep(self.check_delay)
        await super().check()


class FakeTime:
    """A monotonic clock and a sleep that advances it at once (for the resilience seam)."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds
        await anyio.lowlevel.checkpoint()
