"""Observers of runs: the seam (``RunObserver``), traces and metrics (OpenTelemetry API;
no-op until an SDK is installed). See docs/observability.md."""

from cascade.telemetry._alerts import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    LogSink,
    OTelSink,
    WebhookSink,
    sign,
)
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
from cascade.telemetry._slo import (
    DEFAULT_WINDOWS,
    Alert,
    AlertDeliveryError,
    AlertKind,
    AlertSink,
    AlertState,
    BurnWindow,
    EscalationTarget,
    SloMonitor,
    SloObserver,
    TierWindow,
    drift_z,
    monitor_from_spec,
)
from cascade.telemetry._tracing import (
    TRACER_NAME,
    TracingObserver,
    current_trace_id,
    get_tracer,
    inject_traceparent,
)

__all__ = [
    "BREAKER_STATE", "DEFAULT_WINDOWS", "METER_NAME", "SIGNATURE_HEADER", "TIMESTAMP_HEADER",
    "TRACER_NAME", "Alert", "AlertDeliveryError", "AlertKind", "AlertSink", "AlertState", "AttemptInfo",
    "BreakerTransition", "BudgetDecision", "BurnWindow", "EscalationTarget", "EstimateInfo",
    "FallbackEvent", "LogSink", "MetricsObserver", "OTelSink", "Observers", "RetryEvent",
    "RunInfo", "RunObserver", "SeamEvent", "SloMonitor", "SloObserver", "TierWindow",
    "TracingObserver", "WebhookSink", "current_trace_id", "drift_z", "get_tracer", "inject_traceparent",
    "monitor_from_spec", "sign",
]
