"""Escalation-rate SLOs: a multi-window, multi-burn-rate monitor (Google SRE workbook, ch. 5).

For each tier with a target (``at most 30 % of the answers judged at tier small escalate``),
runs are counted in time buckets — in the shared ``Store`` when the policy configures one
(Redis: every process adds to and reads the same counters), else in memory. An alert of a
window pair fires when the escalation rate over both its long and its short window is at
least ``burn_rate × target`` (with at least ``min_runs`` runs in the long window), and
resolves only after the condition has been false for ``resolve_after_s`` without a break
(default: the short window), so it does not flap. Only changes are sent to the sinks
(fired, resolved): one notification per change, never one per evaluation.

Counting is synchronous and cheap (``record``, from the ``SloObserver`` on the request path);
``evaluate`` (flush the counts to the store, read the windows, step the alerts) and the
sinks run off the request path, in ``running()``'s background task."""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import anyio

from cascade.errors import ConfigError
from cascade.state import Add, MemoryStore, StateError, Store
from cascade.telemetry._alert_model import (
    DEFAULT_WINDOWS,
    Alert,
    AlertDeliveryError,
    AlertKind,
    AlertSink,
    AlertState,
    AnyAlert,
    BurnWindow,
    EscalationTarget,
    FalseAcceptTarget,
    SignalAlert,
    Tracker,
    bound_condition,
)
from cascade.telemetry._events import RunInfo
from cascade.telemetry._input_drift import InputDriftTarget, psi
from cascade.telemetry._observers import RunObserver
from cascade.telemetry._stats import clopper_pearson as _interval
from cascade.types import Climb, Decision, Result, RouteDecision, climbs

if TYPE_CHECKING:
    from cascade._tier import Routing
    from cascade.policy import Policy, SloSpec
    from cascade.telemetry._audit import AuditSampler

log = logging.getLogger("cascade.slo")


_ROUTER = "router"  # the counters' "tier" of routed queries (input drift)
_PENDING_WARN = 20_000  # counter keys recorded but never flushed: nobody evaluates


def rate(escalations: float, runs: float) -> float:
    return escalations / runs if runs > 0 else 0.0


def drift_z(escalations: float, runs: float, expected: float) -> float:
    """One-sample binomial z statistic of the observed escalation rate against the rate
    calibration predicted (positive: more escalations than predicted)."""
    if runs <= 0:
        return 0.0
    return (escalations / runs - expected) / math.sqrt(expected * (1 - expected) / runs)


@dataclass(frozen=True, slots=True)
class TierWindow:
    """Counts of one target over one window, as read by ``evaluate``."""

    runs: int
    escalations: int

    @property
    def rate(self) -> float:
        return rate(self.escalations, self.runs)


