"""Tuning on recorded data, apart from the request path: threshold calibration
(``cascade calibrate``), router calibration (``cascade calibrate-router``) and the agreement
plan search (``cascade search-ensemble``). Each records answers or confidences through the real
engine on replayed data, then chooses with the pure rules of ``verifiers``.

Nothing on the request path (``cascade.engine`` and what it imports to run) imports this
package (tests/test_packaging.py checks it)."""

from cascade.tuning._calibrate import (
    Calibration,
    Recorded,
    Target,
    TargetKind,
    TierReport,
    calibrate,
    record_chain,
    record_tier,
    replayed_policy,
)
from cascade.tuning._ensemble_search import (
    SearchResult,
    SearchTarget,
    collect,
    describe,
    plan_policy,
    plan_tiers,
    search_ensemble,
)
from cascade.tuning._route_calibrate import RouteCalibration, RouteTarget, calibrate_router

__all__ = [
    "Calibration",
    "Recorded",
    "RouteCalibration",
    "RouteTarget",
    "SearchResult",
    "SearchTarget",
    "Target",
    "TargetKind",
    "TierReport",
    "calibrate",
    "calibrate_router",
    "collect",
    "describe",
    "plan_policy",
    "plan_tiers",
    "record_chain",
    "record_tier",
    "replayed_policy",
    "search_ensemble",
]
