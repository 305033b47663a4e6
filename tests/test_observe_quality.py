"""Accepted-answer quality targets (``slo: {false_accept: [...]}``) and the audit's own alert
(lower bound above the calibrated alpha), evaluated by the SLO monitor from the audit's counts
with hysteresis on the Clopper–Pearson interval, and delivered through the alert sinks."""

from __future__ import annotations

import logging
import random
from pathlib import Path

import pytest
from scripted import FakeClock, Fixed, Scripted

from cascade import Cascade, Tier, parse_policy
from cascade.errors import PolicyError
from cascade.state import MemoryStore
from cascade.telemetry import (
    AlertKind,
    AlertState,
    AuditSampler,
    BurnWindow,
    FalseAcceptTarget,
    LogSink,
    SignalAlert,
    SloMonitor,
    clopper_pearson,
)
from verifiers import AnswerKind

pytestmark = pytest.mark.anyio
FIXTURE = Path(__file__).parent / "fixtures" / "tiny_routerbench.csv"


class Recorder:
    """A sink that keeps what it is sent."""

    def __init__(self) -> None:
        self.sent: list[object] = []

    async def send(self, alert: object) -> None:
        self.sent.append(alert)


def quality_monitor(clock: FakeClock, **kw: object) -> SloMonitor:
    return SloMonitor((), [BurnWindow(3600, 300, 2.0, "fast")], clock=clock,
                      store=MemoryStore(clock=clock), audit_window_s=600,
                      quality=[FalseAcceptTarget("faq", "small", 0.1)], **kw)  # type: ignore[arg-type]


