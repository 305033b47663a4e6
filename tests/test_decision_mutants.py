"""Tests that fail when a decision rule is subtly broken (issue 24's mutants, one named test each;
docs/testing.md maps every mutant to the test that kills it), and property tests of the rules.

Expected values are derived by hand in the comments or from an independent brute-force
reference (a different computation of the same definition), never from the code under test.
"""

from __future__ import annotations

import math
import random

import httpx
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.optimize import brentq
from scipy.stats import binom

from cascade.bench._metrics import hull
from cascade import Cascade, parse_policy
from cascade.routing import RouteTargetKind, start_tier, starts
from verifiers import (
    AnswerKind,
    CalibrationError,
    Candidate,
    EstimateContext,
    Sampled,
    SelfConsistencyEstimator,
    Turn,
    Usage,
    decided,
    escalation_threshold,
    majority_probability,
    risk_threshold,
)

# ---------------------------------------------------------------- risk threshold (calibration)


def _cp_upper_by_definition(k: int, n: int, delta: float) -> float:
    """Clopper–Pearson upper bound by its definition, P(Binomial(n, U) <= k) = δ, solved with
    a root finder on the binomial CDF (the code under test uses the beta quantile)."""
    if k >= n:
        return 1.0
    return float(brentq(lambda p: binom.cdf(k, n, p) - delta, 1e-15, 1 - 1e-15, xtol=1e-14))


def _batch_level_by_definition(alpha: float, delta: float, m: int) -> float:
    """The α' with P(Binomial(m, α') > ⌊α m⌋) = δ (the tail grows with α')."""
    limit = math.floor(alpha * m)
    f = lambda p: binom.sf(limit, m, p) - delta  # noqa: E731
    return float(brentq(f, 1e-15, alpha, xtol=1e-14)) if f(alpha) > 0 else alpha


def _reference_threshold(conf: list[float], correct: list[bool], alpha: float, delta: float,
                         batch: int | None = None) -> float:
    """Brute force: every distinct confidence from the highest down, its false accepts
    counted item by item (ties at the threshold are accepted, so they count), stop at the
    first threshold not certified."""
    level, budget = alpha, delta
    if batch is not None:
        level, budget = _batch_level_by_definition(alpha, delta / 2, batch), delta / 2
    chosen = math.inf
    for t in sorted(set(conf), reverse=True):
        k = sum(1 for c, ok in zip(conf, correct) if c >= t and not ok)
        if _cp_upper_by_definition(k, len(conf), budget) > level:
            break
        chosen = t
    return chosen


TIED_SCORES = st.lists(st.tuples(st.sampled_from([0.0, 0.2, 0.5, 0.5, 0.8, 1.0]), st.booleans()),
                       min_size=1, max_size=80)


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(items=TIED_SCORES, alpha=st.sampled_from([0.05, 0.1, 0.2, 0.3]),
       delta=st.sampled_from([0.05, 0.1, 0.2]), batch=st.one_of(st.none(), st.integers(5, 200)))
def test_risk_threshold_matches_a_brute_force_reference_with_ties(items, alpha, delta, batch) -> None:
    conf = [c for c, _ in items]
    correct = [ok for _, ok in items]
    expected = _reference_threshold(conf, correct, alpha, delta, batch)
    got = risk_threshold(conf, correct, alpha, delta, batch=batch)
    assert got == expected


def test_risk_threshold_accepts_everything_when_every_answer_is_right() -> None:
    """Mutant: every accept counted as a false accept (then nothing is ever accepted).
    30 right answers, no wrong one: 0 false accepts at every threshold, and the bound
    1 − 0.1^(1/30) = 0.074 <= 0.1, so the loosest threshold (0.1) is chosen. With a batch of
    1000 (δ/2 = 0.05, α' < 0.1) 30 items are too few (1 − 0.05^(1/30) = 0.095); 60 suffice
    (1 − 0.05^(1/60) = 0.049)."""
    conf = [round(0.1 + 0.01 * i, 2) for i in range(60)]
    assert risk_threshold(conf[:30], [True] * 30, 0.1, 0.1) == 0.1
    assert risk_threshold(conf[:30], [True] * 30, 0.1, 0.1, batch=1000) == math.inf
    assert risk_threshold(conf, [True] * 60, 0.1, 0.1, batch=1000) == 0.1


def test_risk_threshold_counts_wrong_answers_tied_at_the_threshold() -> None:
    """Mutant: ``c >= t`` -> ``c > t`` when counting false accepts. 30 right answers at 0.9;
    10 wrong and 10 right tied at 0.5. Threshold 0.5 accepts all 50, 10 of them wrong:
    bound U(10, 50) = 0.29 > 0.25, so only 0.9 is certified (U(0, 50) = 0.045). Counting only ``c > 0.5`` would see 0
    false accepts at 0.5 and accept the 10 wrong answers."""
    conf = [0.9] * 30 + [0.5] * 20
    correct = [True] * 30 + [False] * 10 + [True] * 10
    assert _cp_upper_by_definition(10, 50, 0.1) > 0.25
    assert risk_threshold(conf, correct, 0.1, 0.1) == 0.9
    assert risk_threshold(conf, correct, 0.25, 0.1) == 0.9