@dataclass(slots=True)
class SloMonitor:
    """See the module's docstring. ``clock`` is wall-clock seconds (shared with other
    processes through the store's bucket keys); inject a fake one in tests."""

    targets: Sequence[EscalationTarget]
    windows: Sequence[BurnWindow] = DEFAULT_WINDOWS
    store: Store | None = None
    sinks: Sequence[AlertSink] = ()
    clock: Callable[[], float] = time.time
    min_runs: int = 20
    bucket_s: float | None = None  # default: the shortest short window / 5
    resolve_after_s: float | None = None  # default: each window's short window
    prefix: str = "slo"
    interval_s: float = 10.0  # running(): evaluate this often
    storm_rate: float | None = 0.95  # None: no escalation-storm detector
    drift_z: float = 4.0  # |z| of the threshold-drift test that fires (targets with calibrated)
    tiers: Sequence[str] = ()  # every tier of the feature, for the report (default: targets')
    snapshot_path: str | None = None  # written after every evaluation (cascade report)
    quality: Sequence[FalseAcceptTarget] = ()  # false-accept targets (audited answers)
    audit_alpha: float | None = None  # the audit's calibrated alpha: alert above it (tier *)
    audit_confidence: float = 0.95  # of the Clopper-Pearson intervals
    audit_window_s: float | None = None  # audits counted over (default: the longest window)
    audit_features: Sequence[str] = ()  # features audited (default: the targets')
    input_drift: InputDriftTarget | None = None  # router input drift (a learned router's)
    dedup: bool = True  # one notification per alert episode among monitors sharing the store
    claim_ttl_s: float = 7 * 86400  # an episode's claim outlives its last change this long
    suppressed: int = 0  # changes another monitor sharing the store had already sent
    _features: set[str] = field(default_factory=set)
    _pending: Counter[str] = field(default_factory=Counter)
    _trackers: dict[str, Tracker] = field(default_factory=dict)
    _by_tier: dict[tuple[str, str], EscalationTarget] = field(default_factory=dict)
    delivery_failures: int = 0
    _warned: bool = False

    def __post_init__(self) -> None:
        if not (self.targets or self.quality or self.audit_alpha is not None
                or self.input_drift is not None) \
                or not self.windows:
            raise ValueError("an SLO monitor needs at least one target and one window")
        if self.audit_alpha is not None and not 0 < self.audit_alpha < 1:
            raise ValueError("audit_alpha must be in (0, 1)")
        if self.store is None:
            self.store = MemoryStore()
        if self.bucket_s is None:
            self.bucket_s = min(w.short_s for w in self.windows) / 5
        if self.bucket_s <= 0 or any(w.short_s < self.bucket_s for w in self.windows):
            raise ValueError("bucket_s must be > 0 and at most every short window")
        self._by_tier = {(t.feature, t.tier): t for t in self.targets}
        self._features = {t.feature for t in (*self.targets, *self.quality)} | set(
            self.audit_features) | ({self.input_drift.feature} if self.input_drift else set())
        if not self.tiers:
            self.tiers = tuple(dict.fromkeys(t.tier for t in (*self.targets, *self.quality)))

    # --- counting (sync, on the request path) ------------------------------------------------

    def record(self, feature: str, tier: str, escalated: bool, at: float | None = None) -> None:
        """One answer judged at ``tier`` (accepted, or escalated for low confidence)."""
        if feature not in self._features:
            return
        bucket = self._bucket(self.clock() if at is None else at)
        self._pending[self._key(feature, tier, bucket, "runs")] += 1
        if escalated:
            self._pending[self._key(feature, tier, bucket, "esc")] += 1

    def record_result(self, result: Result, at: float | None = None) -> None:
        """Every judged attempt of a run: errors, timeouts and skips are no verdict on the
        tier's answers (an outage is not a worse cheap model), but they are counted as
        fallbacks; with each tier's cost and acceptances, for ``cascade report``."""
        feature = result.feature
        if feature not in self._features:
            return
        at = self.clock() if at is None else at
        bucket, pending = self._bucket(at), self._pending
        if len(pending) > _PENDING_WARN and not self._warned:
            self._warned = True
            log.warning("SLO counts of %r have not been flushed for a while (%d keys pending): "
                        "evaluate inside `async with Cascade(...)` or call evaluate()", feature,
                        len(pending))
        pending[self._key(feature, "*", bucket, "runs")] += 1
        pending[self._key(feature, "*", bucket, "cost")] += result.cost
        for before, _, climb in climbs(result.attempts):
            if climb is Climb.FALLBACK:
                pending[self._key(feature, before.tier_name, bucket, "fb")] += 1
        for attempt in result.attempts:
            if attempt.cost:
                pending[self._key(feature, attempt.tier_name, bucket, "cost")] += attempt.cost
            if attempt.decision in (Decision.ACCEPT, Decision.ESCALATE):
                self.record(feature, attempt.tier_name, attempt.decision is Decision.ESCALATE, at)
                if attempt.decision is Decision.ACCEPT and result.accepted:
                    pending[self._key(feature, attempt.tier_name, bucket, "acc")] += 1

    def record_audit(self, feature: str, tier: str, false_accept: bool,
                     at: float | None = None) -> None:
        """One audited answer of ``tier`` (``false_accept``: the judge disagreed); counted
        per tier and over every tier (``*``), shared through the store like the runs."""
        if feature not in self._features:
            return
        bucket = self._bucket(self.clock() if at is None else at)
        for name in (tier, "*"):
            self._pending[self._key(feature, name, bucket, "audit")] += 1
            if false_accept:
                self._pending[self._key(feature, name, bucket, "fa")] += 1

    def record_route(self, feature: str, similarity: float, at: float | None = None) -> None:
        """One routed query's similarity to the nearest training query (input drift)."""
        drift = self.input_drift
        if drift is None or feature != drift.feature or not math.isfinite(similarity):
            return
        bucket = self._bucket(self.clock() if at is None else at)
        pending = self._pending
        pending[self._key(feature, _ROUTER, bucket, "rt")] += 1
        pending[self._key(feature, _ROUTER, bucket, f"b{drift.bin(similarity)}")] += 1
        if similarity < drift.min_similarity:
            pending[self._key(feature, _ROUTER, bucket, "cold")] += 1

    async def input_drift_state(self, window_s: float | None = None,
                                now: float | None = None) -> dict[str, object] | None:
        """Routed queries over the window, the share below the cold-start similarity with
        its interval, the training share and limit, and the PSI (None: no detector)."""
        drift = self.input_drift
        if drift is None:
            return None
        bins = [f"b{i}" for i in range(len(drift.expected))]
        routed, cold, *hist = await self._sums(drift.feature, _ROUTER, ("rt", "cold", *bins),
                                               window_s or drift.window_s, now)
        low, high = _interval(int(cold), int(routed), self.audit_confidence)
        return {"queries": int(routed), "below": int(cold), "share": rate(cold, routed),
                "low": low, "high": high, "baseline": drift.baseline,
                "limit": drift.max_share, "min_similarity": drift.min_similarity,
                "psi": psi(drift.expected, hist)}

    async def _evaluate_input_drift(self, now: float) -> list[AnyAlert]:
        drift = self.input_drift
        state = await self.input_drift_state(now=now)
        if drift is None or state is None:
            return []
        key = f"{drift.feature}/{_ROUTER}/{AlertKind.INPUT_DRIFT.value}"
        tracker = self._trackers.setdefault(key, Tracker())
        low, high, queries = state["low"], state["high"], state["queries"]
        condition = queries >= drift.min_queries and bound_condition(  # type: ignore[operator]
            tracker.firing, low, high, drift.max_share)  # type: ignore[arg-type]
        change = tracker.step(condition, now, 0.0)
        if change is None:
            return []
        return [SignalAlert(change, AlertKind.INPUT_DRIFT, drift.feature, _ROUTER,
                            state["share"], low, high, drift.max_share,  # type: ignore[arg-type]
                            queries, drift.window_s, now, tracker.since,  # type: ignore[arg-type]
                            f"training share {100 * drift.baseline:.1f}%, PSI "
                            f"{state['psi']:.2f}")]

    def observer(self) -> RunObserver:
        return SloObserver(self)

    # --- evaluation (async, off the request path) ----------------------------------------------

    async def flush(self) -> None:
        """Add the counts recorded since the last flush to the store (one atomic add)."""
        if not self._pending:
            return
        pending, self._pending = self._pending, Counter()
        ttl = max(w.long_s for w in self.windows) + 2 * (self.bucket_s or 0)
        try:
            await self.store.add([Add(k, v, ttl_s=ttl) for k, v in sorted(pending.items())])  # type: ignore[union-attr]
        except StateError:
            self._pending.update(pending)  # kept for the next flush
            raise

    async def counts(self, target: EscalationTarget, window_s: float,
                     now: float | None = None) -> TierWindow:
        runs, escalations = await self._sums(target.feature, target.tier, ("runs", "esc"),
                                             window_s, now)
        return TierWindow(int(runs), int(escalations))

    async def _sums(self, feature: str, tier: str, kinds: Sequence[str], window_s: float,
                    now: float | None = None) -> tuple[float, ...]:
        now = self.clock() if now is None else now
        last = self._bucket(now)
        first = self._bucket(now - window_s) + 1
        keys = [self._key(feature, tier, b, kind)
                for b in range(first, last + 1) for kind in kinds]
        values = await self.store.get(keys)  # type: ignore[union-attr]
        return tuple(math.fsum(values[i::len(kinds)]) for i in range(len(kinds)))

    async def snapshot(self, window_s: float | None = None) -> dict[str, object]:
        """Per feature over ``window_s`` (default: the longest window): runs, cost, and per
        tier the answers judged, escalated, accepted, fallbacks and cost, with the SLO
        target and the active alerts — what ``cascade report`` shows (JSON-ready)."""
        await self.flush()
        now = self.clock()
        window = window_s if window_s is not None else max(w.long_s for w in self.windows)
        features: dict[str, object] = {}
        for feature in sorted(self._features):
            runs, cost = await self._sums(feature, "*", ("runs", "cost"), window, now)
            tiers = []
            for tier in self.tiers:
                judged, esc, acc, fb, spent = await self._sums(
                    feature, tier, ("runs", "esc", "acc", "fb", "cost"), window, now)
                target = self._by_tier.get((feature, tier))
                tiers.append({"tier": tier, "judged": int(judged), "escalations": int(esc),
                              "escalation_rate": rate(esc, judged), "accepted": int(acc),
                              "fallbacks": int(fb), "cost": spent,
                              "target": None if target is None else target.target,
                              "to": None if target is None else target.to,
                              "audit": await self._audit_summary(feature, tier, window, now)})
            features[feature] = {
                "runs": int(runs), "cost": cost, "tiers": tiers,
                "audit": await self._audit_summary(feature, "*", window, now),
                "input_drift": await self.input_drift_state(now=now)
                if self.input_drift and self.input_drift.feature == feature else None,
                "alerts": [k for k in self.active() if k.startswith(f"{feature}/")]}
        return {"at": now, "window_s": window, "features": features}

    async def _audit_summary(self, feature: str, tier: str, window_s: float,
                             now: float) -> dict[str, object] | None:
        """Audited answers of ``tier`` (``*``: all) with the false-accept estimate and its
        interval, and its limit (the SLO's max; alpha for ``*``); None if never audited and
        without a limit."""
        limit = self.audit_alpha if tier == "*" else next(
            (q.max for q in self.quality if (q.feature, q.tier) == (feature, tier)), None)
        audited, false, low, high = await self.audit_estimate(feature, tier, window_s, now)
        if not audited and limit is None:
            return None
        return {"audited": audited, "false_accepts": false, "rate": rate(false, audited),
                "low": low, "high": high, "confidence": self.audit_confidence,
                "limit": limit}

    async def write_snapshot(self, path: str) -> None:
        """``snapshot()`` as JSON, replacing ``path`` atomically."""
        text = json.dumps(await self.snapshot(), indent=2, sort_keys=True)

        def write() -> None:
            tmp = f"{path}.tmp"
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(text)
            os.replace(tmp, path)

        await anyio.to_thread.run_sync(write)

    async def evaluate(self) -> list[AnyAlert]:
        """Flush, read every window, step every alert; the changes (also sent by
        ``deliver``)."""
        await self.flush()
        now = self.clock()
        changes: list[AnyAlert] = []
        for target in self.targets:
            for window, kind in self._detectors(target):
                long = await self.counts(target, window.long_s, now)
                short = await self.counts(target, window.short_s, now)
                match kind:
                    case AlertKind.DRIFT:
                        condition = long.runs >= self.min_runs and abs(drift_z(
                            long.escalations, long.runs, target.calibrated or 0.5)) >= self.drift_z
                    case AlertKind.BURN_RATE | AlertKind.STORM:
                        threshold = window.burn_rate * target.target
                        condition = (long.runs >= self.min_runs and long.rate >= threshold
                                     and short.runs > 0 and short.rate >= threshold)
                key = f"{target.feature}/{target.tier}/{window.label}"
                tracker = self._trackers.setdefault(key, Tracker())
                resolve = self.resolve_after_s if self.resolve_after_s is not None \
                    else window.short_s
                change = tracker.step(condition, now, resolve)
                if change is not None:
                    changes.append(Alert(change, target, window, long.rate, short.rate,
                                         long.runs, now, tracker.since, kind))
        changes += await self._evaluate_audits(now)
        changes += await self._evaluate_input_drift(now)
        return changes

    def _audit_limits(self) -> list[tuple[str, str, float, AlertKind]]:
        """(feature, tier, limit, kind) of every false-accept alert: the SLO's targets, and
        the calibrated alpha over every audited tier."""
        limits = [(q.feature, q.tier, q.max, AlertKind.FALSE_ACCEPT) for q in self.quality]
        if self.audit_alpha is not None:
            features = self.audit_features or sorted(self._features)
            limits += [(f, "*", self.audit_alpha, AlertKind.AUDIT) for f in features]
        return limits

    async def audit_estimate(self, feature: str, tier: str, window_s: float | None = None,
                             now: float | None = None) -> tuple[int, int, float, float]:
        """(audited, false accepts, low, high) of ``tier`` (``*``: all) over the window."""
        window = window_s or self.audit_window_s or max(w.long_s for w in self.windows)
        audited, false = await self._sums(feature, tier, ("audit", "fa"), window, now)
        low, high = _interval(int(false), int(audited), self.audit_confidence)
        return int(audited), int(false), low, high

    async def _evaluate_audits(self, now: float) -> list[AnyAlert]:
        changes: list[AnyAlert] = []
        window = self.audit_window_s or max(w.long_s for w in self.windows)
        for feature, tier, limit, kind in self._audit_limits():
            audited, false, low, high = await self.audit_estimate(feature, tier, window, now)
            key = f"{feature}/{tier}/{kind.value}"
            tracker = self._trackers.setdefault(key, Tracker())
            condition = audited > 0 and bound_condition(tracker.firing, low, high, limit)
            change = tracker.step(condition, now, 0.0)
            if change is not None:
                changes.append(SignalAlert(change, kind, feature, tier, rate(false, audited),
                                           low, high, limit, audited, window, now,
                                           tracker.since))
        return changes

    def _detectors(self, target: EscalationTarget) -> list[tuple[BurnWindow, AlertKind]]:
        """The SLO's window pairs; an escalation storm (the shortest short window, most of
        it escalating, and a bucket of it); threshold drift against the calibrated rate
        (over the longest long window)."""
        found = [(w, AlertKind.BURN_RATE) for w in self.windows]
        shortest = min(w.short_s for w in self.windows)
        bucket = self.bucket_s or shortest / 5
        if self.storm_rate is not None and bucket < shortest:
            found.append((BurnWindow(shortest, bucket, self.storm_rate / target.target, "storm"),
                          AlertKind.STORM))
        if target.calibrated is not None:
            longest = max(w.long_s for w in self.windows)
            found.append((BurnWindow(longest, shortest, 1.0, "drift"), AlertKind.DRIFT))
        return found

    def active(self) -> list[str]:
        return sorted(k for k, t in self._trackers.items() if t.firing)

    async def claim(self, alert: AnyAlert) -> int | None:
        """Claim ``alert``'s change in the store, so that of every monitor sharing it (other
        processes, Redis) exactly one sends it: the episode number (1 for the alert's first
        firing), or None when another monitor already sent this change.

        One counter per alert: even while resolved, odd while firing. A change is claimed
        with a compare-and-increment — an add limited to the value just read plus one, which
        the store applies only if nobody changed the counter in between."""
        key = f"{self.prefix}:alert:{alert.key}"
        store: Store = self.store  # type: ignore[assignment]  (set in __post_init__)
        (value,) = await store.get([key])
        current = int(value)
        firing = current % 2 == 1
        if firing == (alert.state is AlertState.FIRING):
            return None  # already fired (or resolved) by another monitor
        ok, _ = await store.add([Add(key, 1, current + 1, ttl_s=self.claim_ttl_s)])
        if not ok:
            return None
        await store.raise_to(key, current + 1, ttl_s=self.claim_ttl_s)  # (extends its life)
        return current // 2 + 1

    async def _claimed(self, alerts: Sequence[AnyAlert]) -> list[AnyAlert]:
        """The changes this monitor is the one to send, with their episode; a store that
        cannot be reached lets every change through (a duplicate beats a lost page)."""
        if not self.dedup:
            return list(alerts)
        out: list[AnyAlert] = []
        for alert in alerts:
            try:
                episode = await self.claim(alert)
            except StateError as exc:
                log.warning("alert %s: not deduplicated (%s)", alert.key, exc)
                out.append(alert)
                continue
            if episode is None:
                self.suppressed += 1
                log.debug("alert %s %s: already sent by another monitor", alert.key,
                          alert.state.value)
            else:
                out.append(dataclasses.replace(alert, episode=episode))
        return out

    async def deliver(self, alerts: Sequence[AnyAlert]) -> None:
        """Send each change this monitor claims (``claim``) to every sink, concurrently; a
        sink that fails is logged and counted, never raised (the others still get it)."""
        alerts = await self._claimed(alerts)
        async def send(sink: AlertSink, alert: AnyAlert) -> None:
            try:
                await sink.send(alert)
            except AlertDeliveryError as exc:
                self.delivery_failures += 1
                log.error("alert %s (%s) not delivered by %s: %s", alert.key,
                          alert.state.value, type(sink).__name__, exc)

        async with anyio.create_task_group() as tg:
            for alert in alerts:
                for sink in self.sinks:
                    tg.start_soon(send, sink, alert)

    @asynccontextmanager
    async def running(self, interval_s: float | None = None,
                      sleep: Callable[[float], object] | None = None,
                      drain_s: float = 10.0) -> AsyncIterator[SloMonitor]:
        """Evaluate every ``interval_s`` (default: the monitor's) in a background task while
        the block runs, and once more at its end. Notifications are delivered in tasks of
        their own, so a slow sink never delays an evaluation (nor a run); at the end,
        deliveries under way get ``drain_s`` seconds to finish."""
        pause = sleep or anyio.sleep
        every = self.interval_s if interval_s is None else interval_s
        loop_scope = anyio.CancelScope()
        inflight = _InFlight()

        async def loop(tg: anyio.abc.TaskGroup) -> None:
            with loop_scope:
                while True:
                    await pause(every)  # type: ignore[misc]
                    await self._evaluate_and_send(tg, inflight)

        async with anyio.create_task_group() as tg:
            tg.start_soon(loop, tg)
            try:
                yield self
            finally:
                loop_scope.cancel()
                with anyio.move_on_after(drain_s, shield=True):
                    await self._evaluate_and_send(tg, inflight)
                    await inflight.idle()
                tg.cancel_scope.cancel()

    async def _evaluate_and_send(self, tg: anyio.abc.TaskGroup, inflight: _InFlight) -> None:
        try:
            changes = await self.evaluate()
        except StateError as exc:  # the store is down: counts are kept, tried again later
            log.warning("SLO evaluation skipped: %s", exc)
            return
        if changes:
            tg.start_soon(inflight.run, self.deliver, changes)
        if self.snapshot_path is not None:
            try:
                await self.write_snapshot(self.snapshot_path)
            except OSError as exc:
                log.warning("SLO snapshot not written to %s: %s", self.snapshot_path, exc)

    def _bucket(self, at: float) -> int:
        return math.floor(at / (self.bucket_s or 1.0))

    def _key(self, feature: str, tier: str, bucket: int, kind: str) -> str:
        return f"{self.prefix}:{feature}:{tier}:{bucket}:{kind}"


