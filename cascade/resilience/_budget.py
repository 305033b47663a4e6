"""Spending budgets: reserve the worst case atomically before a call, settle the real cost after."""

from __future__ import annotations

import enum
import functools
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote

from cascade.resilience._breaker import ResilienceConfigError, ResilienceValueError
from cascade.state import Add, Store


class BudgetArgumentError(ResilienceValueError):
    """``reserve`` / ``settle`` got an unusable amount (negative, NaN). ``field`` names it."""


class Period(enum.Enum):
    """A budget's period; buckets start on wall-clock UTC boundaries (MONTH: calendar month)."""

    MINUTE = "minute"
    HOUR = "hour"
    DAY = "day"
    MONTH = "month"


class BudgetScope(enum.Enum):
    FEATURE = "feature"  # one counter per feature
    CALLER = "caller"  # one counter per value of ``metadata[caller_key]``


_SECONDS = {Period.MINUTE: 60, Period.HOUR: 3600, Period.DAY: 86400}
_KEY_GRACE_S = 3600.0  # counters outlive their period by this much, for late settles
_MAX_PLANS = 4096  # (feature, caller) key plans cached per Budgets


def bucket(period: Period, now: float) -> tuple[float, float]:
    """The ``[start, end)`` of the period bucket holding ``now`` (UTC seconds)."""
    match period:
        case Period.MINUTE | Period.HOUR | Period.DAY:
            length = _SECONDS[period]
            start = math.floor(now / length) * length
            return float(start), float(start + length)
        case Period.MONTH:
            day = datetime.fromtimestamp(now, UTC)
            start = datetime(day.year, day.month, 1, tzinfo=UTC)
            end = datetime(day.year + (day.month == 12), day.month % 12 + 1, 1, tzinfo=UTC)
            return start.timestamp(), end.timestamp()


@dataclass(frozen=True, slots=True)
class BudgetRule:
    """A limit in dollars and/or requests per period. FEATURE scope: one counter per feature.
    CALLER scope: one counter per value of ``metadata[caller_key]``; a request whose metadata
    lacks that field is not limited by the rule. Counters are per feature too unless
    ``across_features`` (then one caller's spending on every feature sharing the rule name
    counts together)."""

    name: str
    scope: BudgetScope
    period: Period
    usd: float | None = None
    requests: int | None = None
    caller_key: str = "caller"
    across_features: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ResilienceConfigError("name", f"a non-empty string, got {self.name!r}")
        if not isinstance(self.scope, BudgetScope):
            raise ResilienceConfigError("scope", f"a BudgetScope is needed, got {self.scope!r}")
        if not isinstance(self.period, Period):
            raise ResilienceConfigError("period", f"a Period is needed, got {self.period!r}")
        if self.usd is None and self.requests is None:
            raise ResilienceConfigError("usd", f"rule {self.name!r} limits nothing: give usd "
                                        "and/or requests")
        if self.usd is not None and (isinstance(self.usd, bool) or not isinstance(
                self.usd, int | float) or not math.isfinite(self.usd) or self.usd < 0):
            raise ResilienceConfigError("usd", f"a finite amount >= 0, got {self.usd!r}")
        if self.requests is not None and (isinstance(self.requests, bool) or not isinstance(
                self.requests, int) or self.requests < 0):
            raise ResilienceConfigError("requests", f"an integer >= 0, got {self.requests!r}")
        if not isinstance(self.caller_key, str) or not self.caller_key:
            raise ResilienceConfigError("caller_key",
                                        f"a non-empty string, got {self.caller_key!r}")

    def describe(self) -> str:
        """E.g. ``daily (caller, day, $5.00, 100 requests)``: for ``BudgetExceededError.limit``."""
        parts = [self.scope.value, self.period.value]
        if self.usd is not None:
            parts.append(f"${self.usd:.2f}")
        if self.requests is not None:
            parts.append(f"{self.requests} requests")
        return f"{self.name} ({', '.join(parts)})"


