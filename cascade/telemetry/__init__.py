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
from cascade.telemetry._budget import BUDGET_GAUGE, BudgetGauge
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
from cascade.telemetry._input_drift import InputDriftTarget, held_out_similarities, psi
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
    FalseAcceptTarget,
    SignalAlert,
    SloMonitor,
    SloObserver,
    TierWindow,
    drift_z,
    monitor_for_policy,
    monitor_from_spec,
    sinks_from_spec,
)
from cascade.telemetry._tracing import (
    TRACER_NAME,
    TracingObserver,
    current_trace_id,
    get_tracer,
    inject_traceparent,
)

_AUDIT = ("AuditEstimate", "AuditSampler", "clopper_pearson")


def __getattr__(name: str) -> object:
    """The audit sampler calls tiers, so it is imported on first use (the call seam imports
    this package's events)."""
    if name in _AUDIT:
        from cascade.telemetry import _audit

        return getattr(_audit, name)
    raise AttributeError(f"module 'cascade.telemetry' has no attribute {name!r}")


__all__ = [
    "BREAKER_STATE",
    "BUDGET_GAUGE",
    "DEFAULT_WINDOWS",
    "METER_NAME",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "TRACER_NAME",
    "Alert",
    "AlertDeliveryError",
    "AlertKind",
    "AlertSink",
    "AlertState",
    "AttemptInfo",
    "AuditEstimate",
    "AuditSampler",
    "BreakerTransition",
    "BudgetDecision",
    "BudgetGauge",
    "BurnWindow",
    "EscalationTarget",
    "EstimateInfo",
    "FallbackEvent",
    "FalseAcceptTarget",
    "InputDriftTarget",
    "LogSink",
    "MetricsObserver",
    "OTelSink",
    "Observers",
    "RetryEvent",
    "RunInfo",
    "RunObserver",
    "SeamEvent",
    "SignalAlert",
    "SloMonitor",
    "SloObserver",
    "TierWindow",
    "TracingObserver",
    "WebhookSink",
    "clopper_pearson",
    "current_trace_id",
    "drift_z",
    "get_tracer",
    "held_out_similarities",
    "inject_traceparent",
    "monitor_for_policy",
    "monitor_from_spec",
    "psi",
    "sign",
    "sinks_from_spec",
]
