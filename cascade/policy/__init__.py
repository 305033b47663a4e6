"""Policy files: typed models, YAML loading, JSON Schema."""

from cascade.policy._loader import format_key_path, load_policy, parse_policy, policy_json_schema
from cascade.policy._models import (
    BUNDLED_MODELS,
    AnthropicProvider,
    Defaults,
    EstimatorSpec,
    LlamaCppProvider,
    LogprobEstimator,
    OpenAIProvider,
    Policy,
    Price,
    ProviderSpec,
    ReplayProvider,
    TierSpec,
)

__all__ = [
    "BUNDLED_MODELS",
    "AnthropicProvider",
    "Defaults",
    "EstimatorSpec",
    "LlamaCppProvider",
    "LogprobEstimator",
    "OpenAIProvider",
    "Policy",
    "Price",
    "ProviderSpec",
    "ReplayProvider",
    "TierSpec",
    "format_key_path",
    "load_policy",
    "parse_policy",
    "policy_json_schema",
]
