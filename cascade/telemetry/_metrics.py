"""OpenTelemetry metrics as one ``RunObserver``: the API only, so a no-op until the
application installs an SDK ``MeterProvider`` (OTLP, Prometheus: docs/observability.md).

GenAI semantic conventions where they define a metric (``gen_ai.client.token.usage``,
``gen_ai.client.operation.duration``, one observation per tier attempt); ``cascade.*`` for
the rest. Attributes are low-cardinality names: feature, tier, model, decision, deployment,
error type; never text."""

from __future__ import annotations

from opentelemetry import metrics
from opentelemetry.metrics._internal import _ProxyMeterProvider  # the API's "no SDK yet"

from cascade.telemetry._events import (
    AttemptInfo,
    BreakerTransition,
    BudgetDecision,
    EstimateInfo,
    FallbackEvent,
    RetryEvent,
    RunInfo,
)
from cascade.telemetry._observers import RunObserver
from cascade.types import Attempt, Climb, Decision, Result, RouteDecision, climbs

METER_NAME = "cascade"
BREAKER_STATE = {"closed": 0, "half_open": 1, "open": 2, "forced_open": 3}
_DURATION_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24,
                     20.48, 40.96, 81.92)  # the GenAI semconv's advice
_TOKEN_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576)
_CONFIDENCE_BUCKETS = tuple(i / 20 for i in range(1, 21))