# ---------------------------------------------------------------- hull (metrics)


def test_hull_keeps_the_best_of_equal_cost_points_in_any_order() -> None:
    """Mutant: for equal costs the last point wins instead of the best."""
    points = [(1.0, 0.7), (1.0, 0.5), (2.0, 0.8), (2.0, 0.9), (2.0, 0.85), (3.0, 0.6)]
    expected = [(1.0, 0.7), (2.0, 0.9)]
    for _ in range(20):
        shuffled = random.Random(_).sample(points, len(points))
        assert hull(shuffled) == expected


@given(points=st.lists(st.tuples(st.integers(1, 5).map(float), st.integers(0, 10).map(lambda a: a / 10)),
                       min_size=1, max_size=12), seed=st.integers(0, 1000))
def test_hull_is_independent_of_input_order(points, seed) -> None:
    shuffled = random.Random(seed).sample(points, len(points))
    vertices = hull(points)
    assert hull(shuffled) == vertices
    best = {}
    for cost, accuracy in points:
        best[cost] = max(accuracy, best.get(cost, -1.0))
    assert vertices[0] == (min(best), best[min(best)])  # the cheapest cost at its best accuracy
    assert vertices[-1][1] == max(best.values())  # the hull climbs to the best accuracy
    for cost, accuracy in vertices:
        assert best[cost] == accuracy  # every vertex is the best point at its cost


# ---------------------------------------------------------------- vote: the sequential rule


def test_decided_stops_when_the_posterior_says_minority() -> None:
    """Mutant: ``or p <= stop_error`` dropped. 0 of 5 votes agree, 10 to come: either side of
    1/2 is still reachable (10 of 15 > 1/2), but P(p > 1/2 | Beta(1, 6)) = 2^-6 = 0.016 <= 0.05."""
    assert majority_probability(0, 5) == pytest.approx(2 ** -6)
    assert decided(0, 5, 10, stop_error=0.05)
    assert not decided(0, 5, 10, stop_error=0.01)  # 0.016 > 0.01: not sure enough yet


def test_decided_is_not_fixed_at_exactly_one_half() -> None:
    """Mutant: ``2*agree > total`` -> ``>=``. 2 agree, 0 disagree, 2 to come: the candidate may
    end at 2 of 4, exactly one half, which is not a majority, so the side is not fixed; and
    P(p > 1/2 | Beta(3, 1)) = 1 − 1/8 = 0.875 is not sure enough."""
    assert majority_probability(2, 0) == pytest.approx(0.875)
    assert not decided(2, 0, 2)
    assert decided(3, 0, 2)  # 3 of 5 at worst: a majority whatever comes


class Script:
    """sample(k) hands out the scripted answers in order."""

    def __init__(self, answers: list[str]) -> None:
        self.answers = list(answers)
        self.drawn = 0

    async def __call__(self, k: int) -> Sampled:
        chunk = self.answers[self.drawn:self.drawn + k]
        self.drawn += len(chunk)
        return Sampled(tuple(Candidate(a) for a in chunk), Usage(1, 1, len(chunk), 0.0))


def _ctx(candidate: str, script: Script) -> EstimateContext:
    return EstimateContext((Turn("user", "q"),), Candidate(candidate), "t", script)


@pytest.mark.anyio
async def test_early_stop_waits_for_min_samples() -> None:
    """Mutant: ``min_samples`` ignored. Unanimous votes, batch 1: without the floor the rule
    would stop at 4 votes (P(majority | 4 of 4) = 1 − 2^-5 = 0.969 >= 0.95); with
    min_samples = 6 it may not stop before 6."""
    assert majority_probability(3, 0) < 0.95 <= majority_probability(4, 0)
    estimator = SelfConsistencyEstimator(k=12, kind=AnswerKind.NUMBER, batch=1, min_samples=6)
    estimate = await estimator.estimate(_ctx("4", Script(["4"] * 20)))
    assert estimate.details["samples_used"] == 6 and estimate.details["stopped_early"]
    free = SelfConsistencyEstimator(k=12, kind=AnswerKind.NUMBER, batch=1, min_samples=1)
    assert (await free.estimate(_ctx("4", Script(["4"] * 20)))).details["samples_used"] == 4


@pytest.mark.anyio
async def test_early_stop_does_not_stop_at_exactly_one_half() -> None:
    """k = 6, rounds of 2: after 3 unanimous votes the candidate could still end at 3 of 6
    (one half, no majority) and P = 0.9375 < 0.95, so it draws on; at 5 of 5 it is decided."""
    estimator = SelfConsistencyEstimator(k=6, kind=AnswerKind.NUMBER, batch=2, min_samples=2)
    estimate = await estimator.estimate(_ctx("4", Script(["4"] * 10)))
    assert estimate.details["samples_used"] == 5 and estimate.details["stopped_early"]


