"""OpenTelemetry spans for runs, routing, attempts and estimators, as one ``RunObserver``.

Depends on the API only: a no-op until the user installs an SDK. Prompt and answer text go
into spans only with ``record_content=True`` (policy ``telemetry: {record_content: true}``).
The run span and the attempt span are made current while they are open, so spans of
instrumented libraries nest under them and outgoing HTTP calls carry their W3C
``traceparent`` (``inject_traceparent``)."""

from __future__ import annotations

import json
import random
import time
from collections.abc import MutableMapping

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from cascade.telemetry._events import (
    AttemptInfo,
    BreakerTransition,
    BudgetDecision,
    EstimateInfo,
    FallbackEvent,
    RetryEvent,
    RunInfo,
)
from cascade.telemetry._observers import RunObserver
from cascade.types import Attempt, Decision, Result, RouteDecision

TRACER_NAME = "cascade"


def get_tracer() -> trace.Tracer:
    return trace.get_tracer(TRACER_NAME)


def current_trace_id() -> str:
    """The current span's trace id, or a fresh random one where no SDK records traces."""
    span_context = trace.get_current_span().get_span_context()
    return format(span_context.trace_id, "032x") if span_context.is_valid \
        else f"{random.getrandbits(128):032x}"  # an id, not a secret: no urandom call per run


def inject_traceparent(headers: MutableMapping[str, str]) -> None:
    """Add the current trace context (W3C ``traceparent``/``tracestate``, or whatever
    propagator the application configured) to an outgoing request's headers."""
    propagate.inject(headers)


class _Open:
    __slots__ = ("span", "token")

    def __init__(self, span: Span) -> None:
        self.span = span
        # an invalid span (no SDK installed) has no context to propagate: nothing to attach
        self.token = otel_context.attach(trace.set_span_in_context(span)) \
            if span.get_span_context().is_valid else None

    def close(self) -> None:
        self.span.end()
        if self.token is not None:
            otel_context.detach(self.token)


class TracingObserver(RunObserver):
    """``cascade.run <feature>`` with children ``cascade.route <router>`` and
    ``chat <model>`` per attempt, each with a ``cascade.estimate <estimator>`` child; seam
    events (retry, fallback, breaker transition, budget decision) as span events."""

    def __init__(self, tracer: trace.Tracer | None = None, *,
                 record_content: bool = False) -> None:
        self._tracer = tracer or get_tracer()
        self.record_content = record_content
        self._runs: dict[RunInfo, _Open] = {}
        self._attempts: dict[AttemptInfo, _Open] = {}
        self._current: dict[RunInfo, AttemptInfo] = {}

    def run_started(self, run: RunInfo) -> None:
        span = self._tracer.start_span(
            f"cascade.run {run.feature}", kind=SpanKind.INTERNAL, start_time=run.started_ns,
            attributes={"cascade.feature": run.feature, "gen_ai.operation.name": "chat"},
            record_exception=False)
        if not span.get_span_context().is_valid:  # no SDK: nothing of this run is recorded,
            return  # so its attempts and estimates make no spans either (the request path)
        if self.record_content and span.is_recording():
            span.set_attribute("gen_ai.input.messages", json.dumps(
                [{"role": m.role, "content": m.content} for m in run.request.messages]))
        self._runs[run] = _Open(span)

    def _parent(self, opened: _Open | None) -> otel_context.Context | None:
        """Children hang on this observer's own spans (not whatever is current: another
        observer may have made its span current meanwhile)."""
        return None if opened is None else trace.set_span_in_context(opened.span)

    def routed(self, run: RunInfo, decision: RouteDecision) -> None:
        if run not in self._runs:
            return
        end = time.time_ns()
        span = self._tracer.start_span(
            f"cascade.route {decision.router}", start_time=end - int(decision.latency_s * 1e9),
            attributes=_route_attributes(decision), context=self._parent(self._runs.get(run)))
        span.end(end_time=end)

    def attempt_started(self, attempt: AttemptInfo) -> None:
        if attempt.run not in self._runs:
            return
        attributes: dict[str, str | int | float] = {
            "gen_ai.operation.name": "chat", "gen_ai.request.model": attempt.model,
            "gen_ai.request.max_tokens": attempt.max_tokens,
            "gen_ai.request.temperature": attempt.temperature,
            "cascade.tier": attempt.tier, "cascade.tier.name": attempt.tier_name}
        if attempt.server_address is not None:
            attributes["server.address"] = attempt.server_address
        if attempt.server_port is not None:
            attributes["server.port"] = attempt.server_port
        span = self._tracer.start_span(f"chat {attempt.model}", kind=SpanKind.CLIENT,
                                       attributes=attributes, record_exception=False,
                                       context=self._parent(self._runs.get(attempt.run)))
        self._attempts[attempt] = _Open(span)
        self._current[attempt.run] = attempt

    def estimate_made(self, attempt: AttemptInfo, estimate: EstimateInfo) -> None:
        if attempt not in self._attempts:
            return
        span = self._tracer.start_span(
            f"cascade.estimate {estimate.estimator}", start_time=estimate.started_ns or None,
            attributes={"cascade.estimator": estimate.estimator,
                        "cascade.decision": "accept" if estimate.accepted else "escalate",
                        "cascade.cost_usd": estimate.cost,
                        "cascade.estimator.calls": estimate.calls,
                        "gen_ai.usage.input_tokens": estimate.input_tokens,
                        "gen_ai.usage.output_tokens": estimate.output_tokens},
            context=self._parent(self._attempts.get(attempt)))
        if estimate.confidence is not None:
            span.set_attribute("cascade.confidence", estimate.confidence)
        if estimate.threshold is not None:
            span.set_attribute("cascade.threshold", estimate.threshold)
        if estimate.error is not None:
            span.set_attribute("error.type", estimate.error.split(":", 1)[0])
            span.set_status(Status(StatusCode.ERROR))
        span.end(end_time=estimate.ended_ns or None)

    def attempt_finished(self, attempt: AttemptInfo, record: Attempt) -> None:
        opened = self._attempts.pop(attempt, None)
        if opened is None:
            return
        if self._current.get(attempt.run) is attempt:
            del self._current[attempt.run]
        _attempt_attributes(opened.span, record)
        if self.record_content and record.answer is not None and opened.span.is_recording():
            opened.span.set_attribute("gen_ai.output.messages", json.dumps(
                [{"role": "assistant", "content": record.answer}]))
        opened.close()

    def run_finished(self, run: RunInfo, result: Result | None,
                     error: BaseException | None) -> None:
        if run not in self._runs:
            return
        for attempt in [a for a in self._attempts if a.run is run]:  # cut short by an error
            self._attempts.pop(attempt).close()
        self._current.pop(run, None)
        opened = self._runs.pop(run, None)
        if opened is None:
            return
        if result is not None:
            _run_attributes(opened.span, result)
        if error is not None:
            opened.span.set_attribute("error.type", type(error).__name__)
            opened.span.set_status(Status(StatusCode.ERROR))
        opened.close()

    def _event(self, run: RunInfo, name: str, attributes: dict[str, str | int | float | bool]) -> None:
        attempt = self._current.get(run)
        opened = self._attempts.get(attempt) if attempt is not None else self._runs.get(run)
        if opened is not None:
            opened.span.add_event(name, attributes)

    def retry(self, run: RunInfo, event: RetryEvent) -> None:
        self._event(run, "cascade.retry", {"cascade.deployment": event.deployment,
                                           "cascade.retry": event.retry,
                                           "cascade.wait_s": event.wait_s,
                                           "error.type": event.error})

    def fallback(self, run: RunInfo, event: FallbackEvent) -> None:
        self._event(run, "cascade.fallback", {"cascade.deployment": event.deployment,
                                              "error.type": event.error,
                                              "cascade.retryable": event.retryable})

    def breaker_transition(self, run: RunInfo, event: BreakerTransition) -> None:
        self._event(run, "cascade.breaker", {"cascade.deployment": event.deployment,
                                             "cascade.breaker.from": event.old,
                                             "cascade.breaker.to": event.new,
                                             "cascade.breaker.reason": event.reason})

    def budget_decision(self, run: RunInfo, event: BudgetDecision) -> None:
        attributes: dict[str, str | int | float | bool] = {
            "cascade.deployment": event.deployment, "cascade.budget.allowed": event.allowed,
            "cascade.budget.worst_cost_usd": event.worst_cost}
        if event.budget is not None:
            attributes["cascade.budget.name"] = event.budget
        self._event(run, "cascade.budget", attributes)


