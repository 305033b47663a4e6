"""OpenTelemetry spans (the tracing observer): the span tree, GenAI and cascade.* attributes,
estimator and routing child spans, seam events, content only when opted in, and W3C trace
context on real HTTP calls to a loopback server."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from scripted import FakeTime, Fixed, Flaky, Scripted

from cascade import Cascade, ProviderHTTPError, Tier
from cascade.errors import RateLimitedError, ServerError
from cascade.policy import BreakerSpec, BudgetSpec, LoadBalancing, Price, ResilienceSpec
from cascade.providers import ClientPool, OpenAICompatibleProvider
from cascade.resilience import Deployment, Resilience

pytestmark = pytest.mark.anyio


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def tracer(exporter: InMemorySpanExporter):  # type: ignore[no-untyped-def]
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider.get_tracer("test")


def by_name(exporter: InMemorySpanExporter) -> dict[str, ReadableSpan]:
    return {s.name: s for s in exporter.get_finished_spans()}


def no_text(spans: dict[str, ReadableSpan], *secrets: str) -> None:
    for span in spans.values():
        blobs = [str(v) for v in span.attributes.values()]
        blobs += [str(v) for e in span.events for v in e.attributes.values()]
        for secret in secrets:
            assert all(secret not in blob for blob in blobs), span.name


async def test_span_tree_follows_genai_conventions_without_text(exporter, tracer) -> None:  # type: ignore[no-untyped-def]
    failing = Scripted(fail=ProviderHTTPError("scripted@a", 503, "busy"))
    tiers = [Tier("a", "model-a", failing, Fixed(0.9), 0.5),
             Tier("b", "model-b", Scripted("SECRET ANSWER"), Fixed(0.9), 0.5, max_tokens=64,
                  temperature=0.3)]
    result = await Cascade(tiers, feature="faq", tracer=tracer).run("SECRET PROMPT")
    spans = by_name(exporter)
    assert set(spans) == {"cascade.run faq", "chat model-a", "chat model-b",
                          "cascade.estimate fixed"}
    run = spans["cascade.run faq"]
    assert format(run.context.trace_id, "032x") == result.trace_id
    assert run.attributes["cascade.accepted"] is True
    # an error fallback is not a confidence escalation
    assert run.attributes["cascade.escalations"] == 0 and run.attributes["cascade.fallbacks"] == 1
    assert run.attributes["cascade.tier.name"] == "b"
    ok = spans["chat model-b"]
    assert ok.parent is not None and ok.parent.span_id == run.context.span_id
    assert ok.attributes["gen_ai.request.model"] == "model-b"
    assert ok.attributes["gen_ai.request.max_tokens"] == 64
    assert ok.attributes["gen_ai.request.temperature"] == 0.3
    assert ok.attributes["gen_ai.usage.input_tokens"] == 10
    assert ok.attributes["cascade.decision"] == "accept"
    assert ok.attributes["cascade.confidence"] == 0.9
    estimate = spans["cascade.estimate fixed"]
    assert estimate.parent is not None and estimate.parent.span_id == ok.context.span_id
    assert estimate.attributes["cascade.confidence"] == 0.9
    assert estimate.attributes["cascade.threshold"] == 0.5
    assert estimate.attributes["cascade.decision"] == "accept"
    assert estimate.start_time <= estimate.end_time
    failed = spans["chat model-a"]
    assert failed.attributes["error.type"] == "ProviderHTTPError"
    assert failed.status.status_code.name == "ERROR"
    assert "server.address" not in failed.attributes  # in-process provider: no server
    no_text(spans, "SECRET")


async def test_a_low_confidence_escalation_and_a_failed_estimator(exporter, tracer) -> None:  # type: ignore[no-untyped-def]
    tiers = [Tier("a", "model-a", Scripted("x"), Fixed(0.2), 0.5),
             Tier("b", "model-b", Scripted("y"), Fixed(raises=RuntimeError("broken")), 0.5)]
    result = await Cascade(tiers, feature="faq", tracer=tracer).run("q")
    assert result.escalations == 1 and result.fallbacks == 0 and not result.accepted
    estimates = [s for s in exporter.get_finished_spans() if s.name == "cascade.estimate fixed"]
    assert [s.attributes["cascade.decision"] for s in estimates] == ["escalate", "escalate"]
    assert estimates[0].attributes["cascade.confidence"] == 0.2
    assert estimates[1].attributes["error.type"] == "RuntimeError"
    assert "cascade.confidence" not in estimates[1].attributes
    run = by_name(exporter)["cascade.run faq"]
    assert run.attributes["cascade.escalations"] == 1
    assert run.attributes["cascade.stop_reason"] == "exhausted"


async def test_prompt_and_answer_only_when_opted_in(exporter, tracer) -> None:  # type: ignore[no-untyped-def]
    tiers = [Tier("a", "model-a", Scripted("the answer"), Fixed(0.9), 0.5)]
    await Cascade(tiers, feature="faq", tracer=tracer, record_content=True).run("the question")
    spans = by_name(exporter)
    messages = json.loads(spans["cascade.run faq"].attributes["gen_ai.input.messages"])
    assert messages == [{"role": "user", "content": "the question"}]
    output = json.loads(spans["chat model-a"].attributes["gen_ai.output.messages"])
    assert output == [{"role": "assistant", "content": "the answer"}]
    exporter.clear()
    await Cascade(tiers, feature="faq", tracer=tracer).run("the question")
    no_text(by_name(exporter), "the question", "the answer")


async def test_retries_failovers_breakers_and_budgets_are_span_events(exporter, tracer) -> None:  # type: ignore[no-untyped-def]
    time = FakeTime()
    a = Flaky("from a", name="a", script=[ServerError("scripted@a", 500, "boom")])
    b = Flaky("from b", name="b", script=[RateLimitedError("scripted@b", 429, "slow",
                                                           retry_after_s=1.0)])
    spec = ResilienceSpec(breaker=BreakerSpec(minimum_calls=1, window_size=1, failure_rate=1.0))
    resilience = Resilience(spec, (BudgetSpec(name="daily", period="day", usd=10.0),),
                            clock=time, wall_clock=time, sleep=time.sleep)
    tier = Tier("small", "small-model", a, None, None, Price(input_per_1m=1.0),
                deployments=(Deployment(a), Deployment(b)),
                load_balancing=LoadBalancing.LEAST_IN_FLIGHT)
    result = await Cascade([tier], tracer=tracer, resilience=resilience).run("q")
    assert result.accepted and result.attempts[0].retries >= 1
    attempt = by_name(exporter)["chat small-model"]
    events = [(e.name, dict(e.attributes)) for e in attempt.events]
    names = [n for n, _ in events]
    assert ("cascade.fallback", {"cascade.deployment": "scripted@a", "error.type": "ServerError",
                                 "cascade.retryable": True}) in events
    retries = [attrs for n, attrs in events if n == "cascade.retry"]
    assert [r["cascade.retry"] for r in retries] == list(
        range(1, max(c.retry for c in result.attempts[0].calls) + 1))
    first_retry = next(c for c in result.attempts[0].calls if c.retry == 1)
    assert retries[0]["cascade.wait_s"] == first_retry.wait_s > 0
    assert retries[0]["error.type"] == "RateLimitedError"
    breakers = [attrs for n, attrs in events if n == "cascade.breaker"]
    assert {"cascade.deployment": "scripted@a", "cascade.breaker.from": "closed",
            "cascade.breaker.to": "open"} in [{k: v for k, v in b.items()
                                               if k != "cascade.breaker.reason"} for b in breakers]
    budgets = [attrs for n, attrs in events if n == "cascade.budget"]
    assert budgets and all(b["cascade.budget.allowed"] is True for b in budgets)
    sent = [c for c in result.attempts[0].calls if c.outcome.value != "skipped"]
    assert names.count("cascade.budget") == len(sent)


class _Upstream(BaseHTTPRequestHandler):
    seen: ClassVar[list[dict[str, str]]] = []

    def do_POST(self) -> None:  # http.server's name
        self.rfile.read(int(self.headers["Content-Length"]))
        type(self).seen.append(dict(self.headers))
        body = json.dumps({"model": "m", "choices": [{"index": 0, "finish_reason": "stop",
                           "message": {"role": "assistant", "content": "hello"}}],
                           "usage": {"prompt_tokens": 3, "completion_tokens": 1}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def upstream() -> Iterator[str]:
    _Upstream.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Upstream)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()


async def test_traceparent_reaches_a_real_upstream_and_server_address_is_set(
        exporter, tracer, upstream: str) -> None:  # type: ignore[no-untyped-def]
    pool = ClientPool()
    provider = OpenAICompatibleProvider(pool.client(upstream), upstream)
    try:
        result = await Cascade([Tier("a", "m", provider)], tracer=tracer).run("hi")
    finally:
        await pool.aclose()
    assert result.answer == "hello"
    attempt = by_name(exporter)["chat m"]
    [headers] = _Upstream.seen
    version, trace_id, parent_id, flags = headers["traceparent"].split("-")
    assert version == "00" and int(flags, 16) & 1  # sampled
    assert trace_id == result.trace_id
    assert parent_id == format(attempt.context.span_id, "016x")  # the attempt's span
    assert attempt.attributes["server.address"] == "127.0.0.1"
    assert attempt.attributes["server.port"] == int(upstream.rsplit(":", 1)[1].split("/")[0])
    assert attempt.attributes["gen_ai.provider.name"] == "openai"


async def test_no_traceparent_without_a_recording_span(upstream: str) -> None:
    pool = ClientPool()
    provider = OpenAICompatibleProvider(pool.client(upstream), upstream)
    try:
        await Cascade([Tier("a", "m", provider)]).run("hi")  # no SDK: the API's no-op
    finally:
        await pool.aclose()
    assert "traceparent" not in _Upstream.seen[0]


ROUTED = """\
feature: routed
tiers:
  - {{name: cheap, model: cheap-model, provider: {{kind: replay, data: '{data}'}}}}
  - {{name: mid, model: mid-model, provider: {{kind: replay, data: '{data}'}}}}
