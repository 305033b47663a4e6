"""Combining estimators: min, weighted mean, stacker; a failing member counts as 0."""

from __future__ import annotations

import numpy as np
import pytest
from scripted import Fixed

from verifiers import (
    Candidate,
    CombinedEstimator,
    CombineMethod,
    EstimateContext,
    EstimatorError,
    MissingInputError,
    combine,
    fit_stacker,
)

pytestmark = pytest.mark.anyio
CTX = EstimateContext((), Candidate("x"))


class Failing:
    name = "failing"
    requires = frozenset({"logprobs"})

    async def estimate(self, ctx: EstimateContext):
        raise MissingInputError("no logprobs")


async def test_min_and_weighted_mean() -> None:
    members = (Fixed(0.9), Fixed(0.3))
    assert (await CombinedEstimator(members, CombineMethod.MIN).estimate(CTX)).confidence == pytest.approx(0.3)
    mean = CombinedEstimator(members, CombineMethod.WEIGHTED_MEAN, (3.0, 1.0))
    assert (await mean.estimate(CTX)).confidence == pytest.approx((0.9 * 3 + 0.3) / 4)


async def test_failing_member_counts_as_zero_and_is_recorded() -> None:
    combined = CombinedEstimator((Fixed(0.9), Failing()), CombineMethod.WEIGHTED_MEAN)
    estimate = await combined.estimate(CTX)
    assert estimate.confidence == pytest.approx(0.45)
    assert "MissingInputError" in estimate.details["members"]["failing"]
    assert combined.requires == frozenset({"logprobs"})


def test_stacker_recovers_a_known_weighting() -> None:
    rng = np.random.default_rng(0)
    conf = rng.uniform(0.02, 0.98, size=(4000, 2))
    logit = np.log(conf / (1 - conf))
    p = 1 / (1 + np.exp(-(0.5 + 2.0 * logit[:, 0] + 0.0 * logit[:, 1])))
    correct = rng.random(4000) < p
    weights, intercept = fit_stacker(conf, correct, c=100.0)
    assert weights[0] == pytest.approx(2.0, abs=0.25) and abs(weights[1]) < 0.2
    assert intercept == pytest.approx(0.5, abs=0.25)
    assert combine([0.5, 0.5], CombineMethod.STACKER, weights, intercept) == pytest.approx(
        1 / (1 + np.exp(-intercept)))


def test_bad_configurations_are_errors() -> None:
    with pytest.raises(ValueError):
        CombinedEstimator((Fixed(0.5),))
    with pytest.raises(ValueError):
        CombinedEstimator((Fixed(0.5), Fixed(0.5)), CombineMethod.STACKER)
    with pytest.raises(ValueError):
        CombinedEstimator((Fixed(0.5), Fixed(0.5)), CombineMethod.WEIGHTED_MEAN, (0.0, 0.0))
    assert issubclass(MissingInputError, EstimatorError)