class _InFlight:
    """Deliveries under way, so the end of ``running`` can wait for them."""

    def __init__(self) -> None:
        self.count = 0
        self.done = anyio.Event()

    async def run(self, deliver: Callable[[Sequence[AnyAlert]], object],
                  alerts: Sequence[AnyAlert]) -> None:
        self.count += 1
        try:
            await deliver(alerts)  # type: ignore[misc]
        finally:
            self.count -= 1
            if self.count == 0:
                self.done.set()
                self.done = anyio.Event()

    async def idle(self) -> None:
        if self.count:
            await self.done.wait()


def monitor_from_spec(spec: SloSpec, feature: str, store: Store | None = None,
                      clock: Callable[[], float] = time.time, tiers: Sequence[str] = (),
                      snapshot_path: str | None = None,
                      audit_alpha: float | None = None) -> SloMonitor:
    """The monitor a policy's ``slo:`` block describes, counting in ``store``
    (``audit_alpha``: the audit's calibrated false-accept rate, alerted on too)."""
    return SloMonitor(
        [EscalationTarget(feature, t.tier, t.target, t.to, t.calibrated)
         for t in spec.escalation_rate],
        [BurnWindow(w.long_s, w.short_s, w.burn_rate, w.name) for w in spec.windows],
        store=store, sinks=sinks_from_spec(spec), clock=clock, min_runs=spec.min_runs,
        resolve_after_s=spec.resolve_after_s, interval_s=spec.evaluate_every_s,
        tiers=tuple(tiers), snapshot_path=snapshot_path, storm_rate=spec.storm_rate,
        drift_z=spec.drift_z, quality=[FalseAcceptTarget(feature, q.tier, q.max)
                                       for q in spec.false_accept],
        audit_alpha=audit_alpha, audit_features=(feature,))


