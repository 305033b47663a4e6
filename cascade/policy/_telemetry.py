"""Policy keys for observability: ``telemetry:`` (content in spans, metrics, observers)."""

from __future__ import annotations

import importlib
import re
from typing import TYPE_CHECKING

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from cascade.errors import ConfigError
from verifiers import AnswerKind

if TYPE_CHECKING:
    from cascade.telemetry import RunObserver

_IMPORT_PATH = r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$"


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class AuditSpec(_Spec):
    """Re-ask a share of accepted cheaper answers of the judge tier, off the request path."""

    rate: float = Field(gt=0, le=1, description="share of accepted answers below the judge "
                        "that are audited")
    judge: str | None = Field(None, description="the tier that re-answers (default: the last)")
    answer: AnswerKind = Field(AnswerKind.TEXT, description="how answers are compared "
                               "(number, choice, exact, code, text)")
    alpha: float | None = Field(None, gt=0, lt=1, description="the false-accept rate "
                                "calibration promised: alert when the interval's lower bound "
                                "exceeds it")
    confidence: float = Field(0.95, gt=0, lt=1, description="of the Clopper-Pearson interval")
    budget_usd: float | None = Field(None, ge=0, description="stop auditing once this is spent")
    window: int | None = Field(None, ge=1, description="estimate from the last N audits "
                               "(default: all of them)")


class TelemetrySpec(_Spec):
    """What each run reports (docs/observability.md)."""

    record_content: bool = Field(False, description="put prompt and answer text into spans "
                                 "(gen_ai.input.messages / gen_ai.output.messages); off: "
                                 "names and numbers only")
    metrics: bool = Field(True, description="OpenTelemetry metrics (a no-op until the "
                          "application installs a MeterProvider)")
    observers: tuple[str, ...] = Field((), description="your RunObserver classes or "
                                       "zero-argument factories, as 'package.module:name'")
    audit: AuditSpec | None = Field(None, description="live false-accept estimate")

    @field_validator("observers")
    @classmethod
    def _import_paths(cls, paths: tuple[str, ...]) -> tuple[str, ...]:
        for path in paths:
            if not re.match(_IMPORT_PATH, path):
                raise ValueError(f"{path!r} is not 'package.module:name'")
        return paths

    def build_observers(self) -> list[RunObserver]:
        """Import and instantiate every named observer (``ConfigError`` naming the one that
        cannot be imported, is not callable, or does not make a ``RunObserver``)."""
        from cascade.telemetry import RunObserver

        built: list[RunObserver] = []
        for path in self.observers:
            module_name, _, attribute = path.partition(":")
            try:
                target: object = importlib.import_module(module_name)
                for part in attribute.split("."):
                    target = getattr(target, part)
            except (ImportError, AttributeError) as exc:
                raise ConfigError(f"telemetry.observers: cannot import {path!r} "
                                  f"({type(exc).__name__}: {exc})") from None
            if not callable(target):
                raise ConfigError(f"telemetry.observers: {path!r} is not a class or factory")
            observer = target()
            if not isinstance(observer, RunObserver):
                raise ConfigError(f"telemetry.observers: {path!r} made a "
                                  f"{type(observer).__name__}, not a RunObserver")
            built.append(observer)
        return built




class BurnWindowSpec(_Spec):
    """One multi-window burn-rate alert: the escalation rate over ``long_s`` and over
    ``short_s`` both at least ``burn_rate`` × the target."""

    name: str = Field("", max_length=40)
    long_s: float = Field(gt=0, le=31 * 86400)
    short_s: float = Field(gt=0)
    burn_rate: float = Field(gt=0)

    @field_validator("short_s")
    @classmethod
    def _shorter(cls, short_s: float, info: ValidationInfo) -> float:
        long_s = info.data.get("long_s")
        if long_s is not None and short_s >= long_s:
            raise ValueError(f"short_s ({short_s:g}) must be less than long_s ({long_s:g})")
        return short_s


