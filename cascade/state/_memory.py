"""In-process store: a dict with expiry times from an injected clock."""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable, Sequence

from cascade.state._store import Add, check_key, check_number, check_ttl


class MemoryStore:
    """The default ``Store``: one process, no I/O. Atomic because it never awaits between
    checking and applying. Expired keys read as 0.0 and are purged as the clock passes them.

    ``clock`` is monotonic seconds (injected so tests run on fake time)."""

    __slots__ = ("_clock", "_expiries", "_values")

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._values: dict[str, tuple[float, float | None]] = {}  # key -> (value, expires_at)
        self._expiries: list[tuple[float, str]] = []  # heap; stale entries are skipped

    def __repr__(self) -> str:
        return f"MemoryStore(keys={len(self._values)})"

    def _purge(self, now: float) -> None:
        while self._expiries and self._expiries[0][0] <= now:
            _, key = heapq.heappop(self._expiries)
            entry = self._values.get(key)
            if entry is not None and entry[1] is not None and entry[1] <= now:
                del self._values[key]

    def _set(self, key: str, value: float, expires_at: float | None) -> None:
        self._values[key] = (value, expires_at)
        if expires_at is not None:
            heapq.heappush(self._expiries, (expires_at, key))

    def value(self, key: str) -> float:
        """The current value of ``key`` (0.0 when missing), synchronously."""
        self._purge(self._clock())
        entry = self._values.get(key)
        return 0.0 if entry is None else entry[0]

    def apply(self, adds: Sequence[Add]) -> tuple[bool, tuple[float, ...]]:
        """``add`` without the coroutine: the synchronous core."""
        now = self._clock()
        if self._expiries and self._expiries[0][0] <= now:
            self._purge(now)
        values = self._values
        pending: dict[str, float] = {}
        results: list[float] = []
        ok = True
        for item in adds:
            if type(item) is not Add and not isinstance(item, Add):
                raise TypeError(f"Store.add takes Add objects, got {type(item).__name__}")
            current = pending.get(item.key)
            if current is None:
                entry = values.get(item.key)
                current = 0.0 if entry is None else entry[0]
            if item.limit is not None and current + item.amount > item.limit:
                ok = False
            pending[item.key] = current + item.amount
            results.append(current + item.amount)
        if not ok:
            return False, tuple(self.value(item.key) for item in adds)
        for item in adds:
            entry = values.get(item.key)
            if entry is None:
                expires_at = None if item.ttl_s is None else now + item.ttl_s
                self._set(item.key, item.amount, expires_at)
            else:
                values[item.key] = (entry[0] + item.amount, entry[1])
        return True, tuple(results)

    def raise_value(self, key: str, value: float, ttl_s: float | None = None) -> float:
        """``raise_to`` without the coroutine: the synchronous core."""
        check_key(key)
        value = check_number("value", value)
        ttl_s = check_ttl(ttl_s)
        now = self._clock()
        self._purge(now)
        entry = self._values.get(key)
        current, expires_at = (None, None) if entry is None else entry
        new = value if current is None else max(current, value)
        if ttl_s is not None:
            wanted = now + ttl_s
            if entry is None or (expires_at is not None and expires_at < wanted):
                expires_at = wanted
        if entry is None or new != current or (expires_at != entry[1]):
            self._set(key, new, expires_at)
        return new

    def clear(self) -> None:
        """Forget every key."""
        self._values.clear()
        self._expiries.clear()

    async def add(self, adds: Sequence[Add]) -> tuple[bool, tuple[float, ...]]:
        return self.apply(adds)

    async def get(self, keys: Sequence[str]) -> tuple[float, ...]:
        return tuple(self.value(check_key(key)) for key in keys)

    async def raise_to(self, key: str, value: float, ttl_s: float | None = None) -> float:
        return self.raise_value(key, value, ttl_s)

    async def aclose(self) -> None:
        return None


__all__ = ["MemoryStore"]
