"""Traces (OpenTelemetry API; no-op until an SDK is installed)."""

from cascade.telemetry._tracing import (
    TRACER_NAME,
    attempt_span,
    end_attempt,
    end_run,
    get_tracer,
    run_span,
    trace_id,
)

__all__ = ["TRACER_NAME", "attempt_span", "end_attempt", "end_run", "get_tracer", "run_span", "trace_id"]
