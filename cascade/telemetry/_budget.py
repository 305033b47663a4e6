"""``cascade.budget.remaining``: what is left of each spending budget in its current period,
as an OpenTelemetry observable gauge (a no-op until the application installs an SDK).

The budgets' counters live in the resilience store (Redis when shared), which cannot be read
from a metric callback (synchronous, on the exporter's thread). So ``refresh`` reads them off
the request path — ``running()`` does it every ``interval_s`` in a background task, inside
``async with Cascade(...)`` — and the callback reports the values last read. Per-caller
budgets are reported for the callers seen in runs (at most ``max_callers``, the most recent:
the attribute's cardinality stays bounded)."""

from __future__ import annotations

import logging
import threading
import weakref
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import anyio
from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.metrics._internal import _ProxyMeterProvider  # the API's "no SDK yet"

from cascade.state import StateError
from cascade.telemetry._events import RunInfo
from cascade.telemetry._observers import RunObserver
from cascade.types import Result

if TYPE_CHECKING:
    from cascade.resilience import Budgets

log = logging.getLogger("cascade.telemetry")

BUDGET_GAUGE = "cascade.budget.remaining"
_Callers = tuple[tuple[str, str], ...]  # ((caller_key, value), ...): one caller's metadata


class BudgetGauge(RunObserver):
    """Reports ``cascade.budget.remaining`` for every budget rule of ``budgets`` that applies
    to ``feature``: attributes ``cascade.feature``, ``cascade.budget.name``,
    ``cascade.budget.unit`` (``usd`` | ``requests``), ``cascade.budget.period`` and, for
    per-caller rules, ``cascade.budget.key`` (the caller)."""

    def __init__(self, budgets: Budgets, feature: str, *,
                 meter_provider: metrics.MeterProvider | None = None,
                 interval_s: float = 10.0, max_callers: int = 100) -> None:
        if interval_s <= 0 or max_callers < 1:
            raise ValueError("interval_s must be > 0 and max_callers at least 1")
        self.budgets, self.feature = budgets, feature
        self.interval_s, self.max_callers = interval_s, max_callers
        self._keys = tuple(dict.fromkeys(rule.caller_key for rule in budgets.rules))
        self._callers: OrderedDict[_Callers, None] = OrderedDict({(): None})
        self._values: dict[tuple[tuple[str, str], ...], float] = {}
        self.refresh_failures = 0
        self._own = meter_provider is not None
        _register(self, meter_provider)

    def run_finished(self, run: RunInfo, result: Result | None,
                     error: BaseException | None) -> None:
        """Note the run's caller (memory only; the store is read by ``refresh``)."""
        metadata = run.request.metadata
        callers = tuple((k, metadata[k]) for k in self._keys if k in metadata)
        if not callers:
            return
        self._callers[callers] = None
        self._callers.move_to_end(callers)
        while len(self._callers) > self.max_callers + 1:  # () (feature budgets) is never evicted
            oldest = next(k for k in self._callers if k)
            del self._callers[oldest]

    async def refresh(self) -> None:
        """Read what is left of every applicable budget (``StateError`` when the store
        cannot be read: the values last read are kept)."""
        from cascade.resilience import BudgetScope  # (resilience imports this package's events)

        values: dict[tuple[tuple[str, str], ...], float] = {}
        for callers in list(self._callers):
            found = await self.budgets.remaining(self.feature, dict(callers))
            for rule, usd, requests in found:
                base = [("cascade.feature", self.feature), ("cascade.budget.name", rule.name),
                        ("cascade.budget.period", rule.period.value)]
                if rule.scope is BudgetScope.CALLER:
                    key = dict(callers).get(rule.caller_key)
                    base.append(("cascade.budget.key", str(key)))
                for unit, left in (("usd", usd), ("requests", requests)):
                    if left is not None:
                        values[(*base, ("cascade.budget.unit", unit))] = left
        self._values = values

    def _off(self) -> bool:
        """No SDK installed (the API's proxy provider): nothing would read the values."""
        return not self._own and isinstance(metrics.get_meter_provider(), _ProxyMeterProvider)

    def observations(self) -> list[Observation]:
        """The values last read, as the gauge reports them."""
        return [Observation(value, dict(attributes))
                for attributes, value in self._values.items()]

    @asynccontextmanager
    async def running(self, sleep: Callable[[float], object] | None = None
                      ) -> AsyncIterator[BudgetGauge]:
        """Refresh now and every ``interval_s`` while the block runs; a store that cannot be
        read is logged and counted, never raised."""
        pause = sleep or anyio.sleep

        async def loop() -> None:
            while True:
                try:
                    if not self._off():
                        await self.refresh()
                except StateError as exc:
                    self.refresh_failures += 1
                    log.warning("budget gauge not refreshed: %s", exc)
                await pause(self.interval_s)  # type: ignore[misc]

        async with anyio.create_task_group() as tg:
            tg.start_soon(loop)
            try:
                yield self
            finally:
                tg.cancel_scope.cancel()


# One observable gauge per meter provider, reporting every live BudgetGauge bound to it: an SDK
# keeps the first instrument of a name (and its callback) and ignores later ones, so one per
# Cascade would silently drop every feature but the first.
_GLOBAL = object()  # the global provider, whatever it is when the gauge is created
_REGISTRY: dict[int, tuple[object, weakref.WeakSet[BudgetGauge]]] = {}
_LOCK = threading.Lock()


def _register(gauge: BudgetGauge, provider: metrics.MeterProvider | None) -> None:
    owner: object = _GLOBAL if provider is None else provider
    with _LOCK:
        found = _REGISTRY.get(id(owner))
        if found is None:
            members: weakref.WeakSet[BudgetGauge] = weakref.WeakSet()
            meter = (provider or metrics.get_meter_provider()).get_meter("cascade")

            def observe(options: CallbackOptions) -> Iterable[Observation]:
                return [o for member in list(members) for o in member.observations()]

            meter.create_observable_gauge(
                BUDGET_GAUGE, callbacks=[observe], unit="1",
                description="left of each spending budget in its current period (unit: "
                            "the cascade.budget.unit attribute, usd or requests)")
            found = _REGISTRY[id(owner)] = (owner, members)  # (owner kept: its id stays its)
        found[1].add(gauge)


__all__ = ["BUDGET_GAUGE", "BudgetGauge"]
