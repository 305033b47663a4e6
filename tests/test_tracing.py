"""OpenTelemetry spans: gen_ai.* and cascade.* attributes, no prompt or answer text."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from scripted import Fixed, Scripted

from cascade import Cascade, ProviderHTTPError, Tier

pytestmark = pytest.mark.anyio


async def test_spans_follow_genai_conventions_without_text() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    failing = Scripted(fail=ProviderHTTPError("scripted@a", 503, "busy"))
    tiers = [Tier("a", "model-a", failing, Fixed(0.9), 0.5),
             Tier("b", "model-b", Scripted("SECRET ANSWER"), Fixed(0.9), 0.5)]
    result = await Cascade(tiers, feature="faq", tracer=tracer).run("SECRET PROMPT")
    spans = {s.name: s for s in exporter.get_finished_spans()}
    assert set(spans) == {"cascade.run faq", "chat model-a", "chat model-b"}
    run = spans["cascade.run faq"]
    assert format(run.context.trace_id, "032x") == result.trace_id
    assert run.attributes["cascade.accepted"] is True
    assert run.attributes["cascade.escalations"] == 1
    ok = spans["chat model-b"]
    assert ok.parent is not None and ok.parent.span_id == run.context.span_id
    assert ok.attributes["gen_ai.request.model"] == "model-b"
    assert ok.attributes["gen_ai.usage.input_tokens"] == 10
    assert ok.attributes["cascade.decision"] == "accept"
    assert ok.attributes["cascade.confidence"] == 0.9
    failed = spans["chat model-a"]
    assert failed.attributes["error.type"] == "ProviderHTTPError"
    assert failed.status.status_code.name == "ERROR"
    for span in spans.values():
        for value in span.attributes.values():
            assert "SECRET" not in str(value)
