"""What an alert is: the escalation-rate targets and burn windows, the changes sent to the
sinks (``Alert`` for escalation rates, ``SignalAlert`` for estimated shares: audits, input
drift), the sink protocol, and the state machine that keeps an alert from flapping. Pure:
no I/O, no clock reads."""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from typing import Protocol

from cascade.errors import CascadeError


class AlertDeliveryError(CascadeError):
    """An alert sink could not deliver a notification (after its retries)."""


@dataclass(frozen=True, slots=True)
class BurnWindow:
    """Fire when the rate over ``long_s`` and over ``short_s`` are both at least
    ``burn_rate`` × the target."""

    long_s: float
    short_s: float
    burn_rate: float
    name: str = ""

    def __post_init__(self) -> None:
        if not 0 < self.short_s < self.long_s or not math.isfinite(self.long_s):
            raise ValueError(f"window {self.name!r}: need 0 < short_s < long_s, "
                             f"got {self.short_s} and {self.long_s}")
        if not self.burn_rate > 0:
            raise ValueError(f"window {self.name!r}: burn_rate must be > 0")

    @property
    def label(self) -> str:
        return self.name or f"{self.long_s:g}s/{self.short_s:g}s@{self.burn_rate:g}x"


# The workbook's pairs (1 h with 5 min, 6 h with 30 min) with burn rates an escalation
# target can reach: its 14.4x and 6x assume a 0.1 % budget; 30 % x 14.4 is no rate at all.
DEFAULT_WINDOWS = (BurnWindow(3600, 300, 2.0, "fast"), BurnWindow(21600, 1800, 1.5, "slow"))


@dataclass(frozen=True, slots=True)
class EscalationTarget:
    """At most ``target`` of the answers judged at tier ``tier`` of ``feature`` escalate
    (``to``: the tier they escalate to, for the message)."""

    feature: str
    tier: str
    target: float
    to: str | None = None
    calibrated: float | None = None  # the rate calibration predicted (threshold drift)

    def __post_init__(self) -> None:
        if not 0 < self.target < 1:
            raise ValueError(f"escalation target of tier {self.tier!r} must be in (0, 1)")
        if self.calibrated is not None and not 0 < self.calibrated < 1:
            raise ValueError(f"calibrated escalation rate of tier {self.tier!r} must be in (0, 1)")


class AlertKind(enum.Enum):
    BURN_RATE = "burn_rate"  # the SLO's error budget burns too fast (a window pair)
    STORM = "storm"  # almost every answer escalates: the tier is effectively dead
    DRIFT = "drift"  # the rate moved away from the calibrated one (either way)
    FALSE_ACCEPT = "false_accept"  # audited accepted answers: above the slo's quality target
    AUDIT = "audit"  # audited accepted answers: above the false-accept rate calibration promised
    INPUT_DRIFT = "input_drift"  # live queries unlike the router's training set


class AlertState(enum.Enum):
    FIRING = "firing"
    RESOLVED = "resolved"


@dataclass(frozen=True, slots=True)
class Alert:
    """A change of one alert (one target × one window pair), as sent to the sinks."""

    state: AlertState
    target: EscalationTarget
    window: BurnWindow
    rate_long: float
    rate_short: float
    runs_long: int
    at: float  # wall-clock seconds
    since: float  # when it fired
    kind: AlertKind = AlertKind.BURN_RATE
    episode: int | None = None  # set on delivery: the n-th firing of this alert (shared store)

    @property
    def key(self) -> str:
        return f"{self.target.feature}/{self.target.tier}/{self.window.label}"

    @property
    def feature(self) -> str:
        return self.target.feature

    @property
    def subject(self) -> str:
        return self.target.tier

    def describe(self) -> str:
        return (f"escalation rate {100 * self.rate_long:.1f}% over {self.window.long_s:g}s "
                f"(short window {100 * self.rate_short:.1f}%), target "
                f"{100 * self.target.target:.1f}%, {self.runs_long} runs")

    @property
    def burn_long(self) -> float:
        return self.rate_long / self.target.target

    def to_dict(self) -> dict[str, object]:
        return {"status": self.state.value, "alert": self.key, "feature": self.target.feature,
                "tier": self.target.tier, "to": self.target.to,
                "target": self.target.target, "window": self.window.label,
                "long_s": self.window.long_s, "short_s": self.window.short_s,
                "burn_rate_threshold": self.window.burn_rate, "burn_rate": self.burn_long,
                "rate_long": self.rate_long, "rate_short": self.rate_short,
                "runs_long": self.runs_long, "at": self.at, "since": self.since,
                "kind": self.kind.value, "episode": self.episode}


