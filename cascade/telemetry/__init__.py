"""Observers of runs: the seam (``RunObserver``), traces and metrics (OpenTelemetry API;
no-op until an SDK is installed). See docs/observability.md."""

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
from cascade.telemetry._metrics import BREAKER_STATE, METER_NAME, MetricsObserver
from cascade.telemetry._observers import Observers, RunObserver
from cascade.telemetry._tracing import (
    TRACER_NAME,
    TracingObserver,
    current_trace_id,
    get_tracer,
    inject_traceparent,
)

__all__ = [
    "BREAKER_STATE", "METER_NAME", "TRACER_NAME", "AttemptInfo", "BreakerTransition",
    "BudgetDecision", "EstimateInfo", "FallbackEvent", "MetricsObserver", "Observers",
    "RetryEvent", "RunInfo", "RunObserver", "SeamEvent", "TracingObserver", "current_trace_id",
    "get_tracer", "inject_traceparent",
]
