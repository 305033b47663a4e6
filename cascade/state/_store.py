"""The shared-state protocol: counters changed all-or-nothing, maxima raised, nothing else."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from cascade.errors import CascadeError, ConfigError


class StateError(CascadeError):
    """A shared-state operation failed."""


class StoreUnavailableError(StateError):
    """The store cannot be reached (connection refused or reset, timeout). Nothing is known
    about whether the operation was applied. ``FailoverStore`` serves locally on this error."""


class StoreConfigError(StateError, ConfigError):
    """The store cannot be built from its settings (bad URL, redis-py not installed)."""


class InvalidAddError(StateError, ValueError):
    """An ``Add`` or a ``raise_to`` with an unusable value (empty key, NaN, a ttl <= 0).
    ``field`` names the offending field."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(f"{field}: {message}")


def check_key(key: object) -> str:
    if type(key) is str and key:  # the common case, cheaply (this runs on every model call)
        return key
    if not isinstance(key, str) or not key:
        raise InvalidAddError("key", f"a non-empty string is needed, got {key!r}")
    return key


def check_ttl(ttl_s: float | None) -> float | None:
    if ttl_s is None:
        return None
    if type(ttl_s) is float and 0.0 < ttl_s < math.inf:
        return ttl_s
    if isinstance(ttl_s, bool) or not isinstance(ttl_s, int | float) or not math.isfinite(ttl_s) \
            or ttl_s <= 0:
        raise InvalidAddError("ttl_s", f"a finite number of seconds > 0 or None, got {ttl_s!r}")
    return float(ttl_s)


def check_seconds(field: str, value: object) -> float:
    """A setting in seconds (> 0, finite); ``StoreConfigError`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
            or value <= 0:
        raise StoreConfigError(f"{field}: a finite number of seconds > 0 is needed, got {value!r}")
    return float(value)


def check_number(field: str, value: object) -> float:
    if type(value) is float and value - value == 0.0:  # finite (inf - inf and NaN are NaN)
        return value
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidAddError(field, f"a finite number is needed, got {value!r}")
    return float(value)


@dataclass(frozen=True, slots=True)
class Add:
    """One counter change. With ``limit``, the add happens only if ``current + amount <=
    limit``; ``ttl_s`` makes the key expire ``ttl_s`` seconds after it is created (period
    buckets). Invalid values raise ``InvalidAddError`` at construction."""

    key: str
    amount: float
    limit: float | None = None
    ttl_s: float | None = None

    def __post_init__(self) -> None:
        if type(self.key) is str and self.key and type(self.amount) is float \
                and self.amount - self.amount == 0.0 and (self.limit is None or (
                    type(self.limit) is float and self.limit - self.limit == 0.0)) \
                and (self.ttl_s is None or (type(self.ttl_s) is float and
                                            0.0 < self.ttl_s < math.inf)):
            return  # valid floats: the common case, checked cheaply (every model call)
        check_key(self.key)
        check_number("amount", self.amount)
        if self.limit is not None:
            check_number("limit", self.limit)
        check_ttl(self.ttl_s)

    def fits(self, current: float) -> bool:
        """Whether this add may be applied on top of ``current``."""
        return self.limit is None or current + self.amount <= self.limit


@runtime_checkable
class Store(Protocol):
    """Counters and maxima shared by every process that uses the same store.

    Keys are chosen by callers; a store adds its own prefix. Missing keys read as 0.0."""

    async def add(self, adds: Sequence[Add]) -> tuple[bool, tuple[float, ...]]:
        """All-or-nothing and atomic across processes: if every add's limit holds, apply them
        all and return ``(True, new values)``; else apply none and return ``(False, current
        values)``. Several adds to one key are applied in order, each limit checked against
        the value left by the adds before it."""
        ...

    async def get(self, keys: Sequence[str]) -> tuple[float, ...]:
        """Current values; missing (or expired) keys are 0.0."""
        ...

    async def raise_to(self, key: str, value: float, ttl_s: float | None = None) -> float:
        """Atomically ``current = max(current, value)``; returns it. A new cooldown never
        shortens an old one. With ``ttl_s`` the key lives at least ``ttl_s`` more seconds."""
        ...

    async def aclose(self) -> None:
        """Release connections. The store is not used afterwards."""
        ...


__all__ = [
    "Add",
    "InvalidAddError",
    "StateError",
    "Store",
    "StoreConfigError",
    "StoreUnavailableError",
]
