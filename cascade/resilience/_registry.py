"""One circuit breaker per deployment, optionally shared between processes through a Store."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from cascade.resilience._breaker import (
    BreakerConfig,
    BreakerSnapshot,
    BreakerState,
    CircuitBreaker,
    ResilienceConfigError,
    Transition,
)
from cascade.state import Store

_KEY_GRACE_S = 60.0  # a shared open_until key outlives the cooldown by this much


def open_until_key(deployment: str) -> str:
    """The store key holding a deployment's shared open-until time (wall-clock seconds)."""
    return f"breaker:{deployment}:open_until"


@dataclass(slots=True)
class _Sync:
    last: float = -math.inf
    published: float = -math.inf  # wall-clock open_until last raised in the store


class BreakerRegistry:
    """Holds one ``CircuitBreaker`` per deployment name, built on first ``get``.

    ``config`` is the default; ``configs`` overrides it per deployment. ``clock`` is the
    breakers' monotonic clock; ``wall_clock`` converts open-until times to and from the
    store, which holds wall-clock seconds so that processes (and hosts) agree.

    With a ``store``, breakers are shared: ``sync(deployment)`` (call it before acquiring;
    it does I/O at most every ``sync_s`` per deployment) trips the local breaker when the
    shared open-until is later than its own, and ``publish(deployment)`` (call it when the
    local breaker opened) raises the shared open-until to the local one. Only OPEN cooldowns
    are shared; counts and FORCED_OPEN stay local."""

    def __init__(self, config: BreakerConfig | None = None, *,
                 clock: Callable[[], float] = time.monotonic,
                 wall_clock: Callable[[], float] = time.time, store: Store | None = None,
                 sync_s: float = 1.0, configs: Mapping[str, BreakerConfig] | None = None) -> None:
        self._config = config if config is not None else BreakerConfig()
        self._configs = dict(configs or {})
        named = [(f"configs[{name!r}]", value) for name, value in self._configs.items()]
        for name, value in [("config", self._config), *named]:
            if not isinstance(value, BreakerConfig):
                raise ResilienceConfigError(name, f"a BreakerConfig is needed, got {value!r}")
        if isinstance(sync_s, bool) or not isinstance(sync_s, int | float) \
                or not math.isfinite(sync_s) or sync_s < 0:
            raise ResilienceConfigError("sync_s", f"a number of seconds >= 0, got {sync_s!r}")
        self._clock = clock
        self._wall_clock = wall_clock
        self._store = store
        self._sync_s = float(sync_s)
        self._breakers: dict[str, CircuitBreaker] = {}
        self._sync: dict[str, _Sync] = {}

    def __repr__(self) -> str:
        shared = self._store is not None
        return f"BreakerRegistry({len(self._breakers)} deployments, shared={shared})"

    def get(self, deployment: str) -> CircuitBreaker:
        breaker = self._breakers.get(deployment)
        if breaker is None:
            if not isinstance(deployment, str) or not deployment:
                raise ResilienceConfigError("deployment", f"a non-empty name, got {deployment!r}")
            config = self._configs.get(deployment, self._config)
            breaker = self._breakers[deployment] = CircuitBreaker(config, self._clock)
        return breaker

    def snapshots(self) -> dict[str, BreakerSnapshot]:
        """Every deployment's breaker state, by deployment name."""
        return {name: breaker.snapshot() for name, breaker in self._breakers.items()}

    def _to_wall(self, monotonic: float) -> float:
        return self._wall_clock() + (monotonic - self._clock())

    def _to_local(self, wall: float) -> float:
        return self._clock() + (wall - self._wall_clock())

    def sync_due(self, deployment: str) -> bool:
        """Whether ``sync`` would read the store now (a shared store, ``sync_s`` elapsed):
        the request path awaits ``sync`` only then."""
        if self._store is None:
            return False
        state = self._sync.get(deployment)
        return state is None or self._clock() - state.last >= self._sync_s

    async def sync(self, deployment: str) -> Transition | None:
        """Adopt another process's cooldown: read the shared open-until (at most every
        ``sync_s``) and trip the local breaker if it is later. Returns the transition."""
        breaker = self.get(deployment)
        if self._store is None:
            return None
        state = self._sync.setdefault(deployment, _Sync())
        now = self._clock()
        if now - state.last < self._sync_s:
            return None
        state.last = now
        (shared,) = await self._store.get([open_until_key(deployment)])
        if shared <= state.published + 1e-3:
            return None  # ours, or older than ours
        until = self._to_local(shared)
        local = breaker.open_until
        if until <= self._clock() + 1e-3 or (local is not None and until <= local + 1e-3):
            return None
        return breaker.trip(until, "shared state: opened by another process")

    async def publish(self, deployment: str) -> float | None:
        """Raise the shared open-until to this process's (when its breaker is OPEN). Returns
        the shared value (wall-clock seconds), or None when there is nothing to publish."""
        breaker = self.get(deployment)
        until = breaker.open_until
        if self._store is None or breaker.state is not BreakerState.OPEN or until is None:
            return None
        wall = self._to_wall(until)
        ttl = max(until - self._clock(), 0.0) + _KEY_GRACE_S
        shared = await self._store.raise_to(open_until_key(deployment), wall, ttl)
        state = self._sync.setdefault(deployment, _Sync())
        state.published = max(state.published, wall)
        return shared


__all__ = ["BreakerRegistry", "open_until_key"]