@dataclass(frozen=True, slots=True)
class Reservation:
    """What ``reserve`` took: the counter adds and the dollars. Settle it exactly once."""

    adds: tuple[Add, ...]
    usd: float


@dataclass(frozen=True, slots=True)
class Denied:
    """The first rule whose limit the reservation would break, with what is left of it."""

    rule: BudgetRule
    remaining_usd: float | None
    remaining_requests: int | None


_USD, _REQUESTS = "usd", "requests"


def _amount(field: str, value: object) -> float:
    if type(value) is float and 0.0 <= value < math.inf:
        return value
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
            or value < 0:
        raise BudgetArgumentError(field, f"a finite amount >= 0 is needed, got {value!r}")
    return float(value)


@functools.lru_cache(maxsize=8192)
def _stem(name: str, feature: str | None, caller: str | None) -> str:
    """``budget:<rule>[:<feature>][:<caller>]`` with every part quoted (cached: the same
    few names recur on every call)."""
    parts = ["budget", _quoted(name)]
    if feature is not None:
        parts.append(_quoted(feature))
    if caller is not None:
        parts.append(_quoted(caller))
    return ":".join(parts)


@functools.lru_cache(maxsize=4096)
def _quoted(part: str) -> str:
    """A key part with ':' and every unsafe character escaped (cached: the same few names
    recur on every call)."""
    return quote(part, safe="")