def _attempt_attributes(span: Span, attempt: Attempt) -> None:
    if not span.is_recording():
        return
    span.set_attributes({
        "gen_ai.provider.name": attempt.deployment.split("@", 1)[0],
        "gen_ai.response.model": attempt.model,
        "gen_ai.usage.input_tokens": attempt.input_tokens,
        "gen_ai.usage.output_tokens": attempt.output_tokens,
        "cascade.deployment": attempt.deployment,
        "cascade.decision": attempt.decision.value,
        "cascade.cost_usd": attempt.cost,
        "cascade.latency_s": attempt.latency_s,
        "cascade.calls": len(attempt.calls),
    })
    if attempt.confidence is not None:
        span.set_attribute("cascade.confidence", attempt.confidence)
    if attempt.threshold is not None:
        span.set_attribute("cascade.threshold", attempt.threshold)
    if attempt.estimator is not None:
        span.set_attribute("cascade.estimator", attempt.estimator)
    if attempt.finish_reason is not None:
        span.set_attribute("gen_ai.response.finish_reasons", [attempt.finish_reason])
    if attempt.decision in (Decision.ERROR, Decision.TIMEOUT):
        span.set_attribute("error.type", attempt.error.split(":", 1)[0] if attempt.error else "error")
        span.set_status(Status(StatusCode.ERROR))


def _run_attributes(span: Span, result: Result) -> None:
    if not span.is_recording():
        return
    span.set_attributes({
        "gen_ai.response.model": result.model,
        "cascade.accepted": result.accepted,
        "cascade.stop_reason": result.stop_reason.value,
        "cascade.tier": result.tier,
        "cascade.tier.name": result.tier_name,
        "cascade.escalations": result.escalations,
        "cascade.fallbacks": result.fallbacks,
        "cascade.cost_usd": result.cost,
        "cascade.latency_s": result.latency_s,
    })
    if result.finish_reason is not None:
        span.set_attribute("gen_ai.response.finish_reasons", [result.finish_reason])
    if result.route is not None:
        span.set_attributes(_route_attributes(result.route))


def _route_attributes(route: RouteDecision) -> dict[str, str | int | float | bool | list[float]]:
    """Names and numbers only: never the grader's reply or the matched text."""
    attributes: dict[str, str | int | float | bool | list[float]] = {
        "cascade.route.router": route.router, "cascade.route.tier": route.tier,
        "cascade.route.reason": route.reason.value, "cascade.route.cold_start": route.cold_start,
        "cascade.route.latency_s": route.latency_s, "cascade.route.cost_usd": route.cost}
    if route.similarity is not None:
        attributes["cascade.route.similarity"] = route.similarity
    if route.scores and all(s.p_ok is not None for s in route.scores):
        attributes["cascade.route.p_ok"] = [float(s.p_ok or 0.0) for s in route.scores]
    return attributes
