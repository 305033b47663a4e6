"""Which estimator cascades a suite is benchmarked with. Each entry builds (and, if it
learns, trains on the train side only) an estimator from the ``verifiers`` package."""

from __future__ import annotations

from collections.abc import Sequence

from benchmarks.bench import EstimatorMethod
from benchmarks.replay import Suite

REGISTRY: dict[str, EstimatorMethod] = {}


def methods_for(suite: Suite, names: Sequence[str] | None = None) -> list[EstimatorMethod]:
    """The named methods (all registered ones when ``names`` is None)."""
    if names is None:
        return list(REGISTRY.values())
    unknown = [n for n in names if n not in REGISTRY]
    if unknown:
        raise KeyError(f"no method {', '.join(unknown)} (methods: {', '.join(REGISTRY) or 'none'})")
    return [REGISTRY[n] for n in names]
