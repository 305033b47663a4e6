"""Envoy-style retry budget: retries may be at most a share of recent first attempts."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from cascade.resilience._breaker import ResilienceConfigError
from cascade.state import Add, Store

_BUCKET_S = 1.0


def _positive(field: str, value: object, *, allow_zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
            or value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ResilienceConfigError(field, f"a finite number {bound} is needed, got {value!r}")
    return float(value)


class RetryBudget:
    """Retries per deployment are allowed while ``retries + 1 <= max(min_retries, ratio *
    requests)``, both counted over the last ``window_s`` seconds (1-second buckets in the
    store, so every process sharing the store shares the budget). ``on_request`` counts a
    first attempt; ``try_retry`` counts and allows a retry, or refuses it.

    Atomicity: past buckets no longer change, so ``try_retry`` reads the window and then adds
    to the current bucket with a limit of what the window leaves: concurrent retries (in
    every process) can never pass the budget together. Requests counted between the read
    and the add only make it stricter. ``clock``: wall-clock seconds (shared bucket names)."""

    def __init__(self, store: Store, *, ratio: float = 0.2, min_retries: int = 3,
                 window_s: float = 10.0, clock: Callable[[], float] = time.time) -> None:
        self._ratio = _positive("ratio", ratio, allow_zero=True)
        if isinstance(min_retries, bool) or not isinstance(min_retries, int) or min_retries < 0:
            raise ResilienceConfigError("min_retries", f"an integer >= 0, got {min_retries!r}")
        self._min_retries = min_retries
        window_s = _positive("window_s", window_s)
        self._buckets = max(1, math.ceil(window_s / _BUCKET_S))
        self._store = store
        self._clock = clock
        self._ttl_s = float((self._buckets + 2) * _BUCKET_S)
        self._request_keys: dict[str, tuple[int, str]] = {}  # deployment -> (bucket, key)

    def __repr__(self) -> str:
        return (f"RetryBudget(ratio={self._ratio}, min_retries={self._min_retries}, "
                f"window_s={self._buckets * _BUCKET_S})")

    def _keys(self, deployment: str, kind: str) -> list[str]:
        if not isinstance(deployment, str) or not deployment:
            raise ResilienceConfigError("deployment", f"a non-empty name, got {deployment!r}")
        now = math.floor(self._clock() / _BUCKET_S)
        return [f"retry:{deployment}:{kind}:{now - i}" for i in range(self._buckets)]

    async def on_request(self, deployment: str) -> None:
        """Count a first attempt to ``deployment``."""
        now = math.floor(self._clock() / _BUCKET_S)
        known = self._request_keys.get(deployment)
        if known is None or known[0] != now:  # a new bucket (or deployment): a new key
            if type(deployment) is not str or not deployment:
                raise ResilienceConfigError("deployment", f"a non-empty name, got {deployment!r}")
            known = self._request_keys[deployment] = (now, f"retry:{deployment}:requests:{now}")
        await self._store.add((Add(known[1], 1.0, None, self._ttl_s),))

    def allowance(self, requests: float) -> float:
        """Retries allowed in a window with ``requests`` first attempts."""
        return max(float(self._min_retries), self._ratio * requests)

    async def try_retry(self, deployment: str) -> bool:
        """True (and the retry counted) when the budget allows one more retry."""
        requests = self._keys(deployment, "requests")
        retries = self._keys(deployment, "retries")
        values = await self._store.get([*requests, *retries])
        past_retries = sum(values[len(requests) + 1:])
        limit = self.allowance(sum(values[:len(requests)])) - past_retries
        ok, _ = await self._store.add([Add(retries[0], 1.0, limit, self._ttl_s)])
        return ok

    async def usage(self, deployment: str) -> tuple[float, float]:
        """(first attempts, retries) in the current window."""
        requests = self._keys(deployment, "requests")
        retries = self._keys(deployment, "retries")
        values = await self._store.get([*requests, *retries])
        return sum(values[:len(requests)]), sum(values[len(requests):])


__all__ = ["RetryBudget"]