@given(k=st.integers(2, 14), batch=st.integers(1, 5), data=st.data(),
       stop_error=st.sampled_from([0.01, 0.05, 0.2]),
       answers=st.lists(st.sampled_from("445"), min_size=20, max_size=20))
def test_early_stopping_properties(k, batch, data, stop_error, answers) -> None:
    """Whatever the votes: at least min(min_samples, k) votes, never more than k, and a stop
    before k only where the rule says the outcome is decided."""
    import anyio

    min_samples = data.draw(st.integers(1, k))
    estimator = SelfConsistencyEstimator(k=k, kind=AnswerKind.NUMBER, batch=batch,
                                         min_samples=min_samples, stop_error=stop_error)
    estimate = anyio.run(estimator.estimate, _ctx("4", Script(answers)))
    used = estimate.details["samples_used"]
    assert min(min_samples, k) <= used <= k
    agree = estimate.details["agree"]
    assert estimate.confidence == pytest.approx(agree / used)
    if estimate.details["stopped_early"]:
        assert used < k and decided(agree, used - agree, k - used, stop_error)
    else:
        assert used == k


# ---------------------------------------------------------------- routing selection


def test_start_tier_accepts_a_probability_equal_to_the_threshold() -> None:
    """Mutant: ``p >= t`` -> ``p > t`` in ``start_tier``: "reaches its threshold" includes equality."""
    assert start_tier(np.array([0.5, 0.9]), [0.5, 0.5]) == 0
    assert start_tier(np.array([0.25, 0.75]), [0.5, 0.75]) == 1
    assert start_tier(np.array([0.4999, 0.7499]), [0.5, 0.75]) is None
    matrix = np.array([[0.5, 0.9], [0.25, 0.75], [0.4999, 0.7499]])
    assert starts(matrix, [0.5, 0.75], default=1).tolist() == [0, 1, 1]


# ---------------------------------------------------------------- Cascade.aclose


class CountingTransport(httpx.AsyncBaseTransport):
    """Answers nothing; records how often a client closed it."""

    def __init__(self) -> None:
        self.closed = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return httpx.Response(500)

    async def aclose(self) -> None:
        self.closed += 1


@pytest.mark.anyio
async def test_aclose_closes_pooled_clients_and_providers() -> None:
    """Mutant: ``Cascade.aclose`` does nothing. Two base URLs: two pooled clients, both closed
    (and each closing its transport) after ``async with``, and every provider's ``aclose`` run."""
    policy = parse_policy("""
tiers:
  - {name: a, model: m, provider: {kind: openai, base_url: "http://127.0.0.1:9/v1"}}
  - {name: b, model: m, provider: {kind: openai, base_url: "http://127.0.0.2:9/v1"}}
""")
    transport = CountingTransport()
    closed: list[str] = []
    async with Cascade.from_policy(policy, transport=transport) as engine:
        providers = [tier.provider for tier in engine.tiers]
        clients = [p._client for p in providers]  # type: ignore[attr-defined]
        assert len({id(c) for c in clients}) == 2 and not any(c.is_closed for c in clients)
        for provider in providers:
            async def record(name: str = provider.deployment) -> None:
                closed.append(name)
            provider.aclose = record  # type: ignore[method-assign]
    assert all(c.is_closed for c in clients)
    assert transport.closed == 2
    assert sorted(closed) == ["openai@127.0.0.1:9/v1", "openai@127.0.0.2:9/v1"]
    await engine.aclose()  # idempotent
    assert transport.closed == 2 and len(closed) == 2


# ---------------------------------------------------------------- escalation threshold


@given(conf=st.lists(st.sampled_from([0.1, 0.2, 0.2, 0.5, 0.9]), min_size=1, max_size=40),
       rate=st.floats(0.0, 1.0))
def test_escalation_threshold_escalates_the_nearest_achievable_count(conf, rate) -> None:
    """Brute force: with ties only some counts can escalate (all of a tied block or none);
    the threshold realises the achievable count nearest round(rate · n) (ties: fewer)."""
    n, k = len(conf), round(rate * len(conf))
    achievable = {sum(c < v for c in conf) for v in set(conf)} | {n}
    expected = min(achievable, key=lambda a: (abs(a - k), a))
    t = escalation_threshold(conf, rate)
    assert sum(c < t for c in conf) == expected
    if expected < n:  # a real threshold, no higher than the lowest confidence that stays
        assert t <= min(c for c in conf if c >= t) and t != math.inf


def test_escalation_threshold_by_hand_and_its_errors() -> None:
    # 0.2 x1, 0.4 x3, 0.9 x1: 30 % of 5 = 1.5 -> 2 wanted; achievable 0, 1, 4, 5 -> 1 (below 0.4)
    assert escalation_threshold([0.9, 0.4, 0.4, 0.4, 0.2], 0.3) == 0.4
    # 70 %: 3.5 -> 4 wanted: all three 0.4s escalate, the midpoint to 0.9 is the threshold
    assert escalation_threshold([0.9, 0.4, 0.4, 0.4, 0.2], 0.7) == pytest.approx(0.65)
    assert escalation_threshold([0.4] * 5, 0.7) == math.inf  # 4 wanted; only 0 or 5 possible
    assert escalation_threshold([0.3], 0.0) == 0.3  # one item is enough data
    for rate, data in ((1.5, [0.5]), (-0.1, [0.5]), (0.5, [])):
        with pytest.raises(CalibrationError, match=r"^rate must be in \[0, 1\] and the data non-empty$"):
            escalation_threshold(data, rate)