routing:
  mode: both
  router:
    kind: rules
    rules:
      - {{name: capitals, start: mid, keywords: [capital]}}
    default_tier: cheap
"""


async def test_the_routing_decision_is_a_child_span(exporter, tracer, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from pathlib import Path

    from cascade.telemetry import TracingObserver

    data = Path(__file__).parent / "fixtures" / "tiny_routerbench.csv"
    (tmp_path / "routed.yaml").write_text(ROUTED.format(data=data))
    # a second tracing observer next to the default (no-op) one: its spans still nest
    async with Cascade.from_yaml(tmp_path / "routed.yaml",
                                 observers=[TracingObserver(tracer)]) as engine:
        result = await engine.run("Question: Capital of France?\nAnswer:")
    assert result.tier_name == "mid"
    spans = by_name(exporter)
    run, route = spans["cascade.run routed"], spans["cascade.route rules"]
    assert route.parent is not None and route.parent.span_id == run.context.span_id
    assert route.attributes["cascade.route.reason"] == "rule"
    assert route.attributes["cascade.route.tier"] == "mid"
    assert route.start_time <= route.end_time
    assert run.attributes["cascade.route.router"] == "rules"
    attempt = spans["chat mid-model"]
    assert attempt.parent is not None and attempt.parent.span_id == run.context.span_id
    no_text(spans, "Capital", "Paris")
