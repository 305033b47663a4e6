"""Escalation-rate SLOs: burn-rate math on synthetic streams with a fake clock (fires and
resolves at the computed moments, never flaps), errors do not count as escalations, the
policy's `slo:` block, and two processes sharing one real redis-server."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import anyio
import pytest
from scripted import Fixed, Scripted

from cascade import Cascade, ProviderHTTPError, Tier, parse_policy
from cascade.errors import PolicyError
from cascade.state import MemoryStore, RedisStore
from cascade.telemetry import (
    AlertState,
    BurnWindow,
    EscalationTarget,
    SloMonitor,
)

pytestmark = pytest.mark.anyio
FIXTURE = Path(__file__).parent / "fixtures" / "tiny_routerbench.csv"
ROOT = Path(__file__).resolve().parents[1]


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def monitor(clock: Clock, calibrated: float | None = None, **kw: object) -> SloMonitor:
    kw.setdefault("storm_rate", None)  # the burn-rate alerts alone, unless a test wants more
    return SloMonitor([EscalationTarget("faq", "small", 0.1, "large", calibrated)],
                      [BurnWindow(3600, 300, 2.0, "fast")], clock=clock, min_runs=20,
                      store=MemoryStore(clock=clock), **kw)  # type: ignore[arg-type]


async def stream(m: SloMonitor, clock: Clock, seconds: float, every_nth: int,
                 changes: list[tuple[float, AlertState]], start: float) -> None:
    """One run every 10 s for ``seconds``, every ``every_nth`` escalating; evaluate every
    10 s (recording when each change happens, relative to ``start``)."""
    for i in range(int(seconds // 10)):
        clock.now += 10
        m.record("faq", "small", escalated=i % every_nth == 0)
        for alert in await m.evaluate():
            changes.append((clock.now - start, alert.state))


async def test_fires_and_resolves_at_the_computed_moments_and_only_once() -> None:
    clock = Clock()
    m = monitor(clock)
    changes: list[tuple[float, AlertState]] = []
    origin = clock.now
    await stream(m, clock, 7200, 20, changes, origin)  # 5 % for two hours: within the SLO
    assert changes == [] and m.active() == []
    switch = clock.now
    await stream(m, clock, 3600, 2, changes, switch)  # 50 % for an hour
    # the hour's rate reaches 2 x 10 % when 0.05 (3600 - t) + 0.5 t >= 720: t >= 1200 s
    [(fired_at, state)] = changes
    assert state is AlertState.FIRING and 1200 <= fired_at <= 1200 + 2 * 60  # 60 s buckets
    assert m.active() == ["faq/small/fast"]
    changes.clear()
    back = clock.now
    await stream(m, clock, 3600, 20, changes, back)  # healthy again
    # the 5-minute rate falls below 20 % when 0.5 (300 - t) + 0.05 t < 60: t > 200 s; the
    # condition must then stay false for the short window (300 s) before it resolves
    [(resolved_at, state)] = changes
    assert state is AlertState.RESOLVED and 500 <= resolved_at <= 500 + 2 * 60
    assert m.active() == []


async def test_a_rate_hovering_at_the_threshold_does_not_flap() -> None:
    clock = Clock()
    m = monitor(clock)
    changes: list[tuple[float, AlertState]] = []
    await stream(m, clock, 3600, 2, changes, clock.now)  # 50 %: fires
    assert [s for _, s in changes] == [AlertState.FIRING]
    # then bursts that flip the short window above and below the threshold every ~2 min
    for _ in range(20):
        await stream(m, clock, 120, 1, changes, clock.now)   # 100 %
        await stream(m, clock, 120, 1000, changes, clock.now)  # ~0 %
    assert [s for _, s in changes] == [AlertState.FIRING]  # still firing, no flapping


async def test_too_few_runs_never_fire_and_errors_are_not_escalations() -> None:
    clock = Clock()
    m = monitor(clock)
    changes: list[tuple[float, AlertState]] = []
    await stream(m, clock, 150, 1, changes, clock.now)  # 15 runs, all escalated
    assert changes == []
    # an outage of the cheap tier: fallbacks, not escalations -> nothing counted
    dead = Scripted(fail=ProviderHTTPError("scripted@a", 503, "busy"))
    engine = Cascade([Tier("small", "s", dead, Fixed(0.9), 0.5),
                      Tier("large", "l", Scripted("y"), Fixed(0.9), 0.5)],
                     feature="faq", slo=m, metrics=False)
    for _ in range(30):
        clock.now += 10
        result = await engine.run("q")
        assert result.fallbacks == 1 and result.escalations == 0
    assert await m.evaluate() == []
    assert (await m.counts(m.targets[0], 3600)).runs == 15  # only the judged answers


async def test_the_engine_counts_confidence_escalations() -> None:
    clock = Clock()
    m = monitor(clock)
    engine = Cascade([Tier("small", "s", Scripted("x"), Fixed(0.2), 0.5),
                      Tier("large", "l", Scripted("y"), Fixed(0.9), 0.5)],
                     feature="faq", slo=m, metrics=False)
    for _ in range(25):
        await engine.run("q")
    counts = await m.counts(m.targets[0], 3600)
    assert (counts.runs, counts.escalations) == (0, 0)  # not flushed yet: nothing in the store
    [alert] = await m.evaluate()
    assert alert.state is AlertState.FIRING and alert.rate_long == 1.0 and alert.runs_long == 25


def _policy(slo: str) -> str:
    return (f"tiers:\n"
            f"  - {{name: small, model: cheap-model, provider: {{kind: replay, data: '{FIXTURE}'}}}}\n"
            f"  - {{name: large, model: dear-model, provider: {{kind: replay, data: '{FIXTURE}'}}}}\n"
            f"slo: {slo}\n")


async def test_the_policy_builds_the_monitor_on_the_resilience_store() -> None:
    policy = parse_policy(_policy("{escalation_rate: [{from: small, to: large, target: 0.3}], "
                                  "windows: [{long_s: 600, short_s: 60, burn_rate: 2}], "
                                  "min_runs: 5, alerts: {otel: false}}"))
    engine = Cascade.from_policy(policy)
    assert engine.slo is not None and engine.slo.store is engine.resilience.store
    assert [type(s).__name__ for s in engine.slo.sinks] == ["LogSink"]
    [target] = engine.slo.targets
    assert (target.feature, target.tier, target.to, target.target) == ("default", "small",
                                                                       "large", 0.3)
    assert engine.slo.windows[0].long_s == 600 and engine.slo.min_runs == 5
    async with engine:
        await engine.run("Question: What is 2+2?\nAnswer:")
    await engine.aclose()


@pytest.mark.parametrize(("slo", "match"), [
    ("{escalation_rate: [{from: large, target: 0.3}]}", "with a tier after it"),
    ("{escalation_rate: [{from: nope, target: 0.3}]}", "'nope' is not a tier"),
    ("{escalation_rate: [{from: small, to: small, target: 0.3}]}", "not a tier after"),
    ("{escalation_rate: [{from: small, target: 1.2}]}", "less than 1"),
    ("{escalation_rate: [{from: small, target: 0.6}]}", "could never fire"),
    (("{escalation_rate: [{from: small, target: 0.1}], windows: [{long_s: 60, short_s: 600, "
      "burn_rate: 2}]}"), "must be less than long_s"),
    ("{escalation_rate: []}", "needs escalation_rate, false_accept and/or input_drift"),
    ("{escalation_rate: [{from: small, target: 0.1}], alerts: {webhook: {url: 'ftp://x'}}}",
     "http"),
])
def test_bad_slo_blocks_are_policy_errors(slo: str, match: str) -> None:
    with pytest.raises(PolicyError, match=match):
        parse_policy(_policy(slo))


_WRITER = textwrap.dedent("""
    import anyio, sys
    from cascade.state import RedisStore
    from cascade.telemetry import BurnWindow, EscalationTarget, SloMonitor

    async def main():
        store = RedisStore(sys.argv[1], prefix=sys.argv[2])
        m = SloMonitor([EscalationTarget("faq", "small", 0.1)], [BurnWindow(3600, 300, 2.0)],
                       store=store, clock=lambda: 1_000_000.0)
        for i in range(40):
            m.record("faq", "small", escalated=i % 2 == 0)
        await m.flush()
        await store.aclose()

    anyio.run(main)