# ---------------------------------------------------------------- routing calibration


def test_utility_starts_by_hand() -> None:
    """P(ok) minus cost_weight × cost / dearest cost. Costs 0.001 and 0.01 (relative 0.1, 1),
    weight 0.1: row 0 utilities 0.89 / 0.85 -> tier 0; row 1: 0.49 / 0.89 -> tier 1.
    Equal utilities go to the cheaper (first) tier."""
    from cascade.routing import utility_starts

    p_ok = np.array([[0.9, 0.95], [0.5, 0.99], [0.8, 0.8]])
    got = utility_starts(p_ok, [0.001, 0.01], 0.1)
    assert got.shape == (3,) and got.tolist() == [0, 1, 0]
    assert utility_starts(p_ok, [0.001, 0.01], 0.0).tolist() == [1, 1, 0]
    assert utility_starts(p_ok, [0.0, 0.0], 1.0).tolist() == [1, 1, 0]  # free tiers: no division by 0


@given(seed=st.integers(0, 10**6), tiers=st.integers(2, 4), data=st.data())
def test_share_thresholds_realise_the_shares_exactly_without_ties(seed, tiers, data) -> None:
    """Distinct predictions: routing with the calibrated thresholds starts exactly
    round(cumulative share × n) − (those before) requests at each tier; the last tier's
    threshold is 0."""
    from cascade.routing import share_thresholds

    n = 12
    counts = data.draw(st.lists(st.integers(0, n), min_size=tiers - 1, max_size=tiers - 1)
                       .filter(lambda c: sum(c) <= n))
    counts = [*counts, n - sum(counts)]
    p_ok = np.random.default_rng(seed).permutation(n * tiers).reshape(n, tiers) / (n * tiers)
    thresholds = share_thresholds(p_ok, [c / n for c in counts])
    assert len(thresholds) == tiers and thresholds[-1] == 0.0
    assert np.bincount(starts(p_ok, thresholds, tiers - 1), minlength=tiers).tolist() == counts
    for t, c in zip(thresholds[:-1], counts[:-1]):  # a tier taking nobody never passes
        assert (t == math.inf) == (c == 0)


def test_share_thresholds_edges() -> None:
    from cascade.routing import RouteCalibrationError, routed, share_thresholds

    one = np.array([[0.7, 0.2]])
    assert share_thresholds(one, [1.0, 0.0]) == (0.7, 0.0)  # one request is enough data
    with pytest.raises(RouteCalibrationError, match="^no requests to calibrate on$"):
        share_thresholds(np.zeros((0, 2)), [0.5, 0.5])
    outcome = routed(one, np.array([[1, 0]]), np.array([[0.1, 1.0]]), 0.5, default=1)
    assert outcome.threshold == 0.5 and outcome.shares == (1.0, 0.0)  # every tier has a share
    assert (outcome.cost, outcome.accuracy) == (0.1, 1.0)


def _reference_target(p_ok, correct, cost, kind, value, default):
    """Brute force: every candidate threshold (each prediction, 0, and above 1), each request
    routed by hand to the first tier reaching it (else the default); then the rule."""
    n, tiers = p_ok.shape
    outcomes = []
    for t in sorted({0.0, 1.0 + 1e-9, *p_ok.ravel().tolist()}):
        begin = [next((j for j in range(tiers) if p_ok[i, j] >= t), default) for i in range(n)]
        outcomes.append((t, sum(cost[i, b] for i, b in enumerate(begin)) / n,
                         sum(correct[i, b] for i, b in enumerate(begin)) / n))
    if kind is RouteTargetKind.QUALITY:
        goal = value * correct.mean(axis=0).max()
        meeting = [o for o in outcomes if o[2] >= goal - 1e-12]
        return min(meeting, key=lambda o: (o[1], -o[2])) if meeting else None
    limit = value * cost.mean(axis=0).max()
    within = [o for o in outcomes if o[1] <= limit + 1e-12]
    return max(within, key=lambda o: (o[2], -o[1])) if within else None


@given(p=st.lists(st.sampled_from([0.0, 0.25, 0.5, 1.0]), min_size=12, max_size=12),
       right=st.lists(st.booleans(), min_size=12, max_size=12),
       kind=st.sampled_from([RouteTargetKind.QUALITY, RouteTargetKind.COST]),
       value=st.sampled_from([0.3, 0.6, 0.9, 1.0]))
