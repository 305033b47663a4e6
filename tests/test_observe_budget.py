"""``cascade.budget.remaining``: the observable gauge of what is left of each spending budget,
read with the SDK's InMemoryMetricReader (feature and per-caller budgets, usd and requests)."""

from __future__ import annotations

import anyio
import anyio.lowlevel
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from scripted import FakeTime, Scripted
from test_metrics_otel import points

from cascade import Cascade, Tier
from cascade.policy import BudgetSpec, Price
from cascade.resilience import Resilience
from cascade.state import MemoryStore, StateError
from cascade.telemetry import BUDGET_GAUGE, BudgetGauge

pytestmark = pytest.mark.anyio

_BUDGETS = (BudgetSpec(name="daily", period="day", usd=1.0),
            BudgetSpec(name="per-user", scope="caller", period="hour", requests=10))


def _remaining(reader: InMemoryMetricReader) -> dict[tuple[str, str, str | None], float]:
    """(budget, unit, caller) -> value."""
    return {(a["cascade.budget.name"], a["cascade.budget.unit"], a.get("cascade.budget.key")): v
            for a, v in points(reader).get(BUDGET_GAUGE, [])}


async def test_the_gauge_reports_what_is_left_per_budget_unit_and_caller() -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    time = FakeTime(1_000_000.0)
    resilience = Resilience(budgets=_BUDGETS, clock=time, wall_clock=time, sleep=time.sleep)
    assert resilience.budgets is not None
    gauge = BudgetGauge(resilience.budgets, "faq", meter_provider=provider)
    engine = Cascade([Tier("a", "m", Scripted("x"), price=Price(input_per_1m=10_000.0))],
                     feature="faq", resilience=resilience, metrics=False, observers=[gauge])
    await gauge.refresh()
    assert _remaining(reader) == {("daily", "usd", None): 1.0}  # no caller seen yet
    for caller in ("ann", "ann", "bob"):
        await engine.run("q", metadata={"caller": caller})
    await engine.run("q")  # no caller: only the feature budget applies
    await gauge.refresh()
    found = _remaining(reader)
    spent = 4 * 10 * 10_000 / 1e6  # Scripted counts 10 input tokens a call
    assert found[("daily", "usd", None)] == pytest.approx(1.0 - spent)
    assert found[("per-user", "requests", "ann")] == 8
    assert found[("per-user", "requests", "bob")] == 9
    assert set(found) == {("daily", "usd", None), ("per-user", "requests", "ann"),
                          ("per-user", "requests", "bob")}
    attributes = next(a for a, _ in points(reader)[BUDGET_GAUGE]
                      if a["cascade.budget.name"] == "per-user")
    assert attributes["cascade.budget.period"] == "hour"
    assert attributes["cascade.feature"] == "faq"
    time.now += 3600  # a new hour: the per-caller budget is whole again
    await gauge.refresh()
    assert _remaining(reader)[("per-user", "requests", "ann")] == 10
    provider.shutdown()


async def test_callers_are_bounded_and_a_broken_store_keeps_the_last_values() -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    resilience = Resilience(budgets=_BUDGETS)
    assert resilience.budgets is not None
    gauge = BudgetGauge(resilience.budgets, "faq", meter_provider=provider, max_callers=2)
    engine = Cascade([Tier("a", "m", Scripted("x"))], feature="faq", resilience=resilience,
                     metrics=False, observers=[gauge])
    for caller in ("a", "b", "c"):
        await engine.run("q", metadata={"caller": caller})
    await gauge.refresh()
    callers = {k[2] for k in _remaining(reader) if k[0] == "per-user"}
    assert callers == {"b", "c"}  # the oldest caller is forgotten

    class Down(MemoryStore):
        async def get(self, keys: object) -> tuple[float, ...]:  # type: ignore[override]
            raise StateError("store down")

    resilience.budgets._store = Down()
    naps: list[float] = []
    twice = anyio.Event()

    async def nap(s: float) -> None:
        naps.append(s)
        if len(naps) == 2:
            twice.set()
        if len(naps) >= 2:
            await anyio.sleep_forever()
        await anyio.lowlevel.checkpoint()

    async with gauge.running(sleep=nap):
        with anyio.fail_after(5):
            await twice.wait()
    assert gauge.refresh_failures == 2 and naps == [10.0, 10.0]
    assert {k[2] for k in _remaining(reader) if k[0] == "per-user"} == {"b", "c"}
    provider.shutdown()


def test_the_engine_adds_the_gauge_when_it_has_budgets_and_metrics() -> None:
    tiers = [Tier("a", "m", Scripted("x"))]
    with_budgets = Cascade(tiers, resilience=Resilience(budgets=_BUDGETS))
    assert with_budgets.budget_gauge is not None
    assert with_budgets.budget_gauge in with_budgets.observers.observers
    assert Cascade(tiers).budget_gauge is None  # no budgets
    assert Cascade(tiers, resilience=Resilience(budgets=_BUDGETS),
                   metrics=False).budget_gauge is None


async def test_two_features_report_through_one_gauge_per_provider() -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    gauges = []
    for feature in ("faq", "chat"):
        resilience = Resilience(budgets=(BudgetSpec(name="daily", period="day", usd=2.0),))
        assert resilience.budgets is not None
        gauges.append(BudgetGauge(resilience.budgets, feature, meter_provider=provider))
        await gauges[-1].refresh()
    found = {a["cascade.feature"]: v for a, v in points(reader)[BUDGET_GAUGE]}
    assert found == {"faq": 2.0, "chat": 2.0}  # an SDK keeps one instrument per name
    del gauges[0]  # a Cascade gone: its gauge is no longer reported
    import gc

    gc.collect()
    assert {a["cascade.feature"] for a, _ in points(reader)[BUDGET_GAUGE]} == {"chat"}
    provider.shutdown()
