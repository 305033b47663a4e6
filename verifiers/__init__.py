"""Confidence estimators for LLM answers, usable with or without the cascade engine."""

from verifiers._logprob import LogprobStatistic, TokenLogprobEstimator, summarise
from verifiers._types import (
    Candidate,
    Capability,
    Estimate,
    EstimateContext,
    Estimator,
    EstimatorError,
    MissingInputError,
    Sampled,
    SampleFn,
    Turn,
    Usage,
    as_turns,
)

__all__ = [
    "Candidate",
    "Capability",
    "Estimate",
    "EstimateContext",
    "Estimator",
    "EstimatorError",
    "LogprobStatistic",
    "MissingInputError",
    "SampleFn",
    "Sampled",
    "TokenLogprobEstimator",
    "Turn",
    "Usage",
    "as_turns",
    "summarise",
]
