"""The resilience parts one ``Cascade`` owns: per-deployment state (bulkhead, latency,
circuit breaker), the retry budget, spending budgets and the store they share. Built once
from the policy; ``aclose`` closes the store."""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import anyio

from cascade.policy._resilience import (
    BudgetSpec,
    OnBudgetExhausted,
    RedisStoreSpec,
    ResilienceSpec,
    RetrySpec,
)
from cascade.providers import Provider
from cascade.resilience._breaker import BreakerConfig, BreakerSnapshot, BreakerState, SlidingWindow
from cascade.resilience._budget import BudgetRule, Budgets, BudgetScope, Period
from cascade.resilience._deployments import Bulkhead, DeploymentState
from cascade.resilience._registry import BreakerRegistry
from cascade.resilience._retry_budget import RetryBudget
from cascade.state import FailoverStore, MemoryStore, RedisStore, Store

log = logging.getLogger("cascade.resilience")
Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class DeploymentHealth:
    """One deployment as ``Cascade.health()`` shows it."""

    deployment: str
    state: BreakerState
    open_until: float | None  # on the resilience clock (``time.monotonic`` by default)
    failure_rate: float
    slow_call_rate: float
    calls: int
    trips: int
    in_flight: int
    waiting: int
    latency_ewma_s: float | None

    def to_dict(self) -> dict[str, object]:
        return {"deployment": self.deployment, "state": self.state.value,
                "open_until": self.open_until, "failure_rate": self.failure_rate,
                "slow_call_rate": self.slow_call_rate, "calls": self.calls, "trips": self.trips,
                "in_flight": self.in_flight, "waiting": self.waiting,
                "latency_ewma_s": self.latency_ewma_s}


def breaker_config(spec: ResilienceSpec) -> BreakerConfig:
    b = spec.breaker
    window = SlidingWindow.COUNT if b.window == "count" else SlidingWindow.TIME
    return BreakerConfig(window=window, window_size=b.window_size, minimum_calls=b.minimum_calls,
                         failure_rate=b.failure_rate, slow_call_rate=b.slow_call_rate,
                         slow_call_s=b.slow_call_s, open_s=b.open_s,
                         open_multiplier=b.open_multiplier, max_open_s=b.max_open_s,
                         half_open_calls=b.half_open_calls)


def budget_rules(specs: Sequence[BudgetSpec]) -> tuple[BudgetRule, ...]:
    periods = {"minute": Period.MINUTE, "hour": Period.HOUR, "day": Period.DAY,
               "month": Period.MONTH}
    return tuple(BudgetRule(s.name, BudgetScope.FEATURE if s.scope == "feature"
                            else BudgetScope.CALLER, periods[s.period], usd=s.usd,
                            requests=s.requests, caller_key=s.caller_key) for s in specs)


def build_store(spec: ResilienceSpec, clock: Clock) -> Store:
    store = spec.store
    if isinstance(store, RedisStoreSpec):
        redis = RedisStore(store.url.get_secret_value(), prefix=store.prefix,
                           timeout_s=store.timeout_s)
        return FailoverStore(redis, MemoryStore(clock=clock), retry_s=store.retry_s, clock=clock)
    return MemoryStore(clock=clock)


class Resilience:
    """Everything a run's model calls share within one ``Cascade``."""

    def __init__(self, spec: ResilienceSpec | None = None, budgets: Sequence[BudgetSpec] = (),
                 *, on_budget_exhausted: OnBudgetExhausted = OnBudgetExhausted.BEST_SO_FAR,
                 clock: Clock = time.monotonic, wall_clock: Clock = time.time,
                 sleep: Sleep = anyio.sleep, rng: random.Random | None = None,
                 store: Store | None = None) -> None:
        self.spec = spec = spec or ResilienceSpec()
        self.retry: RetrySpec = spec.retry
        self.clock = clock
        self.sleep = sleep
        self.rng = rng or random.Random()
        self.store = store if store is not None else build_store(spec, clock)
        self.breakers_enabled = spec.breaker.enabled
        self.breakers = BreakerRegistry(breaker_config(spec), clock=clock, wall_clock=wall_clock,
                                        store=self.store)
        self.retry_budget = RetryBudget(self.store, ratio=spec.retry.budget_ratio,
                                        min_retries=spec.retry.budget_min_retries,
                                        window_s=spec.retry.budget_window_s, clock=wall_clock)
        rules = budget_rules(budgets)
        self.budgets = Budgets(rules, self.store, clock=wall_clock) if rules else None
        self.on_budget_exhausted = on_budget_exhausted
        self._warned: dict[str, float] = {}
        self._states: dict[int, DeploymentState] = {}
        self._keys: set[str] = set()
        self._providers: dict[int, Provider] = {}

    def state(self, provider: Provider) -> DeploymentState:
        """The live state of ``provider``'s deployment (created on first use)."""
        found = self._states.get(id(provider))
        if found is not None:
            return found
        key, n = provider.deployment, 1
        while key in self._keys:  # two providers with one name: distinct state
            n += 1
            key = f"{provider.deployment}#{n}"
        self._keys.add(key)
        bulkhead = self.spec.bulkhead
        state = DeploymentState(key, Bulkhead(key, bulkhead.max_in_flight, bulkhead.max_queue))
        self._states[id(provider)] = state
        self._providers[id(provider)] = provider  # keeps the id valid
        return state

    def share_state(self, view: Provider, provider: Provider) -> None:
        """``view`` (another face of ``provider``, e.g. its streaming form) shares its breaker,
        bulkhead and latency state."""
        self._states[id(view)] = self.state(provider)
        self._providers[id(view)] = view

    def warn_once(self, key: str, message: str, *args: object, every_s: float = 60.0) -> None:
        """A warning that would repeat on every call (a spent retry budget) is logged at most
        once per ``every_s`` per key."""
        now = self.clock()
        if now - self._warned.get(key, -math.inf) >= every_s:
            self._warned[key] = now
            log.warning(message, *args)

    def health(self) -> tuple[DeploymentHealth, ...]:
        snapshots: dict[str, BreakerSnapshot] = self.breakers.snapshots()
        out = []
        for state in self._states.values():
            snap = snapshots.get(state.key)
            out.append(DeploymentHealth(
                state.key, snap.state if snap else BreakerState.CLOSED,
                snap.open_until if snap else None, snap.failure_rate if snap else 0.0,
                snap.slow_call_rate if snap else 0.0, snap.calls if snap else 0,
                snap.trips if snap else 0, state.bulkhead.in_flight, state.bulkhead.waiting,
                state.latency.ewma))
        return tuple(out)

    async def aclose(self) -> None:
        await self.store.aclose()