def test_target_threshold_matches_a_brute_force_reference(p, right, kind, value) -> None:
    """Six requests, two tiers (cheap 1, dear 10; the dear one nearly always right), tied and extreme
    predictions (0 and 1): the chosen outcome is the reference's, or both find none."""
    from cascade.routing import RouteCalibrationError, target_threshold

    p_ok = np.array(p, dtype=float).reshape(6, 2)
    correct = np.array(right).reshape(6, 2)
    correct[1:, 1] = True  # the dear tier is right on 5 of 6: the best accuracy is below 1
    cost = np.tile([1.0, 10.0], (6, 1))
    expected = _reference_target(p_ok, correct, cost, kind, value, default=1)
    if expected is None:
        with pytest.raises(RouteCalibrationError):
            target_threshold(p_ok, correct, cost, kind, value, default=1)
        return
    got = target_threshold(p_ok, correct, cost, kind, value, default=1)
    assert (got.cost, got.accuracy) == pytest.approx(expected[1:])
    assert got.threshold == pytest.approx(expected[0], abs=1e-12)


def test_target_threshold_checks_every_shape() -> None:
    from cascade.routing import RouteCalibrationError, target_threshold

    p_ok, cost = np.zeros((3, 2)), np.ones((3, 2))
    for correct, price in ((np.ones((3, 3)), cost), (np.ones((3, 2)), np.ones((2, 2)))):
        with pytest.raises(RouteCalibrationError, match="^predictions, labels and costs differ in shape$"):
            target_threshold(p_ok, correct, price, RouteTargetKind.QUALITY, 0.9, default=1)


# ---------------------------------------------------------------- agreement


def test_agreement_matrix_similarity_boundary_and_unnormalised_vectors() -> None:
    """Cosine >= similarity agrees (equality included); vectors are normalised whatever their
    length, short ones too: (0.5, 0) and (0.3, 0.4) have cosine 0.6 exactly."""
    from verifiers import agreement_matrix

    vectors = {"a": [0.5, 0.0], "b": [0.3, 0.4], "c": [0.0, 0.25]}

    def embed(texts):  # type: ignore[no-untyped-def]
        return [vectors[t] for t in texts]

    at = agreement_matrix(["a", "b", "c"], AnswerKind.TEXT, embed=embed, similarity=0.6)
    assert at.tolist() == [[1, 1, 0], [1, 1, 1], [0, 1, 1]]  # b·c = 0.8
    assert agreement_matrix(["a", "b"], AnswerKind.TEXT, embed=embed, similarity=0.61).tolist() == [[1, 0], [0, 1]]
    near = {"a": [1.0, 0.0], "b": [0.9, 0.435889894354067]}  # cosine 0.9 >= the default 0.85
    assert agreement_matrix(["a", "b"], AnswerKind.TEXT, embed=lambda t: [near[x] for x in t]).tolist() \
        == [[1, 1], [1, 1]]


def test_agreement_judge_reasons_and_zero_weights() -> None:
    from verifiers import AgreementEstimator, Peer

    estimator = AgreementEstimator(kind=AnswerKind.NUMBER, min_members=3)
    confidence, details = estimator.judge("4", "m", [Peer("n", "4"), Peer("o", None)])
    assert confidence == 0.0 and details == {"reason": "2 answer(s), fewer than min_members 3", "members": 2}
    confidence, details = estimator.judge("no number", "m", [Peer("n", "4"), Peer("o", "4")])
    assert confidence == 0.0
    assert details == {"reason": "no answer could be extracted from the candidate", "members": 3}
    # every counted weight zero: no evidence, confidence 0 (not a division by zero, not 1)
    free = AgreementEstimator(kind=AnswerKind.NUMBER, min_members=1, weights={"m": 0.0, "n": 0.0})
    assert free.judge("4", "m", [Peer("n", "4")])[0] == 0.0
    weighted = AgreementEstimator(kind=AnswerKind.NUMBER, weights={"m": 1.0, "n": 3.0, "o": 1.0})
    assert weighted.judge("4", "m", [Peer("n", "4"), Peer("o", "5")])[0] == pytest.approx(4 / 5)


# ---------------------------------------------------------------- the engine's decision


def _tiers(cheap, dear, estimator, threshold, dear_estimator=None):  # type: ignore[no-untyped-def]
    from cascade import Tier
    from cascade.policy import Price

    return [Tier("small", "small-model", cheap, estimator, threshold, Price(input_per_1m=1.0)),
            Tier("large", "large-model", dear, dear_estimator, 0.5 if dear_estimator else None,
                 Price(input_per_1m=10.0))]


@pytest.mark.anyio
async def test_engine_accepts_a_confidence_equal_to_the_threshold() -> None:
    from scripted import Fixed, Scripted

    from cascade import Decision, StopReason

    result = await Cascade(_tiers(Scripted("cheap"), Scripted("dear"), Fixed(0.7), 0.7)).run("q")
    assert result.accepted and result.tier == 0 and result.attempts[0].decision is Decision.ACCEPT
    assert result.stop_reason is StopReason.ACCEPTED and result.escalations == 0
    below = await Cascade(_tiers(Scripted("cheap"), Scripted("dear"), Fixed(0.6999), 0.7)).run("q")
    assert below.tier == 1 and below.attempts[0].decision is Decision.ESCALATE and below.escalations == 1


