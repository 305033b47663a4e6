"""Resilience: the one seam every model call passes through (``call_model``), deployments
with bulkheads and load balancing, circuit breakers (pure state machines, shared through a
Store), tenacity retries under an Envoy-style retry budget, and spending budgets reserved
atomically before each call."""

from cascade.resilience._breaker import (
    BreakerConfig,
    BreakerSnapshot,
    BreakerState,
    CircuitBreaker,
    Permit,
    ResilienceConfigError,
    ResilienceValueError,
    SlidingWindow,
    Transition,
)
from cascade.resilience._budget import (
    BudgetArgumentError,
    BudgetRule,
    Budgets,
    BudgetScope,
    Denied,
    Period,
    Reservation,
    bucket,
)
from cascade.resilience._deployments import Bulkhead, Deployment, DeploymentState, Latency, Target
from cascade.resilience._registry import BreakerRegistry, open_until_key
from cascade.resilience._retry_budget import RetryBudget
from cascade.resilience._runtime import DeploymentHealth, Resilience
from cascade.resilience._seam import RunScope, call_model

__all__ = [
    "BreakerConfig",
    "BreakerRegistry",
    "BreakerSnapshot",
    "BreakerState",
    "BudgetArgumentError",
    "BudgetRule",
    "BudgetScope",
    "Budgets",
    "Bulkhead",
    "CircuitBreaker",
    "Denied",
    "Deployment",
    "DeploymentHealth",
    "DeploymentState",
    "Latency",
    "Period",
    "Permit",
    "Reservation",
    "Resilience",
    "ResilienceConfigError",
    "ResilienceValueError",
    "RetryBudget",
    "RunScope",
    "SlidingWindow",
    "Target",
    "Transition",
    "bucket",
    "call_model",
    "open_until_key",
]
