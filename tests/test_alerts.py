"""Alert sinks: a signed webhook delivered to a real HTTP server on loopback, retried when the
receiver fails, never blocking a run; logging and OpenTelemetry sinks; one notification per
change (deduplicated) with resolve notifications."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import anyio
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from scripted import Fixed, Scripted

from cascade import Cascade, Tier
from cascade.state import MemoryStore
from cascade.telemetry import (
    SIGNATURE_HEADER,
    Alert,
    AlertDeliveryError,
    AlertState,
    BurnWindow,
    EscalationTarget,
    LogSink,
    OTelSink,
    SloMonitor,
    WebhookSink,
)

pytestmark = pytest.mark.anyio
SECRET = "hook-secret-123"


@dataclass
class Receiver:
    url: str
    bodies: list[bytes] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)  # replies to give, then 200
    delay_s: float = 0.0


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver("")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # http.server's name
            body = self.rfile.read(int(self.headers["Content-Length"]))
            if state.delay_s:
                time.sleep(state.delay_s)
            status = state.statuses.pop(0) if state.statuses else 200
            if status == 200:
                state.bodies.append(body)
                state.headers.append(dict(self.headers))
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/cascade"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def an_alert(state: AlertState = AlertState.FIRING) -> Alert:
    return Alert(state, EscalationTarget("faq", "small", 0.1, "large"),
                 BurnWindow(3600, 300, 2.0, "fast"), 0.5, 0.6, 120, 1_000_000.0, 999_000.0)


class NoSleep:
    def __init__(self) -> None:
        self.slept: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.slept.append(seconds)


async def test_webhook_posts_signed_json_to_a_real_server(receiver: Receiver) -> None:
    sink = WebhookSink(receiver.url, secret=SECRET)
    await sink.send(an_alert())
    [body] = receiver.bodies
    payload = json.loads(body)
    assert payload["status"] == "firing" and payload["alert"] == "faq/small/fast"
    assert payload["rate_long"] == 0.5 and payload["target"] == 0.1 and payload["to"] == "large"
    expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(receiver.headers[0][SIGNATURE_HEADER], expected)
    assert SECRET not in repr(sink) and "signed=True" in repr(sink)


async def test_a_failing_receiver_is_retried_then_delivered(receiver: Receiver) -> None:
    receiver.statuses = [500, 503, 429]
    sleep = NoSleep()
    sink = WebhookSink(receiver.url, max_attempts=5, initial_backoff_s=1.0, sleep=sleep)
    await sink.send(an_alert())
    assert len(receiver.bodies) == 1 and len(sleep.slept) == 3
    assert all(0 <= s <= 30 for s in sleep.slept)


async def test_a_receiver_that_keeps_failing_or_refuses_is_a_delivery_error(
        receiver: Receiver) -> None:
    receiver.statuses = [500] * 10
    sleep = NoSleep()
    with pytest.raises(AlertDeliveryError, match="gave up after 3 tries: HTTP 500"):
        await WebhookSink(receiver.url, max_attempts=3, sleep=sleep).send(an_alert())
    assert len(sleep.slept) == 2
    receiver.statuses = [403]
    sleep.slept.clear()
    with pytest.raises(AlertDeliveryError, match="refused the alert: HTTP 403"):
        await WebhookSink(receiver.url, max_attempts=3, sleep=sleep).send(an_alert())
    assert sleep.slept == []  # a 4xx is not retried
    with pytest.raises(AlertDeliveryError, match="ConnectError"):  # nobody listening
        await WebhookSink("http://127.0.0.1:9/x", secret=SECRET, max_attempts=2,
                          sleep=sleep).send(an_alert())


async def test_log_and_otel_sinks(caplog: pytest.LogCaptureFixture) -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    otel = OTelSink(provider)
    with caplog.at_level(logging.INFO, logger="cascade.slo"):
        await LogSink().send(an_alert())
        await LogSink().send(an_alert(AlertState.RESOLVED))
        await otel.send(an_alert())
    fired, resolved = [r for r in caplog.records if r.name == "cascade.slo"]
    assert fired.levelno == logging.WARNING and "faq/small/fast firing" in fired.getMessage()
    assert "50.0%" in fired.getMessage() and resolved.levelno == logging.INFO
    data = reader.get_metrics_data()
    found = {m.name: m for rm in data.resource_metrics for sm in rm.scope_metrics
             for m in sm.metrics}
    [active] = found["cascade.slo.alert.active"].data.data_points
    assert active.value == 1 and active.attributes["cascade.slo.window"] == "fast"
    await otel.send(an_alert(AlertState.RESOLVED))
    data = reader.get_metrics_data()
    found = {m.name: m for rm in data.resource_metrics for sm in rm.scope_metrics
             for m in sm.metrics}
    assert found["cascade.slo.alert.active"].data.data_points[0].value == 0
    provider.shutdown()


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


async def test_one_notification_per_change_with_a_resolve(receiver: Receiver) -> None:
    clock = Clock()
    sink = WebhookSink(receiver.url, secret=SECRET)
    m = SloMonitor([EscalationTarget("faq", "small", 0.1)], [BurnWindow(600, 60, 2.0, "fast")],
                   store=MemoryStore(clock=clock), sinks=[sink], clock=clock, min_runs=5,
                   storm_rate=None)
    for i in range(200):  # 100 % escalation for ~ 17 min, evaluated every 5 s
        clock.now += 5
        m.record("faq", "small", escalated=i < 100)
        await m.deliver(await m.evaluate())
    states = [json.loads(b)["status"] for b in receiver.bodies]
    assert states == ["firing", "resolved"]


async def test_a_hanging_webhook_never_blocks_a_run(receiver: Receiver) -> None:
    receiver.delay_s = 2.0  # the receiver takes two seconds per notification
    sink = WebhookSink(receiver.url, timeout_s=5)
    m = SloMonitor([EscalationTarget("default", "small", 0.1)], [BurnWindow(600, 60, 2.0)],
                   sinks=[sink], min_runs=1, interval_s=0.01, storm_rate=None)
    engine = Cascade([Tier("small", "s", Scripted("x"), Fixed(0.2), 0.5),
                      Tier("large", "l", Scripted("y"), Fixed(0.9), 0.5)], slo=m,
                     metrics=False)
    async with engine:
        await anyio.sleep(0.05)
        started = time.perf_counter()
        for _ in range(20):
            await engine.run("q")
            await anyio.sleep(0.02)  # the monitor evaluates meanwhile: it fires
        elapsed = time.perf_counter() - started
        assert m.active()  # fired while the runs went on
    assert elapsed < 1.8, elapsed  # 20 runs did not wait for the two-second delivery
    assert [json.loads(b)["status"] for b in receiver.bodies] == ["firing"]  # delivered at close
