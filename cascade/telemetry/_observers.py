"""The observer seam: the engine tells every ``RunObserver`` what happens in a run.

Tracing, metrics and the SLO monitor are observers; users add their own
(``Cascade(..., observers=[...])`` or ``telemetry: {observers: [...]}`` in the policy).
An observer runs on the request path, so it must be quick and must not block: hand slow work
(a webhook, a database write) to a queue or a task of its own. An observer that raises never
fails a run: the error is logged once per observer and method, and counted
(``Observers.failures``)."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence

from cascade.errors import ConfigError
from cascade.telemetry._events import (
    AttemptInfo,
    BreakerTransition,
    BudgetDecision,
    EstimateInfo,
    FallbackEvent,
    RetryEvent,
    RunInfo,
    SeamEvent,
)
from cascade.types import Attempt, Result, RouteDecision

log = logging.getLogger("cascade.telemetry")


class RunObserver:
    """Subclass and override what you need; every method does nothing by default.

    Calls for one run come in order: ``run_started``, ``routed`` (with routing), then per
    attempt ``attempt_started``, any seam events (``retry``, ``fallback``,
    ``breaker_transition``, ``budget_decision``), ``estimate_made`` (when an estimator ran),
    ``attempt_finished``; last ``run_finished`` (``result`` None and ``error`` set when the
    run raised). All come from the run's task, except seam events of concurrent calls
    (hedges, ensemble members), which come from its child tasks on the same event loop.
    Runs of one ``Cascade`` interleave: key per-run state by ``RunInfo`` (hashable by
    identity)."""

    def run_started(self, run: RunInfo) -> None:
        """A run began (the request is validated)."""

    def routed(self, run: RunInfo, decision: RouteDecision) -> None:
        """The router picked the start tier."""

    def attempt_started(self, attempt: AttemptInfo) -> None:
        """A tier is about to be called."""

    def estimate_made(self, attempt: AttemptInfo, estimate: EstimateInfo) -> None:
        """An estimator judged the tier's answer."""

    def attempt_finished(self, attempt: AttemptInfo, record: Attempt) -> None:
        """The tier's attempt ended (accepted, escalated, rejected, failed or timed out)."""

    def run_finished(self, run: RunInfo, result: Result | None,
                     error: BaseException | None) -> None:
        """The run returned ``result`` or raised ``error``."""

    def retry(self, run: RunInfo, event: RetryEvent) -> None:
        """A model call is retried after a backoff."""

    def fallback(self, run: RunInfo, event: FallbackEvent) -> None:
        """A deployment failed and the call moves to another deployment of the tier."""

    def breaker_transition(self, run: RunInfo, event: BreakerTransition) -> None:
        """A deployment's circuit breaker changed state during this run's call."""

    def budget_decision(self, run: RunInfo, event: BudgetDecision) -> None:
        """A spending budget allowed or denied a call."""


_METHODS = ("run_started", "routed", "attempt_started", "estimate_made", "attempt_finished",
            "run_finished", "retry", "fallback", "breaker_transition", "budget_decision")


class Observers:
    """The engine's fan-out to its observers; an observer's error is contained here.

    Each method is told only to the observers that override it (a ``RunObserver`` method left
    as the base class's does nothing, so it is not called at all: the fan-out stays cheap on
    the request path)."""

    def __init__(self, observers: Sequence[RunObserver] = ()) -> None:
        for observer in observers:
            if not isinstance(observer, RunObserver):
                raise ConfigError(f"{type(observer).__name__} is not a RunObserver "
                                "(subclass cascade.telemetry.RunObserver)")
        self.observers = tuple(observers)
        self.failures: Counter[str] = Counter()  # "<Observer>.<method>" -> errors
        self._listeners: dict[str, tuple[RunObserver, ...]] = {
            method: tuple(o for o in self.observers if _overrides(o, method))
            for method in _METHODS}

    def _tell(self, method: str, *args: object) -> None:
        for observer in self._listeners[method]:
            try:
                getattr(observer, method)(*args)
            except Exception as exc:  # an observer never fails a run: logged once, counted
                key = f"{type(observer).__name__}.{method}"
                if not self.failures[key]:
                    log.error("observer %s raised %s (further errors of it are only counted)",
                              key, type(exc).__name__, exc_info=exc)
                self.failures[key] += 1

    def run_started(self, run: RunInfo) -> None:
        self._tell("run_started", run)

    def routed(self, run: RunInfo, decision: RouteDecision) -> None:
        self._tell("routed", run, decision)

    def attempt_started(self, attempt: AttemptInfo) -> None:
        self._tell("attempt_started", attempt)

    def estimate_made(self, attempt: AttemptInfo, estimate: EstimateInfo) -> None:
        self._tell("estimate_made", attempt, estimate)

    def attempt_finished(self, attempt: AttemptInfo, record: Attempt) -> None:
        self._tell("attempt_finished", attempt, record)

    def run_finished(self, run: RunInfo, result: Result | None,
                     error: BaseException | None = None) -> None:
        self._tell("run_finished", run, result, error)

    def seam(self, run: RunInfo, event: SeamEvent) -> None:
        """A resilience seam event (``RunScope.notify``) to the matching method."""
        match event:
            case RetryEvent():
                self._tell("retry", run, event)
            case FallbackEvent():
                self._tell("fallback", run, event)
            case BreakerTransition():
                self._tell("breaker_transition", run, event)
            case BudgetDecision():
                self._tell("budget_decision", run, event)


def _overrides(observer: RunObserver, method: str) -> bool:
    """Whether ``observer`` does something on ``method`` (an instance attribute counts)."""
    if method in getattr(observer, "__dict__", {}):
        return True
    return getattr(type(observer), method) is not getattr(RunObserver, method)


__all__ = ["Observers", "RunObserver"]
