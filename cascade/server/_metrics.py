"""``GET /metrics``: the engine's OpenTelemetry metrics (cascade/telemetry/_metrics.py) in
Prometheus' text format.

``cascade serve`` installs, once per process and before any cascade is built, an SDK
``MeterProvider`` with a ``PrometheusMetricReader`` on prometheus_client's default registry
(``install_meter_provider``); the route renders that registry. An application that embeds
``create_app`` and installs its own provider keeps it: the route renders the same default
registry, where its own ``PrometheusMetricReader`` (if any) registered.

Every process has its own counters: with ``--workers N`` a scrape reads the worker that
answered it. Scrape each process (one worker per container) or push with OTLP
(``OTEL_EXPORTER_OTLP_ENDPOINT`` set: every worker pushes with its own
``service.instance.id``, and the collector adds them up). docs/gateway.md."""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping

from opentelemetry import metrics
from opentelemetry.metrics._internal import _ProxyMeterProvider  # the API's "no SDK yet"

from cascade.server._config import GatewayConfigError

__all__ = ["install_meter_provider", "render_metrics", "shutdown_meter_provider"]

SERVICE_NAME = "cascade-gateway"
PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_OTLP_ENDPOINTS = ("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")


def _missing(what: str, extra: str) -> GatewayConfigError:
    return GatewayConfigError(
        f"GET /metrics needs {what}: pip install 'cascade-engine[{extra}]' (or `metrics: off` "
        "in the gateway config)")


def install_meter_provider(env: Mapping[str, str] | None = None) -> bool:
    """Install the gateway's SDK ``MeterProvider`` (Prometheus reader, plus an OTLP push when
    ``OTEL_EXPORTER_OTLP_[METRICS_]ENDPOINT`` is set) unless the process already has one;
    True when installed. ``GatewayConfigError`` when the exporters are missing."""
    env = os.environ if env is None else env
    if not isinstance(metrics.get_meter_provider(), _ProxyMeterProvider):
        return False  # the application's own provider: keep it
    try:
        from opentelemetry.exporter.prometheus import PrometheusMetricReader
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import MetricReader
        from opentelemetry.sdk.resources import Resource
    except ImportError:
        raise _missing("opentelemetry-sdk and opentelemetry-exporter-prometheus",
                       "prometheus") from None
    readers: list[MetricReader] = [PrometheusMetricReader()]
    if any(env.get(name) for name in _OTLP_ENDPOINTS):
        try:
            from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
                OTLPMetricExporter,
            )
            from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
        except ImportError:
            raise _missing("opentelemetry-exporter-otlp-proto-http (OTEL_EXPORTER_OTLP_"
                           "ENDPOINT is set)", "otlp") from None
        readers.append(PeriodicExportingMetricReader(OTLPMetricExporter()))
    resource = Resource.create({"service.name": env.get("OTEL_SERVICE_NAME", SERVICE_NAME),
                                "service.instance.id": f"{socket.gethostname()}-{os.getpid()}"})
    metrics.set_meter_provider(MeterProvider(metric_readers=readers, resource=resource))
    return True


def shutdown_meter_provider() -> None:
    """Flush the last metrics (an OTLP push) at shutdown."""
    provider = metrics.get_meter_provider()
    shutdown = getattr(provider, "shutdown", None)  # the SDK provider's; the API's has none
    if callable(shutdown):
        shutdown()


def render_metrics() -> bytes:
    """prometheus_client's default registry in the text exposition format."""
    try:
        from prometheus_client import REGISTRY, generate_latest
    except ImportError:
        raise _missing("prometheus_client", "prometheus") from None
    return generate_latest(REGISTRY)