@dataclass(frozen=True, slots=True)
class SignalAlert:
    """A change of an alert on an estimated share against a ``limit``, with hysteresis on its
    confidence interval: it fires when the interval's lower bound exceeds the limit and
    resolves when its upper bound falls below it. Audits (``FALSE_ACCEPT``, ``AUDIT``: the
    share of audited accepted answers the judge disagreed with, of tier ``subject`` or of
    every tier below the judge, ``*``) and router input drift (``INPUT_DRIFT``)."""

    state: AlertState
    kind: AlertKind
    feature: str
    subject: str  # a tier name, "*" (every audited tier) or "router"
    value: float  # the estimated share
    low: float
    high: float
    limit: float
    samples: int  # what the estimate is over (audits, queries)
    window_s: float | None  # over the last window_s seconds (None: a count window)
    at: float
    since: float
    detail: str = ""
    episode: int | None = None

    @property
    def key(self) -> str:
        return f"{self.feature}/{self.subject}/{self.kind.value}"

    @property
    def label(self) -> str:
        return self.kind.value

    def describe(self) -> str:
        what = {AlertKind.FALSE_ACCEPT: "false-accept rate (audited) against the SLO",
                AlertKind.AUDIT: "false-accept rate (audited) against the calibrated alpha",
                AlertKind.INPUT_DRIFT: "share of queries unlike the router's training set"
                }.get(self.kind, self.kind.value)
        return (f"{what}: {100 * self.value:.1f}% [{100 * self.low:.1f}%, "
                f"{100 * self.high:.1f}%] over {self.samples}, limit {100 * self.limit:.1f}%"
                + (f" ({self.detail})" if self.detail else ""))

    def to_dict(self) -> dict[str, object]:
        return {"status": self.state.value, "alert": self.key, "feature": self.feature,
                "subject": self.subject, "kind": self.kind.value, "value": self.value,
                "low": self.low, "high": self.high, "limit": self.limit,
                "samples": self.samples, "window_s": self.window_s, "at": self.at,
                "since": self.since, "detail": self.detail, "episode": self.episode}


AnyAlert = Alert | SignalAlert


@dataclass(frozen=True, slots=True)
class FalseAcceptTarget:
    """At most ``max`` of the answers ``tier`` of ``feature`` accepted are wrong (as the
    audit's judge sees them)."""

    feature: str
    tier: str
    max: float

    def __post_init__(self) -> None:
        if not 0 < self.max < 1:
            raise ValueError(f"false-accept target of tier {self.tier!r} must be in (0, 1)")


def bound_condition(firing: bool, low: float, high: float, limit: float) -> bool:
    """Hysteresis on an interval: start firing when ``low > limit``; keep firing until
    ``high < limit``."""
    return high >= limit if firing else low > limit


class AlertSink(Protocol):
    async def send(self, alert: AnyAlert) -> None:
        """Deliver one change; raise ``AlertDeliveryError`` when it cannot."""
        ...


@dataclass(slots=True)
class Tracker:
    """One alert's state machine: fire on the condition; resolve after it has been false
    for ``resolve_after_s`` without a break (hysteresis: no flapping)."""

    firing: bool = False
    since: float = 0.0
    clear_since: float | None = None

    def step(self, condition: bool, now: float, resolve_after_s: float) -> AlertState | None:
        if condition:
            self.clear_since = None
            if not self.firing:
                self.firing, self.since = True, now
                return AlertState.FIRING
            return None
        if not self.firing:
            return None
        if self.clear_since is None:
            self.clear_since = now
        if now - self.clear_since >= resolve_after_s:
            self.firing, self.clear_since = False, None
            return AlertState.RESOLVED
        return None


__all__ = ["DEFAULT_WINDOWS", "Alert", "AlertDeliveryError", "AlertKind", "AlertSink",
           "AlertState", "AnyAlert", "BurnWindow", "EscalationTarget", "FalseAcceptTarget",
           "SignalAlert", "Tracker", "bound_condition"]
