"""OpenTelemetry spans for runs and attempts. Depends on the API only: a no-op until the
user installs an SDK. Prompt and answer text never go into spans."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from cascade.types import Attempt, Decision, Result

TRACER_NAME = "cascade"


def get_tracer() -> trace.Tracer:
    return trace.get_tracer(TRACER_NAME)


@contextmanager
def run_span(tracer: trace.Tracer, feature: str) -> Iterator[Span]:
    attributes = {"cascade.feature": feature, "gen_ai.operation.name": "chat"}
    with tracer.start_as_current_span(f"cascade.run {feature}", kind=SpanKind.INTERNAL,
                                      attributes=attributes, record_exception=False) as span:
        yield span


@contextmanager
def attempt_span(tracer: trace.Tracer, model: str) -> Iterator[Span]:
    with tracer.start_as_current_span(f"chat {model}", kind=SpanKind.CLIENT,
                                      record_exception=False) as span:
        yield span


def trace_id(span: Span) -> str:
    """The span's trace id, or a fresh random one where no SDK records traces."""
    context = span.get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else uuid.uuid4().hex


def end_attempt(span: Span, attempt: Attempt) -> None:
    if not span.is_recording():
        return
    span.set_attributes({
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": attempt.model,
        "gen_ai.provider.name": attempt.deployment.split("@", 1)[0],
        "gen_ai.usage.input_tokens": attempt.input_tokens,
        "gen_ai.usage.output_tokens": attempt.output_tokens,
        "cascade.tier": attempt.tier,
        "cascade.tier.name": attempt.tier_name,
        "cascade.deployment": attempt.deployment,
        "cascade.decision": attempt.decision.value,
        "cascade.cost_usd": attempt.cost,
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


def end_run(span: Span, result: Result) -> None:
    if not span.is_recording():
        return
    span.set_attributes({
        "gen_ai.response.model": result.model,
        "cascade.accepted": result.accepted,
        "cascade.stop_reason": result.stop_reason.value,
        "cascade.tier": result.tier,
        "cascade.escalations": result.escalations,
        "cascade.cost_usd": result.cost,
    })
    if result.finish_reason is not None:
        span.set_attribute("gen_ai.response.finish_reasons", [result.finish_reason])
    route = result.route
    if route is not None:  # never the grader's reply or the matched text: names and numbers only
        span.set_attributes({
            "cascade.route.router": route.router,
            "cascade.route.tier": route.tier,
            "cascade.route.reason": route.reason.value,
            "cascade.route.cold_start": route.cold_start,
            "cascade.route.latency_s": route.latency_s,
        })
        if route.similarity is not None:
            span.set_attribute("cascade.route.similarity", route.similarity)
        if route.scores and all(s.p_ok is not None for s in route.scores):
            span.set_attribute("cascade.route.p_ok", [float(s.p_ok or 0.0) for s in route.scores])