def sinks_from_spec(spec: SloSpec | None) -> list[AlertSink]:
    """The alert sinks of ``slo.alerts`` (no ``slo:`` block: logging only)."""
    from cascade.telemetry._alerts import LogSink, OTelSink, WebhookSink

    if spec is None:
        return [LogSink()]
    sinks: list[AlertSink] = []
    if spec.alerts.log:
        sinks.append(LogSink())
    if spec.alerts.otel:
        sinks.append(OTelSink())
    hook = spec.alerts.webhook
    if hook is not None:
        sinks.append(WebhookSink(hook.url.get_secret_value(),
                                 secret=hook.secret.get_secret_value() if hook.secret else None,
                                 max_attempts=hook.max_attempts, timeout_s=hook.timeout_s))
    return sinks


def monitor_for_policy(policy: Policy, feature: str, store: Store | None,
                       base_dir: str | os.PathLike[str] = ".",
                       audit: AuditSampler | None = None,
                       routing: Routing | None = None) -> SloMonitor | None:
    """The monitor of a policy: its ``slo:`` block (with ``slo.input_drift``, on
    ``routing``'s learned router), and the audit's alert (through the same sinks; logging
    only without an ``slo:`` block), counting the audits; None when neither."""
    spec, alpha = policy.slo, None if audit is None else audit.alpha
    tiers = [t.name for t in policy.tiers]
    if spec is not None:
        snapshot = None if spec.snapshot is None else os.path.join(base_dir, spec.snapshot)
        monitor = monitor_from_spec(spec, feature, store, tiers=tiers, snapshot_path=snapshot,
                                    audit_alpha=alpha)
        if spec.input_drift is not None:
            monitor.input_drift = input_drift_target(spec, feature, routing)
    elif alpha is not None:
        monitor = SloMonitor((), store=store, sinks=sinks_from_spec(None), tiers=tiers,
                             storm_rate=None, audit_alpha=alpha, audit_features=(feature,))
    else:
        return None
    if audit is not None:
        audit.listeners.append(monitor.record_audit)
    return monitor


