"""Serve on local state while the shared store is unreachable; resynchronise when it returns."""

from __future__ import annotations

import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence

import anyio

from cascade.state._memory import MemoryStore
from cascade.state._store import Add, Store, StoreUnavailableError, check_seconds

_LOG = logging.getLogger("cascade.state")
_KNOWN_KEYS = 10_000  # last values seen on the primary, kept to seed local state in an outage


class FailoverStore:
    """A ``Store`` that never raises ``StoreUnavailableError``.

    It delegates to ``primary``. When the primary is unreachable it logs ONE warning ("shared
    state unreachable; serving on local state"), calls ``on_change(True)`` and serves from
    ``local``, seeded with the last value it saw on the primary for each key (so a budget
    keeps what was spent before the outage). It remembers what it applied locally: the sum of
    each counter's adds and the largest ``raise_to`` of each key. At most every ``retry_s`` it
    tries the primary again; on success it pushes those deltas (as adds without limit: the
    money was spent), raises the maxima, logs the recovery, calls ``on_change(False)`` and
    switches back.

    Caveats (documented in docs/resilience-state.md): while degraded each process enforces
    limits on its own view, so N processes may together overspend a shared limit by up to
    N-1 times what was left of it; an operation that timed out after the primary applied it
    is applied again locally (counted twice, never lost)."""

    def __init__(self, primary: Store, local: MemoryStore | None = None, *, retry_s: float = 5.0,
                 clock: Callable[[], float] = time.monotonic, log: logging.Logger | None = None,
                 on_change: Callable[[bool], None] | None = None) -> None:
        check_seconds("retry_s", retry_s)
        self._primary = primary
        self._local = local if local is not None else MemoryStore(clock)
        self._retry_s = float(retry_s)
        self._clock = clock
        self._log = log if log is not None else _LOG
        self.on_change = on_change
        self._degraded = False
        self._next_try = -math.inf
        self._known: OrderedDict[str, float] = OrderedDict()
        self._seeded: set[str] = set()
        self._deltas: dict[str, tuple[float, float | None]] = {}  # key -> (sum, ttl_s)
        self._maxima: dict[str, tuple[float, float | None]] = {}  # key -> (max, ttl_s)
        self._lock = anyio.Lock()

    def __repr__(self) -> str:
        return f"FailoverStore({self._primary!r}, degraded={self._degraded})"

    @property
    def degraded(self) -> bool:
        """True while serving on local state."""
        return self._degraded

    # --- bookkeeping ----------------------------------------------------------------------

    def _remember(self, keys: Sequence[str], values: Sequence[float]) -> None:
        for key, value in zip(keys, values, strict=True):
            self._known[key] = value
            self._known.move_to_end(key)
        while len(self._known) > _KNOWN_KEYS:
            self._known.popitem(last=False)

    def _seed(self, keys: Sequence[str]) -> None:
        for key in keys:
            if key not in self._seeded:
                self._seeded.add(key)
                known = self._known.get(key, 0.0)
                if known:
                    self._local.apply([Add(key, known)])

    def _enter_degraded(self, error: StoreUnavailableError) -> None:
        self._next_try = self._clock() + self._retry_s
        if self._degraded:
            return
        self._degraded = True
        self._log.warning("shared state unreachable; serving on local state (%s)", error)
        if self.on_change is not None:
            self.on_change(True)

    # --- resynchronisation -----------------------------------------------------------------

    async def _push(self) -> None:
        """Push local deltas and maxima to the primary until none are left."""
        while self._deltas or self._maxima:
            if self._deltas:
                deltas, self._deltas = self._deltas, {}
                values = None
                try:
                    _, values = await self._primary.add(
                        [Add(k, d, None, ttl) for k, (d, ttl) in deltas.items()])
                finally:
                    if values is None:  # failed or cancelled: nothing was applied, keep them
                        for key, (d, ttl) in deltas.items():
                            self._note_delta(key, d, ttl)
                self._remember(list(deltas), values)
            if self._maxima:
                key, (value, ttl) = next(iter(self._maxima.items()))
                await self._primary.raise_to(key, value, ttl)
                if self._maxima.get(key, (math.nan, None))[0] == value:
                    del self._maxima[key]

    async def _maybe_recover(self) -> bool:
        """Try the primary if ``retry_s`` has passed; True when switched back to it."""
        if self._clock() < self._next_try or self._lock.locked():
            return False
        async with self._lock:
            if not self._degraded:
                return True
            try:
                await self._push()
            except StoreUnavailableError as error:
                self._next_try = self._clock() + self._retry_s
                self._log.debug("shared state still unreachable (%s)", error)
                return False
            # no await between the last push and the switch: nothing applied locally is lost
            self._degraded = False
            self._local.clear()
            self._seeded.clear()
        self._log.warning("shared state reachable again; resynchronised, serving on it")
        if self.on_change is not None:
            self.on_change(False)
        return True

    def _note_delta(self, key: str, amount: float, ttl_s: float | None) -> None:
        total, ttl = self._deltas.get(key, (0.0, ttl_s))
        self._deltas[key] = (total + amount, ttl if ttl is not None else ttl_s)

    # --- the Store protocol ------------------------------------------------------------------

    async def add(self, adds: Sequence[Add]) -> tuple[bool, tuple[float, ...]]:
        if not self._degraded or await self._maybe_recover():
            try:
                ok, values = await self._primary.add(adds)
            except StoreUnavailableError as error:
                self._enter_degraded(error)
            else:
                self._remember([a.key for a in adds], values)
                return ok, values
        self._seed([a.key for a in adds])
        ok, values = self._local.apply(adds)
        if ok:
            for item in adds:
                self._note_delta(item.key, item.amount, item.ttl_s)
        return ok, values

    async def get(self, keys: Sequence[str]) -> tuple[float, ...]:
        if not self._degraded or await self._maybe_recover():
            try:
                values = await self._primary.get(keys)
            except StoreUnavailableError as error:
                self._enter_degraded(error)
            else:
                self._remember(keys, values)
                return values
        self._seed(keys)
        return await self._local.get(keys)

    async def raise_to(self, key: str, value: float, ttl_s: float | None = None) -> float:
        if not self._degraded or await self._maybe_recover():
            try:
                result = await self._primary.raise_to(key, value, ttl_s)
            except StoreUnavailableError as error:
                self._enter_degraded(error)
            else:
                self._remember([key], [result])
                return result
        self._seed([key])
        result = self._local.raise_value(key, value, ttl_s)
        old, old_ttl = self._maxima.get(key, (-math.inf, None))
        self._maxima[key] = (max(old, value), ttl_s if ttl_s is not None else old_ttl)
        return result

    async def aclose(self) -> None:
        """Close the primary (and the local store). Deltas not yet pushed are logged as lost."""
        if self._deltas or self._maxima:
            self._log.warning("closing while degraded: %d local counter change(s) not pushed "
                              "to shared state", len(self._deltas) + len(self._maxima))
        await self._primary.aclose()
        await self._local.aclose()


__all__ = ["FailoverStore"]
