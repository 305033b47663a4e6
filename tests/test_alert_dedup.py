"""Cross-process alert deduplication: monitors sharing one store (in memory, or a real
redis-server with one client each, as two processes have) send ONE notification per alert
episode and one resolve, numbered by episode."""

from __future__ import annotations

import pytest
from scripted import FakeClock

from cascade.state import MemoryStore, RedisStore, Store
from cascade.telemetry import AlertState, BurnWindow, EscalationTarget, SloMonitor

pytestmark = pytest.mark.anyio


class Recorder:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str, int | None]] = []

    async def send(self, alert: object) -> None:
        self.sent.append((alert.key, alert.state.value, alert.episode))  # type: ignore[attr-defined]


def _monitor(store: Store, clock: FakeClock, sink: Recorder, **kw: object) -> SloMonitor:
    return SloMonitor([EscalationTarget("faq", "small", 0.1)],
                      [BurnWindow(600, 60, 2.0, "fast")], store=store, clock=clock,
                      min_runs=10, storm_rate=None, sinks=[sink], **kw)  # type: ignore[arg-type]


async def _episodes(stores: tuple[Store, Store], clock: FakeClock) -> list[tuple[str, str, int | None]]:
    """Two monitors on the two stores (one shared counter space) both see two episodes;
    the notifications either of them sent, in order."""
    sink = Recorder()
    a, b = _monitor(stores[0], clock, sink), _monitor(stores[1], clock, sink)
    for episode in range(2):
        for escalate in (True, False):  # 5 min escalating, then 15 min quiet
            for _ in range(30 if escalate else 90):
                clock.now += 10
                (a if int(clock.now) % 20 else b).record("faq", "small", escalated=escalate)
                for monitor in (a, b):
                    await monitor.deliver(await monitor.evaluate())
        assert a.active() == b.active() == [], episode  # both saw it resolve
    assert a.suppressed + b.suppressed == 4  # each change: one sent, one suppressed
    return sink.sent


EXPECTED = [("faq/small/fast", "firing", 1), ("faq/small/fast", "resolved", 1),
            ("faq/small/fast", "firing", 2), ("faq/small/fast", "resolved", 2)]


async def test_two_monitors_on_one_memory_store_notify_once_per_episode() -> None:
    clock = FakeClock(1_000_000.0)
    store = MemoryStore(clock=clock)
    assert await _episodes((store, store), clock) == EXPECTED


async def test_two_monitors_on_one_redis_server_notify_once_per_episode(
        redis_server: str) -> None:
    clock = FakeClock(1_000_000.0)
    one, two = (RedisStore(redis_server, prefix="test-dedup:") for _ in range(2))
    try:
        assert await _episodes((one, two), clock) == EXPECTED
    finally:
        await one.aclose()
        await two.aclose()


async def test_without_a_shared_store_each_monitor_notifies_and_dedup_can_be_off() -> None:
    clock = FakeClock(1_000_000.0)
    sink = Recorder()
    own = [_monitor(MemoryStore(clock=clock), clock, sink) for _ in range(2)]
    shared = MemoryStore(clock=clock)
    off = [_monitor(shared, clock, sink, dedup=False) for _ in range(2)]
    for _ in range(30):
        clock.now += 10
        for monitor in (*own, *off):
            monitor.record("faq", "small", escalated=True)
            await monitor.deliver(await monitor.evaluate())
    assert sorted(sink.sent, key=str) == [
        ("faq/small/fast", "firing", 1), ("faq/small/fast", "firing", 1),  # their own stores
        ("faq/small/fast", "firing", None), ("faq/small/fast", "firing", None)]  # dedup off


async def test_a_claim_after_the_fact_is_refused_and_a_late_resolve_still_lands() -> None:
    clock = FakeClock(1_000_000.0)
    store = MemoryStore(clock=clock)
    sink = Recorder()
    a, b = _monitor(store, clock, sink), _monitor(store, clock, sink)
    for _ in range(30):
        clock.now += 10
        a.record("faq", "small", escalated=True)
        await a.deliver(await a.evaluate())
    [fired] = sink.sent
    assert fired == ("faq/small/fast", "firing", 1)
    changes = await b.evaluate()  # b reads the same counters: fires locally
    assert [c.state for c in changes] == [AlertState.FIRING]
    await b.deliver(changes)
    assert len(sink.sent) == 1 and b.suppressed == 1
    clock.now += 3600  # quiet for an hour: b resolves first and sends the resolve
    await b.deliver(await b.evaluate())
    await a.deliver(await a.evaluate())
    clock.now += 60  # (the resolve waits out the short window)
    await b.deliver(await b.evaluate())
    assert a.active() == ["faq/small/fast"] and b.active() == []
    await a.deliver(await a.evaluate())
    assert a.active() == [] and a.suppressed == 1
    assert sink.sent[1:] == [("faq/small/fast", "resolved", 1)]