def input_drift_target(spec: SloSpec, feature: str,
                       routing: Routing | None) -> InputDriftTarget:
    """``slo.input_drift`` on the policy's learned router (``ConfigError`` without one)."""
    from cascade.routing import LearnedRouter

    router = None if routing is None else routing.router
    drift = spec.input_drift
    if not isinstance(router, LearnedRouter) or drift is None:
        raise ConfigError("slo.input_drift needs a learned router (routing.router kind knn, "
                          "mf or bert)")
    return InputDriftTarget.from_router(feature, router, margin=drift.margin,
                                        max_share=drift.max_share, window_s=drift.window_s,
                                        min_queries=drift.min_queries)


class SloObserver(RunObserver):
    """Counts every finished run into its monitor (memory only: no I/O here)."""

    def __init__(self, monitor: SloMonitor) -> None:
        self.monitor = monitor

    def routed(self, run: RunInfo, decision: RouteDecision) -> None:
        if decision.similarity is not None:  # a learned router's: input drift
            self.monitor.record_route(run.feature, decision.similarity)

    def run_finished(self, run: RunInfo, result: Result | None,
                     error: BaseException | None) -> None:
        if result is not None:
            self.monitor.record_result(result)


__all__ = [
    "DEFAULT_WINDOWS",
    "Alert",
    "AlertDeliveryError",
    "AlertKind",
    "AlertSink",
    "AlertState",
    "BurnWindow",
    "EscalationTarget",
    "FalseAcceptTarget",
    "SignalAlert",
    "SloMonitor",
    "SloObserver",
    "TierWindow",
    "drift_z",
    "input_drift_target",
    "monitor_for_policy",
    "monitor_from_spec",
    "rate",
    "sinks_from_spec",
]