class Budgets:
    """Every spending budget of a deployment of cascade, on one ``Store``.

    ``reserve`` takes the worst-case cost of a call from every applicable counter in ONE
    atomic ``store.add`` (all or nothing); ``settle`` adds the difference between the real
    and the reserved cost, without limit. So a budget is never exceeded as long as each real
    cost is at most its reservation, under any concurrency and across processes sharing
    the store. ``clock`` is wall-clock UTC seconds (period buckets)."""

    def __init__(self, rules: Sequence[BudgetRule], store: Store, *,
                 clock: Callable[[], float] = time.time) -> None:
        self._rules = tuple(rules)
        for rule in self._rules:
            if not isinstance(rule, BudgetRule):
                raise ResilienceConfigError("rules", f"BudgetRule objects, got {rule!r}")
        names = [rule.name for rule in self._rules]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ResilienceConfigError("rules", f"rule names must be unique: {duplicates}")
        self._store = store
        self._clock = clock
        self._caller_keys = tuple(dict.fromkeys(
            r.caller_key for r in self._rules if r.scope is BudgetScope.CALLER))
        self._plans: dict[tuple[str, tuple[str | None, ...]],
                          tuple[float, float, list[tuple[BudgetRule, str, float]]]] = {}

    @property
    def rules(self) -> tuple[BudgetRule, ...]:
        return self._rules

    def _applicable(self, feature: str, metadata: Mapping[str, str]
                    ) -> list[tuple[BudgetRule, str, float]]:
        """(rule, key stem, ttl) for every rule that applies to this request, in rule order."""
        now = self._clock()
        callers = tuple(metadata.get(key) for key in self._caller_keys)
        known = self._plans.get((feature, callers))
        if known is None or not known[0] <= now < known[1]:
            known = self._plan(feature, metadata, now)
            if len(self._plans) >= _MAX_PLANS:  # many callers: start over rather than grow
                self._plans.clear()
            self._plans[(feature, callers)] = known
        return [(rule, stem, end - now + _KEY_GRACE_S) for rule, stem, end in known[2]]

    def _plan(self, feature: str, metadata: Mapping[str, str], now: float
              ) -> tuple[float, float, list[tuple[BudgetRule, str, float]]]:
        """The applicable rules' counter stems for the period buckets holding ``now``, and
        the span of time they hold for (cached by ``_applicable``)."""
        out, valid_from, valid_until = [], -math.inf, math.inf
        for rule in self._rules:
            if rule.scope is BudgetScope.CALLER:
                caller = metadata.get(rule.caller_key)
                if caller is None:
                    continue
                stem = _stem(rule.name, None if rule.across_features else feature, str(caller))
            else:
                stem = _stem(rule.name, feature, None)
            start, end = bucket(rule.period, now)
            valid_from, valid_until = max(valid_from, start), min(valid_until, end)
            out.append((rule, f"{stem}:{rule.period.value}{int(start)}", end))
        return valid_from, valid_until, out

    async def reserve(self, feature: str, metadata: Mapping[str, str], usd: float,
                      requests: int = 1) -> Reservation | Denied:
        """Take ``usd`` (the worst-case cost) and ``requests`` from every applicable
        counter at once, or nothing: then ``Denied`` names the first rule that would break."""
        usd = _amount("usd", usd)
        if type(requests) is not int or requests < 0:  # (bool is not int here)
            raise BudgetArgumentError("requests", f"an integer >= 0, got {requests!r}")
        plan: list[tuple[BudgetRule, str, Add]] = []
        for rule, stem, ttl in self._applicable(feature, metadata):
            if rule.usd is not None:
                plan.append((rule, _USD, Add(f"{stem}:{_USD}", usd, float(rule.usd), ttl)))
            if rule.requests is not None:
                plan.append((rule, _REQUESTS,
                             Add(f"{stem}:{_REQUESTS}", float(requests), float(rule.requests), ttl)))
        adds = tuple(add for _, _, add in plan)
        if not adds:
            return Reservation((), usd)
        ok, values = await self._store.add(adds)
        if ok:
            return Reservation(adds, usd)
        return self._denied(plan, values)

    @staticmethod
    def _denied(plan: list[tuple[BudgetRule, str, Add]], values: Sequence[float]) -> Denied:
        current = dict(zip([add.key for _, _, add in plan], values, strict=True))
        for rule, _, add in plan:
            if not add.fits(current[add.key]):
                left = {kind: max(0.0, a.limit - current[a.key]) for r, kind, a in plan
                        if r is rule and a.limit is not None}
                requests = left.get(_REQUESTS)
                return Denied(rule, left.get(_USD),
                              None if requests is None else math.floor(requests + 1e-9))
        # every add fits on its own, yet the store refused: two adds on one key together
        rule = plan[0][0]
        return Denied(rule, None, None)

    async def settle(self, reservation: Reservation, actual_usd: float) -> None:
        """Correct the dollar counters by ``actual_usd - reservation.usd`` (without limit:
        the money is spent). Requests stay counted."""
        actual_usd = _amount("actual_usd", actual_usd)
        if not isinstance(reservation, Reservation):
            raise BudgetArgumentError("reservation", f"a Reservation, got {reservation!r}")
        delta = actual_usd - reservation.usd
        adds = [Add(add.key, delta, None, add.ttl_s) for add in reservation.adds
                if add.key.endswith(f":{_USD}")]
        if adds and delta != 0.0:
            await self._store.add(adds)

    async def remaining(self, feature: str, metadata: Mapping[str, str]
                        ) -> list[tuple[BudgetRule, float | None, float | None]]:
        """For every applicable rule: (rule, dollars left, requests left); None where the
        rule sets no such limit."""
        applicable = self._applicable(feature, metadata)
        keys = [f"{stem}:{kind}" for _, stem, _ in applicable for kind in (_USD, _REQUESTS)]
        values = dict(zip(keys, await self._store.get(keys), strict=True)) if keys else {}
        out: list[tuple[BudgetRule, float | None, float | None]] = []
        for rule, stem, _ in applicable:
            usd = None if rule.usd is None else max(0.0, rule.usd - values[f"{stem}:{_USD}"])
            req = None if rule.requests is None else max(
                0.0, rule.requests - values[f"{stem}:{_REQUESTS}"])
            out.append((rule, usd, req))
        return out


__all__ = [
    "BudgetArgumentError",
    "BudgetRule",
    "BudgetScope",
    "Budgets",
    "Denied",
    "Period",
    "Reservation",
    "bucket",
]
