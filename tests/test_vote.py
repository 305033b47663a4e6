"""Self-consistency on scripted samplers: confidences, early stopping, never more than k."""

from __future__ import annotations

import random

import pytest

from verifiers import (
    AnswerKind,
    Candidate,
    EstimateContext,
    MissingInputError,
    Sampled,
    SelfConsistencyEstimator,
    Turn,
    Usage,
    decided,
    majority_probability,
    vote_confidence,
)

pytestmark = pytest.mark.anyio


class Script:
    """sample(k) hands out the scripted answers in order, each costing one call."""

    def __init__(self, answers: list[str]) -> None:
        self.answers = list(answers)
        self.drawn = 0
        self.calls = 0

    async def __call__(self, k: int) -> Sampled:
        chunk = self.answers[self.drawn:self.drawn + k]
        self.drawn += len(chunk)
        self.calls += 1
        return Sampled(tuple(Candidate(a) for a in chunk), Usage(1, 10, 5 * len(chunk), 0.001 * len(chunk)))


def ctx(candidate: str, script: Script | None) -> EstimateContext:
    return EstimateContext((Turn("user", "q"),), Candidate(candidate), "t", script)


async def test_confidence_is_the_candidates_share_of_all_votes() -> None:
    script = Script(["#### 4", "4", "5", "4"])
    estimate = await SelfConsistencyEstimator(k=5, kind=AnswerKind.NUMBER, early_stop=False).estimate(
        ctx("The answer is 4", script))
    assert estimate.confidence == pytest.approx(4 / 5)
    assert estimate.details["samples_used"] == 5 and not estimate.details["stopped_early"]
    assert estimate.usage.cost == pytest.approx(0.004) and estimate.usage.calls == script.calls


async def test_a_minority_candidate_gets_its_own_share() -> None:
    script = Script(["5", "5", "5", "4"])
    estimate = await SelfConsistencyEstimator(k=5, kind=AnswerKind.NUMBER, early_stop=False).estimate(ctx("4", script))
    assert estimate.confidence == pytest.approx(2 / 5)
    assert estimate.details["candidate_agrees_with_majority"] is False


async def test_early_stopping_stops_once_decided() -> None:
    script = Script(["4"] * 19)
    estimate = await SelfConsistencyEstimator(k=20, kind=AnswerKind.NUMBER, batch=2).estimate(ctx("4", script))
    assert estimate.details["stopped_early"] and estimate.details["samples_used"] < 20
    assert estimate.confidence == 1.0


async def test_unextractable_candidate_is_zero_and_no_sampler_is_an_error() -> None:
    estimate = await SelfConsistencyEstimator(k=3, kind=AnswerKind.NUMBER).estimate(ctx("no idea", Script(["4", "4"])))
    assert estimate.confidence == 0.0 and "reason" in estimate.details
    with pytest.raises(MissingInputError):
        await SelfConsistencyEstimator().estimate(ctx("4", None))


@pytest.mark.parametrize("seed", range(200))
async def test_never_more_than_k_votes(seed: int) -> None:
    rng = random.Random(seed)
    k = rng.randint(2, 12)
    script = Script([rng.choice("4567") for _ in range(40)])
    estimator = SelfConsistencyEstimator(k=k, kind=AnswerKind.NUMBER, batch=rng.randint(1, 5),
                                         min_samples=rng.randint(1, k), early_stop=rng.random() < 0.7)
    estimate = await estimator.estimate(ctx(rng.choice("4567"), script))
    assert script.drawn + 1 == estimate.details["samples_used"] <= k


def test_sequential_rule() -> None:
    assert majority_probability(0, 0) == pytest.approx(0.5)
    assert majority_probability(5, 0) == pytest.approx(1 - 1 / 64)
    assert decided(3, 0, 1)  # 3 of 4 already: the side of 1/2 cannot change
    assert not decided(1, 1, 3)
    assert decided(0, 3, 1)


def test_offline_vote_confidence_matches_the_estimator() -> None:
    share, tally = vote_confidence("B", ["B", "C", "b"], AnswerKind.CHOICE)
    assert share == pytest.approx(3 / 4) and tally["clusters"] == 2


async def test_free_text_votes_cluster_by_embedding_off_the_loop() -> None:
    import threading

    import numpy as np

    threads: set[str] = set()

    def embed(texts):  # a stand-in encoder: answers mentioning Paris point the same way
        threads.add(threading.current_thread().name)
        return np.array([[1.0, 0.0] if "paris" in t.lower() else [0.0, 1.0] for t in texts])

    script = Script(["It is Paris.", "Paris, France", "London"])
    estimator = SelfConsistencyEstimator(k=4, kind=AnswerKind.TEXT, embed=embed, early_stop=False)
    estimate = await estimator.estimate(ctx("The capital is Paris", script))
    assert estimate.confidence == pytest.approx(3 / 4)
    assert threading.main_thread().name not in threads