""")


async def test_two_processes_sharing_redis_see_the_same_counters(redis_server: str) -> None:
    prefix = "test-slo-two"
    done = await anyio.to_thread.run_sync(lambda: subprocess.run(
        [sys.executable, "-c", _WRITER, redis_server, prefix], capture_output=True, text=True,
        timeout=60, check=False, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}))
    assert done.returncode == 0, done.stderr
    store = RedisStore(redis_server, prefix=prefix)
    try:
        here = SloMonitor([EscalationTarget("faq", "small", 0.1)], [BurnWindow(3600, 300, 2.0)],
                          store=store, clock=lambda: 1_000_000.0 + 30, min_runs=50)
        counts = await here.counts(here.targets[0], 3600)
        assert (counts.runs, counts.escalations) == (40, 20)  # the other process's
        assert await here.evaluate() == []  # 40 runs < min_runs
        for _ in range(20):
            here.record("faq", "small", escalated=False)
        [fired] = await here.evaluate()  # 40 from the other process + 20 from this one
        assert fired.state is AlertState.FIRING and fired.runs_long == 60
        [alert] = await SloMonitor(
            [EscalationTarget("faq", "small", 0.1)], [BurnWindow(3600, 300, 2.0)], store=store,
            clock=lambda: 1_000_000.0 + 30, min_runs=50).evaluate()  # a third reader agrees
        assert alert.state is AlertState.FIRING and alert.runs_long == 60
        assert alert.rate_long == pytest.approx(20 / 60)
    finally:
        await store.aclose()


# --- cascade report ------------------------------------------------------------------------------


def _report(*args: str) -> tuple[int, str]:
    from typer.testing import CliRunner

    from cascade.cli import app

    done = CliRunner().invoke(app, ["report", *args], terminal_width=200)
    return done.exit_code, done.output


async def test_report_reads_redis_and_the_snapshot_file(redis_server: str, tmp_path: Path) -> None:
    policy = tmp_path / "faq.yaml"
    policy.write_text(
        f"feature: faq\n"
        f"tiers:\n"
        f"  - {{name: small, model: cheap-model, provider: {{kind: replay, data: '{FIXTURE}'}}, "
        f"estimator: {{kind: agreement, answer: text}}, threshold: 0.5}}\n"
        f"  - {{name: large, model: dear-model, provider: {{kind: replay, data: '{FIXTURE}'}}}}\n"
        f"resilience: {{store: {{kind: redis, url: '{redis_server}', prefix: 'test-report:'}}}}\n"
        f"slo: {{escalation_rate: [{{from: small, to: large, target: 0.3}}], min_runs: 2, "
        f"snapshot: snap.json, alerts: {{log: false, otel: false}}}}\n")
    async with Cascade.from_yaml(policy) as engine:
        for _ in range(3):  # agreement without evidence: every answer escalates
            result = await engine.run("Question: What is 2+2?\nAnswer:")
            assert result.escalations == 1
    code, output = await anyio.to_thread.run_sync(_report, "--policy", str(policy), "--json")
    assert code == 0, output
    data = json_of(output)
    faq = data["features"]["faq"]
    small, large = faq["tiers"]
    assert faq["runs"] == 3
    assert faq["alerts"] == ["faq/small/fast", "faq/small/slow", "faq/small/storm"]
    assert (small["judged"], small["escalations"], small["target"]) == (3, 3, 0.3)
    assert (large["judged"], large["accepted"], large["escalations"]) == (3, 3, 0)
    assert faq["cost"] == pytest.approx(small["cost"] + large["cost"]) and faq["cost"] > 0
    code, output = await anyio.to_thread.run_sync(_report, "--snapshot",
                                                  str(tmp_path / "snap.json"))
    assert code == 0, output
    assert "faq: 3 runs" in output and "100.0%" in output and "≤ 30%" in output
    assert "alerts firing: faq/small/fast, faq/small/slow, faq/small/storm" in output


def json_of(output: str) -> dict:  # type: ignore[type-arg]
    import json

    return json.loads(output)


@pytest.mark.parametrize(("args", "match"), [
    ((), "either --policy"),
    (("--snapshot", "x.json", "--policy", "p.yaml"), "either --policy"),
    (("--snapshot", "missing.json"), "cannot read missing.json"),
    (("--snapshot", "bad.json"), "is not a snapshot"),
    (("--snapshot", "bad.json", "--window", "60"), "--window applies to --policy"),
    (("--policy", "memory.yaml"), "keeps its counters in memory"),
    (("--policy", "noslo.yaml"), "no slo: block"),
])
def test_report_errors_are_clear(args: tuple[str, ...], match: str, tmp_path: Path,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.json").write_text("[1, 2]")
    (tmp_path / "memory.yaml").write_text(_policy("{escalation_rate: [{from: small, target: 0.3}]}"))
    (tmp_path / "noslo.yaml").write_text(_policy("null"))
    code, output = _report(*args)
    assert code == 2 and match in " ".join(output.split()), output


async def test_an_escalation_storm_fires_before_the_burn_rate_alert() -> None:
    clock = Clock()
    m = monitor(clock, storm_rate=0.95)
    changes: list[tuple[float, AlertState]] = []
    await stream(m, clock, 3600, 20, changes, clock.now)  # healthy: 5 %
    assert changes == []
    switch = clock.now
    kinds: list[str] = []
    for i in range(60):  # the cheap tier dies: every answer escalates
        clock.now += 10
        m.record("faq", "small", escalated=True)
        for alert in await m.evaluate():
            changes.append((clock.now - switch, alert.state))
            kinds.append(alert.key)
    # the storm's 5-minute window is >= 95 % escalated once 0.95 of its 30 runs are: ~285 s,
    # long before the one-hour burn-rate alert (which needs 20 % over the hour: ~630 s)
    assert kinds[0] == "faq/small/storm" and 240 <= changes[0][0] <= 300 + 60  # 60 s buckets
    assert "faq/small/fast" in kinds


async def test_threshold_drift_against_the_calibrated_rate_in_both_directions() -> None:
    from cascade.telemetry import drift_z

    assert drift_z(30, 100, 0.3) == 0.0 and drift_z(50, 100, 0.3) > 4 > drift_z(40, 100, 0.3)
    for every_nth, direction in ((2, "up"), (100, "down")):  # 50 % or 1 %, calibrated 20 %
        clock = Clock()
        m = SloMonitor([EscalationTarget("faq", "small", 0.3, calibrated=0.2)],
                       [BurnWindow(3600, 300, 2.0, "fast")], clock=clock, min_runs=20,
                       store=MemoryStore(clock=clock), storm_rate=None)
        changes: list[tuple[float, AlertState]] = []
        await stream(m, clock, 7200, 5, changes, clock.now)  # exactly the calibrated 20 %
        assert changes == [], direction
        await stream(m, clock, 3600, every_nth, changes, clock.now)
        assert [s for _, s in changes] == [AlertState.FIRING], direction
        assert m.active() == ["faq/small/drift"], direction  # within the SLO: no burn alert


async def test_counts_never_flushed_are_warned_about_once(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    from cascade.telemetry import _slo

    monkeypatch.setattr(_slo, "_PENDING_WARN", 50)
    clock = Clock()
    m = monitor(clock)
    engine = Cascade([Tier("small", "s", Scripted("x"), Fixed(0.2), 0.5),
                      Tier("large", "l", Scripted("y"), Fixed(0.9), 0.5)],
                     feature="faq", slo=m, metrics=False)
    for _ in range(40):  # no `async with`: nothing evaluates, a new bucket every run
        clock.now += 60
        await engine.run("q")
    warned = [r for r in caplog.records if "have not been flushed" in r.getMessage()]
    assert len(warned) == 1
    await m.flush()  # what was counted is still all there
    assert (await m.counts(m.targets[0], 3600)).runs == 40
