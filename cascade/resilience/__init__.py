"""Resilience: circuit breakers (pure state machines, shared through a Store), spending
budgets reserved atomically before each call, and an Envoy-style retry budget."""

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
from cascade.resilience._registry import BreakerRegistry, open_until_key
from cascade.resilience._retry_budget import RetryBudget

__all__ = [
    "BreakerConfig",
    "BreakerRegistry",
    "BreakerSnapshot",
    "BreakerState",
    "BudgetArgumentError",
    "BudgetRule",
    "BudgetScope",
    "Budgets",
    "CircuitBreaker",
    "Denied",
    "Period",
    "Permit",
    "Reservation",
    "ResilienceConfigError",
    "ResilienceValueError",
    "RetryBudget",
    "SlidingWindow",
    "Transition",
    "bucket",
    "open_until_key",
]