@pytest.mark.anyio
async def test_engine_threshold_zero_accepts_without_running_the_estimator() -> None:
    from scripted import Fixed, Scripted

    skipped, tiny = Fixed(0.0), Fixed(0.0)
    result = await Cascade(_tiers(Scripted("cheap"), Scripted("dear"), skipped, 0.0)).run("q")
    assert result.accepted and result.tier == 0 and skipped.seen == [] and result.confidence is None
    climbed = await Cascade(_tiers(Scripted("cheap"), Scripted("dear"), tiny, 1e-9)).run("q")
    assert climbed.tier == 1 and len(tiny.seen) == 1  # any positive threshold runs it


@pytest.mark.anyio
async def test_engine_failing_estimators_escalate_then_reject_and_the_best_answer_returns() -> None:
    """Every estimator fails: tier 0 escalates, the last tier rejects; the result is the last
    tier's answer, not accepted, stop reason exhausted, one escalation, both costs summed."""
    from scripted import Fixed, Scripted

    from cascade import Decision, StopReason

    cheap, dear = Scripted("cheap"), Scripted("dear")
    tiers = _tiers(cheap, dear, Fixed(raises=RuntimeError("x")), 0.5, Fixed(raises=RuntimeError("y")))
    result = await Cascade(tiers).run("q")
    assert [a.decision for a in result.attempts] == [Decision.ESCALATE, Decision.REJECT]
    assert not result.accepted and result.answer == "dear" and result.tier == 1
    assert result.stop_reason is StopReason.EXHAUSTED and result.escalations == 1
    assert result.cost == pytest.approx((10 * 1 + 10 * 10) / 1e6)  # 10 input tokens at each tier
    assert result.model == "large-model" and result.tier_name == "large"


@given(agree=st.integers(0, 12), disagree=st.integers(0, 12), remaining=st.integers(0, 12),
       stop_error=st.sampled_from([0.01, 0.05, 2 ** -5, 0.2]))
def test_decided_matches_its_definition(agree, disagree, remaining, stop_error) -> None:
    """Reference: the side of 1/2 is fixed when every possible rest of the votes leaves the
    candidate on the same side (a majority means more than half); else the posterior
    P(p > 1/2 | Beta(1 + agree, 1 + disagree)), from scipy's beta, decides."""
    from scipy.stats import beta

    total = agree + disagree + remaining
    sides = {2 * (agree + r) > total for r in range(remaining + 1)}
    p = float(beta.sf(0.5, 1 + agree, 1 + disagree))
    assert majority_probability(agree, disagree) == pytest.approx(p, abs=1e-12)
    expected = len(sides) == 1 or p >= 1 - stop_error - 1e-12 or p <= stop_error + 1e-12
    assert decided(agree, disagree, remaining, stop_error) == expected


def test_decided_boundaries_by_hand() -> None:
    assert decided(2, 2, 0)  # nothing left to draw: always decided, even at exactly one half
    # P(majority | 4 of 4) = 1 - 2^-5 exactly: stop_error 2^-5 stops on both sides
    assert decided(4, 0, 10, stop_error=2 ** -5) and decided(0, 4, 10, stop_error=2 ** -5)
    assert not decided(4, 0, 10, stop_error=2 ** -6) and not decided(0, 4, 10, stop_error=2 ** -6)


def test_hull_drops_points_under_and_on_a_chord_and_stops_at_the_first_peak() -> None:
    assert hull([(1.0, 0.5), (2.0, 0.6), (3.0, 0.9)]) == [(1.0, 0.5), (3.0, 0.9)]  # under the chord
    assert hull([(1.0, 0.5), (2.0, 0.625), (3.0, 0.75)]) == [(1.0, 0.5), (3.0, 0.75)]  # on it
    assert hull([(1.0, 0.5), (2.0, 0.9), (3.0, 0.9)]) == [(1.0, 0.5), (2.0, 0.9)]  # flat: cheapest peak
    with pytest.raises(ValueError, match="^no points$"):
        hull([])


def test_risk_threshold_bound_edges() -> None:
    """Every item wrong: the bound is 1 however large α (here 0.999); one right of two at
    δ = 0.5: U(1, 2) = √0.5 = 0.707 > 0.6; zero false accepts of two at δ = 0.25:
    U(0, 2) = 1 − √0.25 = 0.5, certified at α = 0.5 (≤, not <)."""
    assert risk_threshold([0.5], [False], 0.999, 0.5) == math.inf
    assert risk_threshold([0.9, 0.5], [False, True], 0.6, 0.5) == math.inf
    assert risk_threshold([0.9, 0.9], [True, True], 0.5, 0.25) == 0.9


