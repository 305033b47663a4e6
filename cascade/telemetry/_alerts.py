"""Alert sinks: logging, a signed webhook, OpenTelemetry metrics. Each gets only changes
(fired, resolved) from ``SloMonitor.deliver``, off the request path."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from collections.abc import Callable

import anyio
import httpx
from opentelemetry import metrics
from tenacity import (
    AsyncRetrying,
    RetryError,
    retry_if_exception_type,
    stop_after_attempt,
    wait_random_exponential,
)

from cascade.telemetry._slo import Alert, AlertDeliveryError, AlertState, AnyAlert, SignalAlert

SIGNATURE_HEADER = "X-Cascade-Signature"  # "sha256=<hex HMAC-SHA256 of the body>"
TIMESTAMP_HEADER = "X-Cascade-Timestamp"


class LogSink:
    """A WARNING when an alert fires, an INFO when it resolves (logger ``cascade.slo``)."""

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self.log = logger or logging.getLogger("cascade.slo")

    async def send(self, alert: AnyAlert) -> None:
        level = logging.WARNING if alert.state is AlertState.FIRING else logging.INFO
        self.log.log(level, "SLO %s %s: %s", alert.key, alert.state.value, alert.describe())


class _Retryable(Exception):
    """A delivery try that may succeed later (connection error, timeout, 429, 5xx)."""


def sign(secret: bytes, body: bytes) -> str:
    """The signature header's value: ``sha256=`` and the hex HMAC-SHA256 of the body."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


class WebhookSink:
    """POST each change as JSON to ``url``; with a ``secret``, the body's HMAC-SHA256 in
    ``X-Cascade-Signature`` (receivers compare with ``hmac.compare_digest``). Connection
    errors, timeouts, 429 and 5xx are retried with exponential backoff and full jitter
    (tenacity) up to ``max_attempts``; then, or on another 4xx, ``AlertDeliveryError``.
    The secret is never logged, shown in a repr or put in an error."""

    def __init__(self, url: str, *, secret: str | None = None, max_attempts: int = 5,
                 timeout_s: float = 5.0, initial_backoff_s: float = 0.5,
                 max_backoff_s: float = 30.0, client: httpx.AsyncClient | None = None,
                 sleep: Callable[[float], object] | None = None) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.url = url
        self._secret = secret.encode() if secret else None
        self.max_attempts = max_attempts
        self.timeout_s = timeout_s
        self._wait = wait_random_exponential(multiplier=initial_backoff_s, max=max_backoff_s)
        self._client = client
        self._sleep = sleep or anyio.sleep
        self.delivered = 0

    def __repr__(self) -> str:
        return f"WebhookSink({httpx.URL(self.url).copy_with(query=None, userinfo=b'')!s}, " \
               f"signed={self._secret is not None})"

    async def send(self, alert: AnyAlert) -> None:
        body = json.dumps(alert.to_dict(), sort_keys=True).encode()
        headers = {"Content-Type": "application/json", TIMESTAMP_HEADER: f"{time.time():.0f}"}
        if self._secret is not None:
            headers[SIGNATURE_HEADER] = sign(self._secret, body)
        retrying = AsyncRetrying(stop=stop_after_attempt(self.max_attempts), wait=self._wait,
                                 retry=retry_if_exception_type(_Retryable),
                                 sleep=self._sleep)  # type: ignore[arg-type]
        try:
            async for attempt in retrying:
                with attempt:
                    await self._post(body, headers)
        except RetryError as exc:
            cause = exc.last_attempt.exception()
            raise AlertDeliveryError(f"webhook gave up after {self.max_attempts} tries: "
                                     f"{cause}") from None
        self.delivered += 1

    async def _post(self, body: bytes, headers: dict[str, str]) -> None:
        client = self._client or httpx.AsyncClient()
        try:
            response = await client.post(self.url, content=body, headers=headers,
                                         timeout=self.timeout_s)
        except httpx.TransportError as exc:  # connect, read, timeout: the receiver may recover
            raise _Retryable(type(exc).__name__) from None
        finally:
            if self._client is None:
                await client.aclose()
        if response.status_code == 429 or response.status_code >= 500:
            raise _Retryable(f"HTTP {response.status_code}")
        if response.status_code >= 400:
            raise AlertDeliveryError(f"webhook refused the alert: HTTP {response.status_code}")


class OTelSink:
    """``cascade.slo.alert.active`` (gauge: 1 firing, 0 resolved) and
    ``cascade.slo.notifications`` (counter), per feature / tier / window (the kind, for
    audit and drift alerts) / kind; ``cascade.slo.burn_rate`` (escalation alerts) or
    ``cascade.slo.estimate`` (audit and drift alerts) at each change."""

    def __init__(self, meter_provider: metrics.MeterProvider | None = None) -> None:
        meter = (meter_provider or metrics.get_meter_provider()).get_meter("cascade")
        self.active = meter.create_gauge("cascade.slo.alert.active", "1",
                                         "1 while an escalation-rate SLO alert fires")
        self.notifications = meter.create_counter("cascade.slo.notifications",
                                                  "{notification}", "alert changes")
        self.burn = meter.create_gauge("cascade.slo.burn_rate", "1",
                                       "long-window escalation rate / target at the change")
        self.estimate = meter.create_gauge("cascade.slo.estimate", "1",
                                           "false-accept rate or input-drift share at the change")

    async def send(self, alert: AnyAlert) -> None:
        attributes = {"cascade.feature": alert.feature, "cascade.tier.name": alert.subject,
                      "cascade.slo.kind": alert.kind.value}
        match alert:
            case Alert():
                attributes["cascade.slo.window"] = alert.window.label
                self.burn.set(alert.burn_long, attributes)
            case SignalAlert():
                attributes["cascade.slo.window"] = alert.label
                self.estimate.set(alert.value, attributes)
        self.active.set(1 if alert.state is AlertState.FIRING else 0, attributes)
        self.notifications.add(1, {**attributes, "cascade.slo.state": alert.state.value})


__all__ = ["SIGNATURE_HEADER", "TIMESTAMP_HEADER", "LogSink", "OTelSink", "WebhookSink", "sign"]