class EscalationTargetSpec(_Spec):
    """At most ``target`` of the answers judged at tier ``from`` escalate (to ``to``)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False,
                              populate_by_name=True)

    tier: str = Field(alias="from", description="the tier whose answers escalate")
    to: str | None = Field(None, description="the next tier (checked; for messages)")
    target: float = Field(gt=0, lt=1, description="the highest acceptable escalation rate")
    calibrated: float | None = Field(None, gt=0, lt=1, description="the escalation rate "
                                     "calibration predicted: alert when the live rate drifts "
                                     "away from it (either way)")


class FalseAcceptSpec(_Spec):
    """At most ``max`` of the answers ``tier`` accepted are wrong, as the audit's judge sees
    them (needs ``telemetry.audit``)."""

    tier: str = Field(description="a tier below the audit's judge")
    max: float = Field(gt=0, lt=1, description="the highest acceptable false-accept rate: "
                       "alert when the interval's lower bound exceeds it, resolve when its "
                       "upper bound falls below it")


class InputDriftSpec(_Spec):
    """Alert when live queries stop looking like the learned router's training set: the share
    below its cold-start similarity, against that share on the training set (held out)."""

    margin: float = Field(0.1, gt=0, lt=1, description="alert when the live share's interval "
                          "lies above the training share plus this")
    max_share: float | None = Field(None, gt=0, lt=1, description="or this share, if given")
    window_s: float = Field(3600, gt=0, le=31 * 86400, description="over the last window_s")
    min_queries: int = Field(50, ge=1, description="fewer routed queries never fire")


class WebhookSpec(_Spec):
    url: SecretStr = Field(description="http(s) URL that receives a JSON POST per change")
    secret: SecretStr | None = Field(None, description="HMAC-SHA256 key of the "
                                     "X-Cascade-Signature header (use ${ENV_VAR})")
    max_attempts: int = Field(5, ge=1, le=20)
    timeout_s: float = Field(5.0, gt=0, le=120)

    @field_validator("url")
    @classmethod
    def _http(cls, url: SecretStr) -> SecretStr:
        if not re.match(r"^https?://[^/\s]+", url.get_secret_value()):
            raise ValueError("an http:// or https:// URL is needed")
        return url


class AlertsSpec(_Spec):
    log: bool = Field(True, description="log fired (WARNING) and resolved (INFO) alerts")
    otel: bool = Field(True, description="cascade.slo.* OpenTelemetry metrics")
    webhook: WebhookSpec | None = None


class SloSpec(_Spec):
    """Escalation-rate SLOs of this feature (docs/observability.md)."""

    escalation_rate: tuple[EscalationTargetSpec, ...] = Field(
        (), description="escalation-rate targets per tier hop")
    false_accept: tuple[FalseAcceptSpec, ...] = Field(
        (), description="accepted-answer quality targets per tier, from the audit's estimate")
    windows: tuple[BurnWindowSpec, ...] = Field(
        (BurnWindowSpec(name="fast", long_s=3600, short_s=300, burn_rate=2.0),
         BurnWindowSpec(name="slow", long_s=21600, short_s=1800, burn_rate=1.5)),
        min_length=1, description="default: 1 h with 5 min at 2x, 6 h with 30 min at 1.5x")
    min_runs: int = Field(20, ge=1, description="fewer runs in the long window never fire")
    evaluate_every_s: float = Field(10.0, gt=0, le=3600)
    resolve_after_s: float | None = Field(None, gt=0, description="the condition must stay "
                                          "false this long to resolve (default: short window)")
    storm_rate: float | None = Field(0.95, gt=0, le=1, description="alert when at least "
                                     "this share escalates over the shortest short window "
                                     "(null: off)")
    drift_z: float = Field(4.0, gt=0, description="|z| of the threshold-drift test that fires")
    input_drift: InputDriftSpec | None = Field(None, description="router input drift "
                                                "(needs a learned router)")
    alerts: AlertsSpec = Field(default_factory=AlertsSpec)
    snapshot: str | None = Field(None, description="JSON file (relative to the policy) the "
                                 "monitor rewrites after each evaluation, for `cascade report`")

    @model_validator(mode="after")
    def _reachable(self) -> SloSpec:
        if not (self.escalation_rate or self.false_accept or self.input_drift):
            raise ValueError("an slo: block needs escalation_rate, false_accept and/or "
                             "input_drift")
        for target in self.escalation_rate:
            for window in self.windows:
                if target.target * window.burn_rate >= 1:
                    raise ValueError(
                        f"tier {target.tier!r}: target {target.target:g} x burn_rate "
                        f"{window.burn_rate:g} is not below 1: that alert could never fire")
        return self


__all__ = ["AlertsSpec", "AuditSpec", "BurnWindowSpec", "EscalationTargetSpec", "FalseAcceptSpec",
           "InputDriftSpec", "SloSpec", "TelemetrySpec", "WebhookSpec"]
