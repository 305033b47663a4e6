"""Shared state: one small ``Store`` protocol (atomic all-or-nothing counter adds, monotonic
maxima) with an in-memory default, a Redis implementation for several processes or hosts, and
a failover wrapper that serves on local state while Redis is unreachable.

``RedisStore`` imports redis-py only when built (the ``[redis]`` extra)."""

from cascade.state._failover import FailoverStore
from cascade.state._memory import MemoryStore
from cascade.state._redis import RedisStore, redact_url
from cascade.state._store import (
    Add,
    InvalidAddError,
    StateError,
    Store,
    StoreConfigError,
    StoreUnavailableError,
)

__all__ = [
    "Add",
    "FailoverStore",
    "InvalidAddError",
    "MemoryStore",
    "RedisStore",
    "StateError",
    "Store",
    "StoreConfigError",
    "StoreUnavailableError",
    "redact_url",
]