def test_risk_levels_validated_and_the_batch_split_is_delta_halves() -> None:
    """With a batch of m the scan runs at (α' = batch_level(α, δ/2, m), δ/2); on 2000 calibrated
    items with distinct confidences any other split moves the threshold."""
    from verifiers import batch_level

    rng = np.random.default_rng(21)
    conf = rng.random(2000)
    correct = rng.random(2000) < conf
    level = batch_level(0.1, 0.05, 500)
    assert level == pytest.approx(_batch_level_by_definition(0.1, 0.05, 500), abs=1e-9)
    chosen = risk_threshold(conf, correct, 0.1, 0.1, batch=500)
    assert chosen == risk_threshold(conf, correct, level, 0.05)
    assert chosen != risk_threshold(conf, correct, batch_level(0.1, 0.2, 500), 0.05)
    assert chosen != risk_threshold(conf, correct, level, 0.1 / 3)
    assert chosen != risk_threshold(conf, correct, batch_level(0.1, 0.1 / 3, 500), 0.05)
    assert risk_threshold([0.5] * 60, [True] * 60, 0.1, 0.1, batch=1) == 0.5  # one request is a batch
    for alpha, delta in ((0.0, 0.1), (1.0, 0.1), (0.1, 0.0), (0.1, 1.0)):
        with pytest.raises(CalibrationError, match=r"^alpha and delta must be in \(0, 1\)$"):
            risk_threshold([0.5], [True], alpha, delta)
    with pytest.raises(CalibrationError, match="^batch must be a positive number of requests, not 0$"):
        risk_threshold([0.5], [True], 0.1, 0.1, batch=0)


def test_simulate_cascade_by_hand_with_three_tiers() -> None:
    """Four items, three tiers (costs 1, 10, 100). Tier 0 accepts item 0; tier 1 accepts item 1;
    items 2 and 3 reach the last tier. Escalation from tier 0: 3 of 4; from tier 1: 2 of 3."""
    from verifiers import simulate_cascade

    conf = [np.array([0.9, 0.1, 0.1, 0.1]), np.array([0.0, 0.9, 0.1, 0.1]), np.ones(4)]
    correct = [np.array([1, 0, 0, 0], bool), np.array([0, 0, 1, 1], bool), np.array([0, 1, 1, 0], bool)]
    cost = [np.full(4, 1.0), np.full(4, 10.0), np.full(4, 100.0)]
    spent, right, escalation = simulate_cascade([0.5, 0.5], conf, correct, cost)
    assert spent.tolist() == [1.0, 11.0, 111.0, 111.0]
    assert right.tolist() == [1.0, 0.0, 1.0, 0.0]  # quality of the returned answer (graded)
    assert escalation == [0.75, pytest.approx(2 / 3)]
    # nothing reaches tier 1 when tier 0 accepts everything: its escalation is 0, not 1
    _, _, none = simulate_cascade([0.0, 0.5], conf, correct, cost)
    assert none == [0.0, 0.0]


class CountingScript(Script):
    def __init__(self, answers: list[str]) -> None:
        super().__init__(answers)
        self.asked: list[int] = []

    async def __call__(self, k: int) -> Sampled:
        self.asked.append(k)
        return await super().__call__(k)


@pytest.mark.anyio
async def test_vote_estimate_details_the_loop_cannot_hide() -> None:
    # never asks for zero samples, and says False (not None) when it did not stop early
    script = CountingScript(["4"] * 10)
    estimate = await SelfConsistencyEstimator(k=5, kind=AnswerKind.NUMBER, early_stop=False).estimate(_ctx("4", script))
    assert script.asked == [2, 2] and estimate.details["stopped_early"] is False
    # a sampler that runs dry: an estimate of what was drawn, not a crash or None
    dry = await SelfConsistencyEstimator(k=8, kind=AnswerKind.NUMBER, early_stop=False).estimate(
        _ctx("4", Script(["4", "5"])))
    assert dry.details["samples_used"] == 3 and dry.confidence == pytest.approx(2 / 3)
    # an unextractable candidate counts as agreeing with nobody: P(majority) = 2^-(d+1) stops at 5
    lost = await SelfConsistencyEstimator(k=10, kind=AnswerKind.NUMBER, min_samples=2).estimate(
        _ctx("no idea", Script(["4"] * 10)))
    assert lost.details["samples_used"] == 5 and lost.details["stopped_early"] and lost.confidence == 0.0
    # the estimator's stop_error reaches the rule: 0.2 stops unanimous votes at 2 (p = 0.875)
    quick = await SelfConsistencyEstimator(k=20, kind=AnswerKind.NUMBER, batch=1, min_samples=1,
                                           stop_error=0.2).estimate(_ctx("4", Script(["4"] * 20)))
    assert quick.details["samples_used"] == 2
    from verifiers import MissingInputError

    with pytest.raises(MissingInputError, match="^self-consistency needs samples, and this tier cannot draw them$"):
        await SelfConsistencyEstimator().estimate(EstimateContext((Turn("user", "q"),), Candidate("4"), "t", None))


@pytest.mark.anyio
async def test_vote_on_free_text_uses_the_estimators_similarity() -> None:
    vectors = {"a": [1.0, 0.0], "b": [0.6, 0.8]}  # cosine 0.6

    def embed(texts):  # type: ignore[no-untyped-def]
        return [vectors[t] for t in texts]

    loose = SelfConsistencyEstimator(k=2, kind=AnswerKind.TEXT, early_stop=False, min_samples=1, embed=embed,
                                     similarity=0.5)
    strict = SelfConsistencyEstimator(k=2, kind=AnswerKind.TEXT, early_stop=False, min_samples=1, embed=embed)
    assert (await loose.estimate(_ctx("a", Script(["b"])))).confidence == 1.0
    assert (await strict.estimate(_ctx("a", Script(["b"])))).confidence == 0.5