async def test_fires_on_the_lower_bound_and_resolves_on_the_upper_bound() -> None:
    clock = FakeClock(1_000_000.0)
    m = quality_monitor(clock)
    changes: list[tuple[int, SignalAlert]] = []
    step = 0

    async def audits(n: int, false_every: int) -> None:
        nonlocal step
        for i in range(n):
            step += 1
            clock.now += 10
            m.record_audit("faq", "small", false_every > 0 and i % false_every == 0)
            changes.extend((step, a) for a in await m.evaluate())  # type: ignore[misc]

    await audits(40, 2)  # half of them wrong
    [(at, fired)] = changes
    assert fired.state is AlertState.FIRING and fired.kind is AlertKind.FALSE_ACCEPT
    assert fired.key == "faq/small/false_accept" and fired.limit == 0.1
    # the first moment the lower bound of the audits so far passed 0.1
    first = next(n for n in range(1, 41)
                 if clopper_pearson((n + 1) // 2, n)[0] > 0.1)
    assert at == first and fired.low > 0.1
    await audits(100, 0)  # all right: the wrong ones leave the 600 s window
    assert len(changes) == 2
    at, resolved = changes[1]
    assert resolved.state is AlertState.RESOLVED and resolved.high < 0.1
    # while wrong audits were still in the window the interval straddled 0.1 (no longer
    # above it): the alert kept firing, without a resolve-and-fire-again
    assert 30 < at - 40 <= 100 and resolved.samples <= 60
    assert resolved.since == fired.at
    await audits(200, 10)  # exactly 10 % wrong: hovering at the target never fires
    assert len(changes) == 2


async def test_the_audit_alert_goes_through_the_sinks_via_the_monitor(
        caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock(1_000_000.0)
    recorder = Recorder()
    m = SloMonitor((), store=MemoryStore(clock=clock), clock=clock, audit_alpha=0.05,
                   audit_features=("default",), sinks=[recorder, LogSink()])
    cheap = Tier("small", "s", Scripted("Paris"), Fixed(0.9), 0.5)
    dear = Tier("large", "l", Scripted("Lyon"), Fixed(0.9), 0.5)
    audit = AuditSampler(dear, 1, rate=1.0, answer=AnswerKind.TEXT, alpha=0.05,
                         rng=random.Random(0))
    audit.listeners.append(m.record_audit)
    engine = Cascade([cheap, dear], audit=audit, metrics=False)
    for _ in range(10):
        await engine.run("Capital of France?")
    with caplog.at_level(logging.INFO, logger="cascade"):
        await audit.drain()
        assert not [r for r in caplog.records if r.name == "cascade.audit"]  # the monitor's job
        changes = await m.evaluate()
        await m.deliver(changes)
    [alert] = recorder.sent
    assert isinstance(alert, SignalAlert) and alert.kind is AlertKind.AUDIT
    assert (alert.subject, alert.samples, alert.value) == ("*", 10, 1.0)
    assert alert.to_dict()["alert"] == "default/*/audit" and alert.to_dict()["status"] == "firing"
    assert any("default/*/audit firing" in r.getMessage() for r in caplog.records)
    assert await m.evaluate() == []  # no repeat while it keeps firing


def _policy(slo: str, audit: str = "{rate: 0.5, alpha: 0.05}") -> str:
    tier = "{{name: {}, model: {}, provider: {{kind: replay, data: '{}'}}}}"
    return (f"feature: faq\ntiers:\n"
            f"  - {tier.format('small', 'cheap-model', FIXTURE)}\n"
            f"  - {tier.format('mid', 'mid-model', FIXTURE)}\n"
            f"  - {tier.format('large', 'dear-model', FIXTURE)}\n"
            + (f"telemetry: {{audit: {audit}}}\n" if audit else "")
            + (f"slo: {slo}\n" if slo else ""))


def test_the_policy_builds_false_accept_targets_and_wires_the_audit() -> None:
    engine = Cascade.from_policy(parse_policy(_policy(
        "{false_accept: [{tier: small, max: 0.08}, {tier: mid, max: 0.04}], "
        "alerts: {log: false, otel: false}}")))
    assert engine.slo is not None and engine.audit is not None
    assert [(q.tier, q.max) for q in engine.slo.quality] == [("small", 0.08), ("mid", 0.04)]
    assert engine.slo.audit_alpha == 0.05 and engine.slo.targets == []
    assert engine.audit.listeners == [engine.slo.record_audit]
    alone = Cascade.from_policy(parse_policy(_policy("")))  # audit with alpha, no slo: block
    assert alone.slo is not None and alone.slo.audit_alpha == 0.05
    assert [type(s).__name__ for s in alone.slo.sinks] == ["LogSink"]
    quiet = Cascade.from_policy(parse_policy(_policy("", "{rate: 0.5}")))  # no alpha
    assert quiet.slo is None


@pytest.mark.parametrize(("slo", "audit", "match"), [
    ("{false_accept: [{tier: tiny, max: 0.1}]}", "{rate: 0.5}",
     r"slo.*false_accept\[0\].tier: 'tiny' is not a tier of this policy below"),
    ("{false_accept: [{tier: large, max: 0.1}]}", "{rate: 0.5}", "below the audit's judge"),
    ("{false_accept: [{tier: mid, max: 0.1}]}", "{rate: 0.5, judge: mid}",
     "'mid' is not a tier of this policy below the audit's judge 'mid'"),
    ("{false_accept: [{tier: small, max: 0.1}]}", "", "false_accept needs telemetry.audit"),
    ("{false_accept: [{tier: small, max: 1.5}]}", "{rate: 0.5}", "less than 1"),
    ("{false_accept: [{tier: small, maximum: 0.1}]}", "{rate: 0.5}", "maximum"),
])
def test_bad_false_accept_targets_are_policy_errors(slo: str, audit: str, match: str) -> None:
    with pytest.raises(PolicyError, match=match):
        parse_policy(_policy(slo, audit))


async def test_signal_alerts_through_the_otel_and_webhook_shapes() -> None:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from test_metrics_otel import points

    from cascade.telemetry import OTelSink

    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    alert = SignalAlert(AlertState.FIRING, AlertKind.FALSE_ACCEPT, "faq", "small", 0.3, 0.15,
                        0.5, 0.1, 30, 600.0, 1000.0, 990.0, episode=2)
    await OTelSink(provider).send(alert)
    found = points(reader)
    [(attributes, active)] = found["cascade.slo.alert.active"]
    assert active == 1 and attributes == {"cascade.feature": "faq", "cascade.tier.name": "small",
                                          "cascade.slo.kind": "false_accept",
                                          "cascade.slo.window": "false_accept"}
    assert found["cascade.slo.estimate"][0][1] == 0.3
    body = alert.to_dict()
    assert (body["alert"], body["status"], body["episode"], body["low"]) == (
        "faq/small/false_accept", "firing", 2, 0.15)
    assert "30" in alert.describe() and "limit 10.0%" in alert.describe()
    provider.shutdown()
