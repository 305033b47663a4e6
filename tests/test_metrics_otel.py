"""OpenTelemetry metrics (the metrics observer) read with the SDK's InMemoryMetricReader:
runs, acceptances, confidence escalations and error fallbacks per tier hop, GenAI token usage
and operation duration, cost, estimator cost, retries, breaker state, budget decisions; and
the Prometheus exporter."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from scripted import FakeTime, Fixed, Flaky, Scripted

from cascade import Cascade, ProviderHTTPError, Tier
from cascade.errors import ServerError
from cascade.policy import BreakerSpec, BudgetSpec, LoadBalancing, Price, ResilienceSpec
from cascade.resilience import Deployment, Resilience
from cascade.telemetry import MetricsObserver

pytestmark = pytest.mark.anyio


def points(reader: InMemoryMetricReader) -> dict[str, list[tuple[dict[str, object], object]]]:
    """metric name -> [(attributes, value or histogram point)]."""
    out: dict[str, list[tuple[dict[str, object], object]]] = {}
    data = reader.get_metrics_data()
    for resource in data.resource_metrics if data else ():
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                for p in metric.data.data_points:
                    value = getattr(p, "value", p)
                    out.setdefault(metric.name, []).append((dict(p.attributes), value))
    return out


def total(found: dict, name: str, **match: object) -> float:  # type: ignore[type-arg]
    return sum(v for a, v in found.get(name, []) if all(a.get(k) == m for k, m in match.items()))


async def test_escalations_and_fallbacks_are_counted_apart_per_hop() -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    dead = Scripted(fail=ProviderHTTPError("scripted@a", 503, "busy"))
    tiers = [Tier("a", "model-a", Scripted("x"), Fixed(0.2), 0.5),
             Tier("b", "model-b", Scripted("y"), Fixed(0.9), 0.5, price=Price(input_per_1m=1e3))]
    unsure = Cascade(tiers, feature="faq", metrics=False, observers=[MetricsObserver(provider)])
    broken = Cascade([Tier("a", "model-a", dead, Fixed(0.9), 0.5), tiers[1]], feature="faq",
                     metrics=False, observers=[MetricsObserver(provider)])
    for _ in range(3):
        await unsure.run("q")
    await broken.run("q")
    found = points(reader)
    assert total(found, "cascade.runs", **{"cascade.feature": "faq"}) == 4
    assert total(found, "cascade.escalations", **{"cascade.tier.from": "a",
                                                  "cascade.tier.to": "b"}) == 3
    assert total(found, "cascade.fallbacks", **{"cascade.tier.from": "a", "cascade.tier.to": "b",
                                                "error.type": "ProviderHTTPError"}) == 1
    assert total(found, "cascade.acceptances", **{"cascade.tier.name": "b"}) == 4
    assert total(found, "cascade.attempts", **{"cascade.tier.name": "a",
                                               "cascade.decision": "escalate"}) == 3
    assert total(found, "cascade.attempts", **{"cascade.tier.name": "a",
                                               "cascade.decision": "error"}) == 1
    confidence = {a["cascade.tier.name"]: h for a, h in found["cascade.confidence"]}
    assert confidence["a"].count == 3 and confidence["a"].sum == pytest.approx(0.6)
    assert confidence["b"].count == 4
    assert total(found, "cascade.tier.cost", **{"cascade.tier.name": "b"}) == pytest.approx(
        4 * 10 * 1e3 / 1e6)
    [run_cost] = [h for _, h in found["cascade.run.cost"]]
    assert run_cost.count == 4 and run_cost.sum == pytest.approx(4 * 0.01)
    tokens = {(a["gen_ai.request.model"], a["gen_ai.token.type"]): h
              for a, h in found["gen_ai.client.token.usage"]}
    assert tokens[("model-b", "input")].sum == 40 and tokens[("model-b", "output")].sum == 20
    assert ("model-a", "input") in tokens  # the escalated answers' tokens count too
    durations = {(a["gen_ai.request.model"], a.get("error.type")): h
                 for a, h in found["gen_ai.client.operation.duration"]}
    assert durations[("model-a", "ProviderHTTPError")].count == 1
    assert durations[("model-b", None)].count == 4
    assert all(a["gen_ai.operation.name"] == "chat" for a, _ in found["gen_ai.client.operation.duration"])
    provider.shutdown()


async def test_retries_breaker_state_and_budget_decisions() -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    time = FakeTime()
    a = Flaky("from a", name="a", script=[ServerError("scripted@a", 500, "boom")] * 3)
    b = Flaky("from b", name="b", script=[ServerError("scripted@b", 500, "boom")])
    spec = ResilienceSpec(breaker=BreakerSpec(minimum_calls=1, window_size=1, failure_rate=1.0))
    resilience = Resilience(spec, (BudgetSpec(name="daily", period="day", usd=10.0),),
                            clock=time, wall_clock=time, sleep=time.sleep)
    tier = Tier("t", "m", a, price=Price(input_per_1m=1.0),
                deployments=(Deployment(a), Deployment(b)),
                load_balancing=LoadBalancing.LEAST_IN_FLIGHT)
    result = await Cascade([tier], feature="faq", resilience=resilience, metrics=False,
                           observers=[MetricsObserver(provider)]).run("q")
    found = points(reader)
    retried = max(c.retry for c in result.attempts[0].calls)
    assert retried >= 1 and total(found, "cascade.retries") == retried
    assert total(found, "cascade.deployment.fallbacks", **{"cascade.deployment": "scripted@a"}) >= 1
    opened = total(found, "cascade.breaker.transitions", **{"cascade.deployment": "scripted@a",
                                                            "cascade.breaker.to": "open"})
    assert opened >= 1
    states = {a["cascade.deployment"]: v for a, v in found["cascade.breaker.state"]}
    assert states["scripted@a"] in (0, 1, 2)  # the last transition's state
    sent = sum(1 for c in result.attempts[0].calls if c.outcome.value != "skipped")
    assert total(found, "cascade.budget.decisions", **{"cascade.budget.allowed": True}) == sent
    provider.shutdown()


async def test_nothing_is_recorded_without_an_sdk_and_a_run_is_unchanged() -> None:
    result = await Cascade([Tier("a", "m", Scripted("x"))]).run("q")  # the API's no-op meter
    assert result.answer == "x"


async def test_prometheus_exporter_serves_the_metrics() -> None:
    from opentelemetry.exporter.prometheus import PrometheusMetricReader
    from prometheus_client import CollectorRegistry, generate_latest

    registry = CollectorRegistry()  # not the process-wide one other code may also fill
    reader = PrometheusMetricReader(registry=registry)
    provider = MeterProvider(metric_readers=[reader])
    try:
        tiers = [Tier("a", "model-a", Scripted("x"), Fixed(0.2), 0.5),
                 Tier("b", "model-b", Scripted("y"), Fixed(0.9), 0.5)]
        await Cascade(tiers, feature="faq", metrics=False,
                      observers=[MetricsObserver(provider)]).run("q")
        text = generate_latest(registry).decode()
    finally:
        provider.shutdown()
    [line] = [x for x in text.splitlines() if x.startswith("cascade_escalations_total{")]
    assert 'cascade_tier_from="a"' in line and 'cascade_tier_to="b"' in line
    assert line.endswith(" 1.0")
    assert "gen_ai_client_operation_duration_seconds_bucket" in text


async def test_a_cascade_built_before_the_sdk_records_once_it_is_installed() -> None:
    from opentelemetry import metrics
    from opentelemetry.metrics import _internal
    from opentelemetry.util._once import Once

    saved = (_internal._METER_PROVIDER, _internal._METER_PROVIDER_SET_ONCE,
             _internal._PROXY_METER_PROVIDER)
    # a fresh global state: no provider, and a proxy not bound to one set by an earlier test
    _internal._METER_PROVIDER, _internal._METER_PROVIDER_SET_ONCE = None, Once()
    _internal._PROXY_METER_PROVIDER = _internal._ProxyMeterProvider()
    try:
        engine = Cascade([Tier("a", "m", Scripted("x"))], feature="late")  # no SDK yet
        await engine.run("q")  # the fast path: nothing built, nothing recorded
        reader = InMemoryMetricReader()
        provider = MeterProvider(metric_readers=[reader])
        metrics.set_meter_provider(provider)
        await engine.run("q")
        assert total(points(reader), "cascade.runs", **{"cascade.feature": "late"}) == 1
        provider.shutdown()
    finally:
        (_internal._METER_PROVIDER, _internal._METER_PROVIDER_SET_ONCE,
         _internal._PROXY_METER_PROVIDER) = saved