class Costly:
    """An estimator that spends tokens of its own."""

    name = "costly"
    requires: frozenset = frozenset()

    async def estimate(self, ctx: EstimateContext):  # type: ignore[no-untyped-def]
        from verifiers import Estimate

        return Estimate(0.9, Usage(1, 7, 3, 0.0))


@pytest.mark.anyio
async def test_engine_records_what_the_decision_cost_and_who_made_it() -> None:
    """Tokens: the tier's call (10 in, 5 out) plus the estimator's own (7, 3), nothing added
    without them; the attempt names the estimator; latency on the injected clock; the
    result carries the feature; an accepted empty answer stays empty."""
    from scripted import FakeClock, Fixed, Scripted

    clock = FakeClock()
    cheap = Scripted("cheap", clock=clock, elapse=0.25)
    engine = Cascade(_tiers(cheap, Scripted("dear"), Costly(), 0.5), feature="billing", clock=clock)
    result = await engine.run("q")
    [attempt] = result.attempts
    assert (attempt.input_tokens, attempt.output_tokens) == (17, 8) and attempt.estimator == "costly"
    assert result.latency_s == pytest.approx(0.25) and result.feature == "billing"
    plain = (await Cascade(_tiers(Scripted("cheap"), Scripted("dear"), Fixed(0.9), 0.5)).run("q")).attempts[0]
    assert (plain.input_tokens, plain.output_tokens) == (10, 5) and plain.estimator == "fixed"
    assert plain.model == "small-model"
    import dataclasses

    unchecked = _tiers(Scripted(""), Scripted("dear"), Fixed(0.9), 0.5)
    unchecked[0] = dataclasses.replace(unchecked[0], degeneracy_checks=False)
    empty = await Cascade(unchecked).run("q")
    assert empty.accepted and empty.answer == ""
    # with the degeneracy checks (the default) an empty answer is never accepted
    checked = await Cascade(_tiers(Scripted(""), Scripted("dear"), Fixed(0.9), 0.5)).run("q")
    assert checked.answer == "dear" and checked.attempts[0].confidence == 0.0
    # a tier with an estimator but no threshold accepts any confidence (still measured)
    unset = await Cascade(_tiers(Scripted("cheap"), Scripted("dear"), Fixed(0.3), None)).run("q")
    assert unset.tier == 0 and unset.accepted and unset.confidence == 0.3


@pytest.mark.anyio
async def test_engine_errors_say_why() -> None:
    from scripted import Scripted

    from cascade import DeadlineExceededError, NoAnswerError, ServerError

    down = ServerError("d", 503, "down")
    failing = [Tier_("a", Scripted(fail=down)), Tier_("b", Scripted(fail=down))]
    with pytest.raises(NoAnswerError, match=r"^every tier failed; see \.attempts$"):
        await Cascade(failing).run("q")
    with pytest.raises(DeadlineExceededError, match="^the deadline expired before any tier answered$"):
        await Cascade([Tier_("slow", Scripted(delay=5.0))], deadline_s=0.05).run("q")


def Tier_(name: str, provider):  # type: ignore[no-untyped-def]
    from cascade import Tier

    return Tier(name, f"{name}-model", provider)


@pytest.mark.anyio
async def test_vote_tallies_settings_and_the_fixed_side_stop() -> None:
    from verifiers import vote_confidence

    share, tally = vote_confidence("4", ["4", "5", "5"], AnswerKind.NUMBER)
    assert share == 0.5 and tally == {"votes": 4, "agree": 2, "majority_share": 0.5,
                                      "candidate_agrees_with_majority": True, "clusters": 2}
    assert vote_confidence("none", ["4"], AnswerKind.NUMBER) == (
        0.0, {"reason": "no answer could be extracted from the candidate", "votes": 2})
    near = {"a": [1.0, 0.0], "b": [0.9, 0.435889894354067]}  # cosine 0.9 >= the default 0.85
    assert vote_confidence("a", ["b"], AnswerKind.TEXT, embed=lambda t: [near[x] for x in t])[0] == 1.0
    for bad in ({"k": 1}, {"batch": 0}, {"min_samples": 0}, {"min_samples": 6}):
        with pytest.raises(ValueError, match="^need k >= 2, batch >= 1 and 1 <= min_samples <= k$"):
            SelfConsistencyEstimator(**{"k": 5, **bad})
    # 3 of 3 votes with 2 to come: a majority whatever comes (the side is fixed, though the
    # posterior 0.9375 alone would not stop)
    estimate = await SelfConsistencyEstimator(k=5, kind=AnswerKind.NUMBER, batch=1, min_samples=3).estimate(
        _ctx("4", Script(["4"] * 4)))
    assert estimate.details["samples_used"] == 3 and estimate.details["stopped_early"]
    assert estimate.details["kind"] == "number"
