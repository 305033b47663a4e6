"""Deployments of a tier's model and their local runtime state: a bulkhead (calls in flight,
a bounded wait queue), latency statistics (EWMA, p95), and the order in which healthy
deployments are tried (pure, given the state)."""

from __future__ import annotations

import bisect
import random
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import anyio

from cascade.errors import BulkheadFullError
from cascade.policy._resilience import LoadBalancing
from cascade.providers import Provider
from cascade.types import Completion


@dataclass(frozen=True, slots=True)
class Deployment:
    """One endpoint serving a tier's model (static: what the policy says)."""

    provider: Provider
    weight: float = 1.0
    context_window: int | None = None

    @property
    def name(self) -> str:
        return self.provider.deployment


@dataclass(frozen=True, slots=True)
class Target:
    """Where one model call goes: the deployments that can serve it, in the policy's order,
    how they share calls, what an answer costs, and how long one try may take."""

    deployments: tuple[Deployment, ...]
    cost_of: Callable[[Completion], float]
    timeout_s: float
    strategy: LoadBalancing = LoadBalancing.WEIGHTED_RANDOM
    price_in: float = 0.0  # USD per input token (worst-case reservations)
    price_out: float = 0.0  # USD per output token
    hedge_after_s: float | str | None = None  # seconds, "p95", or no hedging
    hedge_min_samples: int = 20

    def __post_init__(self) -> None:
        if not self.deployments:
            raise ValueError("a target needs at least one deployment")


class Bulkhead:
    """At most ``max_in_flight`` calls at once; up to ``max_queue`` callers wait (FIFO, within
    their run's deadline); beyond that a call is shed with ``BulkheadFullError``."""

    def __init__(self, deployment: str, max_in_flight: int, max_queue: int) -> None:
        self.deployment = deployment
        self.max_in_flight = max_in_flight
        self.max_queue = max_queue
        self._semaphore = anyio.Semaphore(max_in_flight)
        self.in_flight = 0
        self.waiting = 0

    def try_acquire(self) -> bool:
        """Take a free slot at once if there is one and nobody waits (no checkpoint);
        False: call ``acquire``."""
        if self._semaphore.value > 0 and not self.waiting:
            self._semaphore.acquire_nowait()
            self.in_flight += 1
            return True
        return False

    async def acquire(self) -> None:
        """Take a slot: at once when one is free and nobody waits, else queue (FIFO); shed
        with ``BulkheadFullError`` when the queue is full. Pair with ``release``."""
        if self._semaphore.value > 0 and not self.waiting:
            self._semaphore.acquire_nowait()  # a free slot and nobody queued: no checkpoint
        else:
            if self.waiting >= self.max_queue:
                raise BulkheadFullError(self.deployment, f"{self.in_flight} calls in flight "
                                        f"and {self.waiting} waiting: load shed")
            self.waiting += 1
            try:
                await self._semaphore.acquire()
            finally:
                self.waiting -= 1
        self.in_flight += 1

    def release(self) -> None:
        self.in_flight -= 1
        self._semaphore.release()


class Latency:
    """Successful calls' latency: an EWMA and the recent window's p95."""

    def __init__(self, alpha: float = 0.2, keep: int = 200) -> None:
        self.alpha = alpha
        self.ewma: float | None = None
        self._recent: deque[float] = deque(maxlen=keep)

    def observe(self, seconds: float) -> None:
        self.ewma = seconds if self.ewma is None else self.ewma + self.alpha * (seconds - self.ewma)
        self._recent.append(seconds)

    @property
    def samples(self) -> int:
        return len(self._recent)

    def p95(self) -> float | None:
        if not self._recent:
            return None
        ordered = sorted(self._recent)
        return ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]


@dataclass(slots=True)
class DeploymentState:
    """The live state of one deployment, shared by every tier and run of a ``Cascade``."""

    key: str  # unique within the Cascade (the deployment name, suffixed if two share it)
    bulkhead: Bulkhead
    latency: Latency = field(default_factory=Latency)


def order(deployments: Sequence[Deployment], states: Sequence[DeploymentState],
          strategy: LoadBalancing, rng: random.Random) -> list[int]:
    """Indexes of ``deployments`` in the order to try them (pure given the state and rng):
    weighted random without replacement, fewest in flight, or lowest latency EWMA (untried
    first). Ties keep the policy's order."""
    if len(deployments) == 1:
        return [0]
    indexes = list(range(len(deployments)))
    match strategy:
        case LoadBalancing.WEIGHTED_RANDOM:
            return _weighted_shuffle(indexes, [deployments[i].weight for i in indexes], rng)
        case LoadBalancing.LEAST_IN_FLIGHT:
            return sorted(indexes, key=lambda i: states[i].bulkhead.in_flight
                          + states[i].bulkhead.waiting)
        case LoadBalancing.LOWEST_LATENCY:
            return sorted(indexes, key=lambda i: (states[i].latency.ewma is not None,
                                                  states[i].latency.ewma or 0.0))
    raise TypeError(f"no order for {strategy!r}")  # unreachable: the enum is closed


def _weighted_shuffle(indexes: list[int], weights: list[float], rng: random.Random) -> list[int]:
    chosen: list[int] = []
    left, w = list(indexes), list(weights)
    while left:
        if len(left) == 1:
            chosen.append(left.pop())
            break
        cumulative = []
        total = 0.0
        for weight in w:
            total += weight
            cumulative.append(total)
        at = bisect.bisect_right(cumulative, rng.random() * total)
        at = min(at, len(left) - 1)
        chosen.append(left.pop(at))
        w.pop(at)
    return chosen