class MetricsObserver(RunObserver):
    """Counters and histograms per feature / tier / model / decision (docs/observability.md
    lists every instrument)."""

    def __init__(self, meter_provider: metrics.MeterProvider | None = None) -> None:
        self._quiet = meter_provider is None and isinstance(metrics.get_meter_provider(),
                                                            _ProxyMeterProvider)
        meter = (meter_provider or metrics.get_meter_provider()).get_meter(METER_NAME)
        c, h = meter.create_counter, meter.create_histogram
        self.runs = c("cascade.runs", "{run}", "runs by how they ended")
        self.attempts = c("cascade.attempts", "{attempt}", "tier attempts by decision")
        self.acceptances = c("cascade.acceptances", "{run}", "answers accepted, per tier")
        self.escalations = c("cascade.escalations", "{run}",
                             "confidence escalations per tier hop (from -> to)")
        self.fallbacks = c("cascade.fallbacks", "{run}",
                           "moves to the next tier after a tier failed, per hop")
        self.confidence = h("cascade.confidence", "1", "estimator confidence per tier",
                            explicit_bucket_boundaries_advisory=_CONFIDENCE_BUCKETS)
        self.run_cost = h("cascade.run.cost", "USD", "cost of each run")
        self.tier_cost = c("cascade.tier.cost", "USD", "spent per tier (answers and estimators)")
        self.run_duration = h("cascade.run.duration", "s", "latency of each run",
                              explicit_bucket_boundaries_advisory=_DURATION_BUCKETS)
        self.operation_duration = h("gen_ai.client.operation.duration", "s",
                                    "GenAI operation duration (one tier attempt)",
                                    explicit_bucket_boundaries_advisory=_DURATION_BUCKETS)
        self.token_usage = h("gen_ai.client.token.usage", "{token}",
                             "tokens used per tier attempt",
                             explicit_bucket_boundaries_advisory=_TOKEN_BUCKETS)
        self.estimator_cost = c("cascade.estimator.cost", "USD", "what estimators spent")
        self.estimator_duration = h("cascade.estimator.duration", "s", "estimator latency",
                                    explicit_bucket_boundaries_advisory=_DURATION_BUCKETS)
        self.retries = c("cascade.retries", "{retry}", "model calls retried")
        self.deployment_fallbacks = c("cascade.deployment.fallbacks", "{call}",
                                      "calls moved to another deployment of the tier")
        self.breaker_transitions = c("cascade.breaker.transitions", "{transition}",
                                     "circuit-breaker state changes")
        self.breaker_state = meter.create_gauge(
            "cascade.breaker.state", "1", "0 closed, 1 half-open, 2 open, 3 forced open")
        self.budget_decisions = c("cascade.budget.decisions", "{call}",
                                  "budget reservations allowed or denied")

    def _off(self) -> bool:
        """No SDK installed yet (the API's proxy provider): recording would do nothing, so
        the attributes are not even built (about 0.1 ms a run). Asked once per run, at its
        start (``run_started``); instruments made from the proxy start recording as soon as
        the application sets a provider, from the next run on."""
        return self._quiet

    def run_started(self, run: RunInfo) -> None:
        if self._quiet and not isinstance(metrics.get_meter_provider(), _ProxyMeterProvider):
            self._quiet = False  # a global provider is set once and for all: stop asking

    def attempt_finished(self, attempt: AttemptInfo, record: Attempt) -> None:
        if self._off():
            return
        feature = attempt.run.feature
        tier = {"cascade.feature": feature, "cascade.tier.name": record.tier_name}
        self.attempts.add(1, {**tier, "cascade.decision": record.decision.value})
        if record.decision is Decision.SKIP:
            return
        if record.cost:
            self.tier_cost.add(record.cost, {**tier, "gen_ai.request.model": record.model})
        genai: dict[str, str] = {"gen_ai.operation.name": "chat",
                                 "gen_ai.request.model": attempt.model,
                                 "gen_ai.provider.name": record.deployment.split("@", 1)[0],
                                 **tier}
        if record.decision in (Decision.ERROR, Decision.TIMEOUT):
            genai["error.type"] = (record.error or "error").split(":", 1)[0]
        self.operation_duration.record(record.latency_s, genai)
        if "error.type" not in genai:
            self.token_usage.record(record.input_tokens, {**genai, "gen_ai.token.type": "input"})
            self.token_usage.record(record.output_tokens, {**genai, "gen_ai.token.type": "output"})

    def estimate_made(self, attempt: AttemptInfo, estimate: EstimateInfo) -> None:
        if self._off():
            return
        attributes = {"cascade.feature": attempt.run.feature,
                      "cascade.tier.name": attempt.tier_name,
                      "cascade.estimator": estimate.estimator}
        if estimate.confidence is not None:
            self.confidence.record(estimate.confidence, {
                **attributes, "cascade.decision": "accept" if estimate.accepted else "escalate"})
        self.estimator_cost.add(estimate.cost, attributes)
        if estimate.ended_ns > estimate.started_ns:
            self.estimator_duration.record((estimate.ended_ns - estimate.started_ns) / 1e9,
                                           attributes)

    def routed(self, run: RunInfo, decision: RouteDecision) -> None:
        if self._off():
            return
        if decision.cost:
            self.tier_cost.add(decision.cost, {"cascade.feature": run.feature,
                                               "cascade.tier.name": "(router)"})

    def run_finished(self, run: RunInfo, result: Result | None,
                     error: BaseException | None) -> None:
        if self._off():
            return
        feature = {"cascade.feature": run.feature}
        if result is None:
            self.runs.add(1, {**feature, "error.type": type(error).__name__})
            return
        self.runs.add(1, {**feature, "cascade.stop_reason": result.stop_reason.value,
                          "cascade.tier.name": result.tier_name,
                          "cascade.accepted": result.accepted})
        if result.accepted:
            self.acceptances.add(1, {**feature, "cascade.tier.name": result.tier_name})
        for before, after, climb in climbs(result.attempts):
            hop = {**feature, "cascade.tier.from": before.tier_name,
                   "cascade.tier.to": after.tier_name}
            match climb:
                case Climb.ESCALATION:
                    self.escalations.add(1, hop)
                case Climb.FALLBACK:
                    self.fallbacks.add(1, {**hop, "error.type": (before.error or before.decision.value).split(":", 1)[0]})
        self.run_cost.record(result.cost, feature)
        self.run_duration.record(result.latency_s, {
            **feature, "cascade.stop_reason": result.stop_reason.value})

    def retry(self, run: RunInfo, event: RetryEvent) -> None:
        if self._off():
            return
        self.retries.add(1, {"cascade.feature": run.feature,
                             "cascade.deployment": event.deployment, "error.type": event.error})

    def fallback(self, run: RunInfo, event: FallbackEvent) -> None:
        if self._off():
            return
        self.deployment_fallbacks.add(1, {"cascade.feature": run.feature,
                                          "cascade.deployment": event.deployment,
                                          "error.type": event.error})

    def breaker_transition(self, run: RunInfo, event: BreakerTransition) -> None:
        if self._off():
            return
        self.breaker_transitions.add(1, {"cascade.deployment": event.deployment,
                                         "cascade.breaker.from": event.old,
                                         "cascade.breaker.to": event.new})
        self.breaker_state.set(BREAKER_STATE.get(event.new, -1),
                               {"cascade.deployment": event.deployment})

    def budget_decision(self, run: RunInfo, event: BudgetDecision) -> None:
        if self._off():
            return
        attributes: dict[str, str | bool] = {"cascade.feature": run.feature,
                                             "cascade.budget.allowed": event.allowed}
        if event.budget is not None:
            attributes["cascade.budget.name"] = event.budget
        self.budget_decisions.add(1, attributes)


__all__ = ["BREAKER_STATE", "METER_NAME", "MetricsObserver"]
