"""Tuning on recorded data, apart from the request path: threshold calibration
(``cascade calibrate``), router calibration (``cascade calibrate-router``), the agreement
plan search (``cascade search-ensemble``), and the unified decision's fit and λ
(``cascade train-router --kind unified``, ``cascade calibrate`` on a unified policy). Each records answers or confidences through the real
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
from cascade.tuning._unified_calibrate import (
    LambdaPoint,
    UnifiedCalibration,
    UnifiedFit,
    UnifiedTargetError,
    calibrate_unified,
    choose_cost_weight,
    train_unified,
)
from cascade.tuning._unified_data import UnifiedFitError

__all__ = [
    "Calibration",
    "LambdaPoint",
    "Recorded",
    "RouteCalibration",
    "RouteTarget",
    "SearchResult",
    "SearchTarget",
    "Target",
    "TargetKind",
    "TierReport",
    "UnifiedCalibration",
    "UnifiedFit",
    "UnifiedFitError",
    "UnifiedTargetError",
    "calibrate",
    "calibrate_router",
    "calibrate_unified",
    "choose_cost_weight",
    "collect",
    "describe",
    "plan_policy",
    "plan_tiers",
    "record_chain",
    "record_tier",
    "replayed_policy",
    "search_ensemble",
    "train_unified",
]
