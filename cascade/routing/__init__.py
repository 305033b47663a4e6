"""Up-front routing: pick the tier a run starts from (rules, kNN, MF, BERT classifier,
causal-LLM grader), then let the cascade climb from there. kNN and MF embed with MiniLM or
with a static encoder distilled from it (``RouterEncoder``)."""

from cascade.routing._cv import choose_knn
from cascade.routing._causal import DEFAULT_GRADER_PROMPT, CausalLLMRouter, parse_grade
from cascade.routing._learned import LearnedRouter, columns_for, router_embed
from cascade.routing._models import (
    BertModel,
    KnnModel,
    KnnWeighting,
    MfModel,
    NeighbourIndex,
    RouterEncoder,
    RouterKind,
    RouterModel,
    load_router_model,
)
from cascade.routing._rules import Rule, RulesRouter
from cascade.routing._select import (
    RouteCalibrationError,
    RoutedOutcome,
    RouteRule,
    RouteTargetKind,
    routed,
    share_thresholds,
    start_tier,
    starts,
    target_threshold,
    utility_starts,
)
from cascade.routing._train import (
    CorrectnessData,
    MfSettings,
    Preference,
    PreferenceData,
    choose_mf,
    correctness_data,
    preference_data,
    router_text,
    train_bert,
    train_knn,
    train_mf,
)
from cascade.routing._types import RouteContext, Router, RouteTier
from cascade.types import RouteDecision, RouteReason, TierScore

__all__ = [
    "DEFAULT_GRADER_PROMPT",
    "BertModel",
    "CausalLLMRouter",
    "CorrectnessData",
    "KnnModel",
    "KnnWeighting",
    "MfSettings",
    "LearnedRouter",
    "MfModel",
    "NeighbourIndex",
    "Preference",
    "PreferenceData",
    "RouteCalibrationError",
    "RouteContext",
    "RouteDecision",
    "RouteReason",
    "RouteRule",
    "RouteTargetKind",
    "RouteTier",
    "RoutedOutcome",
    "Router",
    "RouterEncoder",
    "RouterKind",
    "RouterModel",
    "Rule",
    "RulesRouter",
    "TierScore",
    "choose_knn",
    "choose_mf",
    "columns_for",
    "correctness_data",
    "load_router_model",
    "parse_grade",
    "preference_data",
    "routed",
    "router_embed",
    "router_text",
    "share_thresholds",
    "start_tier",
    "starts",
    "target_threshold",
    "train_bert",
    "train_knn",
    "train_mf",
    "utility_starts",
]
