"""Policy keys for resilience: deployments, retries, circuit breakers, bulkheads, hedging,
budgets and the shared-state store. Typed and validated once, like the rest of the policy."""

from __future__ import annotations

import enum
import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

_SLUG = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


def check_slug(value: str) -> str:
    """A name used in results, traces and keys: lower-case letters, digits, '-', '_'."""
    if not _SLUG.match(value):
        raise ValueError(f"{value!r} is not a slug (lower-case letters, digits, '-', '_')")
    return value


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class LoadBalancing(str, enum.Enum):
    """How a tier's healthy deployments share its calls."""

    WEIGHTED_RANDOM = "weighted_random"  # by `weight`
    LEAST_IN_FLIGHT = "least_in_flight"  # the deployment with the fewest calls under way
    LOWEST_LATENCY = "lowest_latency"  # the lowest latency EWMA (untried deployments first)


class OnUnavailable(str, enum.Enum):
    """When every deployment of a tier is unavailable (breakers open, load shed, failing)."""

    ESCALATE = "escalate"  # move on to the next tier
    BEST_SO_FAR = "best_so_far"  # stop and return the best answer so far, not accepted


class OnContentFilter(str, enum.Enum):
    """When a tier's upstream refuses or cuts the answer by its content filter."""

    ESCALATE = "escalate"  # try the next tier (another provider may answer)
    STOP = "stop"  # stop: the best answer so far, not accepted (none: NoAnswerError)


class OnBudgetExhausted(str, enum.Enum):
    """When a spending budget cannot afford the next call."""

    BEST_SO_FAR = "best_so_far"  # stop climbing; return the best answer so far, not accepted
    CHEAPEST = "cheapest"  # answer from the cheapest tier (run it if the run skipped it)
    ERROR = "error"  # raise BudgetExceededError


class RetrySpec(_Spec):
    """Retries of one model call (tenacity): exponential backoff with full jitter, never sooner
    than the upstream's Retry-After, within the run's deadline and the retry budget."""

    max_attempts: int = Field(3, ge=1, le=20, description="tries per call, the first included")
    initial_backoff_s: float = Field(0.25, gt=0, le=60, description="backoff scale of the first retry")
    max_backoff_s: float = Field(8.0, gt=0, le=600, description="cap of one backoff")
    budget_ratio: float = Field(0.2, ge=0, le=1, description="retries may be at most this share "
                                "of a deployment's recent calls (Envoy's retry budget)")
    budget_min_retries: int = Field(3, ge=0, description="retries always allowed per window")
    budget_window_s: float = Field(10.0, gt=0, le=3600, description="the retry budget's window")

    @model_validator(mode="after")
    def _order(self) -> RetrySpec:
        if self.max_backoff_s < self.initial_backoff_s:
            raise ValueError("max_backoff_s is below initial_backoff_s")
        return self


class BreakerSpec(_Spec):
    """One circuit breaker per deployment (Resilience4j semantics)."""

    enabled: bool = True
    window: Literal["count", "time"] = Field("count", description="sliding window of the last "
                                              "`window_size` calls, or of `window_size` seconds")
    window_size: int = Field(100, ge=1, le=100_000)
    minimum_calls: int = Field(50, ge=1, description="calls in the window before rates count")
    failure_rate: float = Field(0.5, gt=0, le=1, description="trip at this failure share")
    slow_call_rate: float = Field(1.0, gt=0, le=1, description="trip at this slow-call share")
    slow_call_s: float = Field(30.0, gt=0, description="a call slower than this is slow")
    open_s: float = Field(30.0, gt=0, description="first open period")
    open_multiplier: float = Field(2.0, ge=1, le=100, description="growth on repeated trips")
    max_open_s: float = Field(300.0, gt=0, description="cap of the open period")
    half_open_calls: int = Field(3, ge=1, le=1000, description="probes allowed when half-open")

    @model_validator(mode="after")
    def _order(self) -> BreakerSpec:
        if self.max_open_s < self.open_s:
            raise ValueError("max_open_s is below open_s")
        return self


class BulkheadSpec(_Spec):
    """Per deployment: calls in flight at most; beyond it callers queue (within their run's
    deadline); beyond the queue the call is shed (BulkheadFullError, falls back)."""

    max_in_flight: int = Field(64, ge=1, le=10_000, description="also the HTTP pool size")
    max_queue: int = Field(1024, ge=0, le=1_000_000)


class HedgeSpec(_Spec):
    """A second request to another deployment of the tier when the first is slow; the first
    answer wins, the other is cancelled; both costs count."""

    after_s: float | Literal["p95"] = Field(
        "p95", description="delay before the hedge: seconds, or the deployment's observed p95")
    min_samples: int = Field(20, ge=1, description="p95: latencies needed before hedging")

    @field_validator("after_s")
    @classmethod
    def _positive(cls, value: float | str) -> float | str:
        if isinstance(value, float) and not value > 0:
            raise ValueError("after_s must be > 0")
        return value


class MemoryStoreSpec(_Spec):
    kind: Literal["memory"]


class RedisStoreSpec(_Spec):
    """Shared breaker, retry-budget and spending-budget state for several processes or hosts.
    If Redis becomes unreachable, serving continues on local state and resynchronises."""

    kind: Literal["redis"]
    url: SecretStr = Field(description="redis://host:port/db — use ${REDIS_URL}; never logged")
    prefix: str = Field("cascade:", min_length=1, max_length=100)
    timeout_s: float = Field(0.5, gt=0, le=30)
    retry_s: float = Field(5.0, gt=0, le=3600, description="how often to try Redis again "
                           "while it is unreachable")


StoreSpec = Annotated[MemoryStoreSpec | RedisStoreSpec, Field(discriminator="kind")]


class ResilienceSpec(_Spec):
    retry: RetrySpec = Field(default_factory=RetrySpec)
    breaker: BreakerSpec = Field(default_factory=BreakerSpec)
    bulkhead: BulkheadSpec = Field(default_factory=BulkheadSpec)
    store: StoreSpec = Field(default_factory=lambda: MemoryStoreSpec(kind="memory"))


class BudgetSpec(_Spec):
    """A spending limit per period, in dollars and/or model calls, for the whole feature or per
    caller (a request metadata field). Every model call counts: tiers, members, samples,
    raters, graders, retries."""

    name: str
    scope: Literal["feature", "caller"] = "feature"
    caller_key: str = Field("caller", min_length=1, description="caller scope: the request "
                            "metadata field naming the caller (requests without it are not "
                            "limited by this budget)")
    period: Literal["minute", "hour", "day", "month"]
    usd: float | None = Field(None, ge=0, le=1e9)
    requests: int | None = Field(None, ge=1, description="model calls per period")

    _slug = field_validator("name")(check_slug)

    @model_validator(mode="after")
    def _a_limit(self) -> BudgetSpec:
        if self.usd is None and self.requests is None:
            raise ValueError("a budget needs `usd` and/or `requests`")
        return self
