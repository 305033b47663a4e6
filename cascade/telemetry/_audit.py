"""Audit sampling: a share of the answers a cheaper tier had accepted are re-asked of the
judge tier (the strongest by default) off the request path; disagreements estimate the live
false-accept rate, with a Clopper–Pearson interval, and an alert fires when the interval's
lower bound exceeds the false-accept rate calibration promised (α).

The sampled run is never slowed: ``run_finished`` only puts the request on a bounded queue
(dropped and counted when full); ``running()`` works it off in a background task, through the
same call seam as runs (so the audit's calls are retried, circuit-broken and charged to the
spending budgets), and stops auditing once ``budget_usd`` is spent."""

from __future__ import annotations

import logging
import math
import random
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from cascade._ensemble import call_tier
from cascade._tier import Tier
from cascade.errors import ProviderError
from cascade.resilience import Resilience, RunScope
from cascade.telemetry._events import RunInfo
from cascade.telemetry._observers import RunObserver
from cascade.telemetry._stats import clopper_pearson
from cascade.types import Request, Result
from verifiers import AnswerKind, normalise

log = logging.getLogger("cascade.audit")


@dataclass(frozen=True, slots=True)
class AuditEstimate:
    audited: int
    false_accepts: int  # the judge answered differently
    rate: float
    low: float
    high: float
    cost: float  # what the audit's calls cost
    dropped: int  # sampled but not audited: queue full, budget spent, or the judge failed
    alpha: float | None
    truth: float | None = None  # replay data: the share of audited answers labelled wrong

    @property
    def alerting(self) -> bool:
        return self.alpha is not None and self.audited > 0 and self.low > self.alpha


class AuditSampler(RunObserver):
    """Audit ``rate`` of the accepted answers of tiers below ``judge`` (see the module)."""

    def __init__(self, judge: Tier, judge_index: int, *, rate: float, answer: AnswerKind,
                 resilience: Resilience | None = None, alpha: float | None = None,
                 confidence: float = 0.95, budget_usd: float | None = None,
                 queue_size: int = 1000, rng: random.Random | None = None,
                 clock: Callable[[], float] = time.perf_counter,
                 window: int | None = None) -> None:
        """``window``: estimate from the last ``window`` audits only (quicker to see a
        change); None: from all of them."""
        if not 0 < rate <= 1:
            raise ValueError(f"audit rate must be in (0, 1], got {rate}")
        self.judge, self.judge_index, self.rate, self.answer = judge, judge_index, rate, answer
        self.resilience = resilience or Resilience()
        self.alpha, self.confidence, self.budget_usd = alpha, confidence, budget_usd
        self._rng = rng or random.Random()
        self._clock = clock
        self._send: MemoryObjectSendStream[tuple[Request, Result]]
        self._receive: MemoryObjectReceiveStream[tuple[Request, Result]]
        self._send, self._receive = anyio.create_memory_object_stream(queue_size)
        self.audited = self.false_accepts = self.dropped = self.wrong = self.labelled = 0
        self.cost = 0.0
        self._alerting = False
        if window is not None and window < 1:
            raise ValueError(f"audit window must be at least 1, got {window}")
        self._recent: deque[tuple[bool, bool | None]] = deque(maxlen=window)  # (false, wrong)
        self.window = window
        # told of each audit (feature, tier, false accept): the SLO monitor counts them and
        # raises the alerts; without a listener the sampler logs its own alert
        self.listeners: list[Callable[[str, str, bool], None]] = []

    def run_finished(self, run: RunInfo, result: Result | None,
                     error: BaseException | None) -> None:
        if result is None or not result.accepted or result.tier >= self.judge_index:
            return
        if self._rng.random() >= self.rate:
            return
        try:
            self._send.send_nowait((run.request, result))
        except anyio.WouldBlock:
            self.dropped += 1

    async def audit_one(self, request: Request, result: Result) -> None:
        """Ask the judge and compare; a judge that fails counts the sample as dropped."""
        if self.budget_usd is not None and self.cost >= self.budget_usd:
            self.dropped += 1
            return
        scope = RunScope(self.resilience, result.feature, request.metadata)
        try:
            called = await call_tier(self.judge, request, self._clock, [], scope)
        except ProviderError as exc:
            self.dropped += 1
            self.cost += math.fsum(e.cost for e in scope.events)
            log.warning("audit: the judge %s failed (%s): sample dropped", self.judge.name,
                        type(exc).__name__)
            return
        self.cost += called.cost
        cheap = normalise(result.answer, self.answer)
        judged = normalise(called.completion.text, self.answer)
        false = cheap is None or cheap != judged
        wrong = None if result.label is None else result.label < 0.5
        self.audited += 1
        self.false_accepts += int(false)
        if wrong is not None:
            self.labelled += 1
            self.wrong += int(wrong)
        self._recent.append((false, wrong))
        for listener in self.listeners:
            listener(result.feature, result.tier_name, false)
        if not self.listeners:
            self._check_alert()

    def estimate(self) -> AuditEstimate:
        """Over every audit, or the last ``window``; ``dropped`` and ``cost`` are totals."""
        if self.window is None:
            audited, false, labelled, wrong = (self.audited, self.false_accepts,
                                               self.labelled, self.wrong)
        else:
            audited, false = len(self._recent), sum(f for f, _ in self._recent)
            labels = [w for _, w in self._recent if w is not None]
            labelled, wrong = len(labels), sum(labels)
        low, high = clopper_pearson(false, audited, self.confidence)
        return AuditEstimate(audited, false, false / audited if audited else 0.0, low, high,
                             self.cost, self.dropped, self.alpha,
                             wrong / labelled if labelled else None)

    def _check_alert(self) -> None:
        estimate = self.estimate()
        if estimate.alerting and not self._alerting:
            self._alerting = True
            log.warning("audit: false-accept rate %.1f%% (%.0f%% interval %.1f%%-%.1f%%, %d "
                        "audited) exceeds the calibrated %.1f%%", 100 * estimate.rate,
                        100 * self.confidence, 100 * estimate.low, 100 * estimate.high,
                        estimate.audited, 100 * (self.alpha or 0))
        elif self._alerting and not estimate.alerting:
            self._alerting = False
            log.info("audit: false-accept rate back within the calibrated %.1f%%",
                     100 * (self.alpha or 0))

    async def drain(self) -> None:
        """Audit everything queued now (tests, batch jobs)."""
        while True:
            try:
                request, result = self._receive.receive_nowait()
            except anyio.WouldBlock:
                return
            await self.audit_one(request, result)

    @asynccontextmanager
    async def running(self, workers: int = 4) -> AsyncIterator[AuditSampler]:
        """Audit in ``workers`` background tasks while the block runs; what is still queued
        at its end is counted as dropped."""
        async def work() -> None:
            async for request, result in self._receive:
                await self.audit_one(request, result)

        async with anyio.create_task_group() as tg:
            for _ in range(workers):
                tg.start_soon(work)
            try:
                yield self
            finally:
                tg.cancel_scope.cancel()
                self.dropped += self._receive.statistics().current_buffer_used


__all__ = ["AuditEstimate", "AuditSampler", "clopper_pearson"]
