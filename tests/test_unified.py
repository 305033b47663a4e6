"""routing.mode unified: the per-step decision computed by hand (which tier it calls, when it
stops, what agreement changes), the fit and λ calibration on synthetic recorded data, the
engine end to end on replay tiers, and the policy's errors."""

from __future__ import annotations

import csv
import dataclasses
import itertools
import math
import textwrap
from pathlib import Path

import numpy as np
import pytest

from cascade import Cascade
from cascade.errors import PolicyError, RouterArtifactError
from cascade.policy import RoutingMode
from cascade.routing import CorrectnessData, RouteContext, RouteReason, RouteTargetKind, train_knn
from cascade.routing._select import RouteCalibrationError
from cascade.routing._unified import (
    AnswerKey,
    CALLED_FEATURES,
    WAITING_FEATURES,
    UnifiedModel,
    UnifiedSettings,
    called_features,
    load_unified,
    waiting_features,
)
from cascade.routing._unified_train import (
    UnifiedData,
    UnifiedDataError,
    calibrate_cost_weight,
    candidate_models,
    cost_weight_grid,
    fit_unified,
    sweep_unified,
)
from cascade.types import Decision, RouteDecision, TierScore
from verifiers import AnswerKind

FIXTURES = Path(__file__).parent / "fixtures"
TOPICS = FIXTURES / "routing_routerbench.csv"
MODELS = ("cheap-model", "mid-model", "dear-model")
NC, NW = len(CALLED_FEATURES), len(WAITING_FEATURES)


def _weights(called: dict[str, float], waiting: dict[str, float], m: int) -> tuple[np.ndarray, np.ndarray]:
    wc = np.array([called.get(f, 0.0) for f in CALLED_FEATURES])
    ww = np.array([waiting.get(f, 0.0) for f in WAITING_FEATURES])
    return np.tile(wc, (m, 1)), np.tile(ww, (m, 1))


def _model(cost: list[float], *, agree: float = 0.0, spread: dict[tuple[int, int, int, int], float] | None = None,
           max_calls: int | None = None, models: tuple[str, ...] | None = None,
           no_answer: float = 0.0) -> UnifiedModel:
    """Estimates equal the prior (logit weight 1, no intercept), plus ``agree`` × agreement
    share and −``agree`` × the rival answer's support for called tiers, plus ``no_answer`` for
    a called tier without one; no spread unless given."""
    m = len(cost)
    wc, ww = _weights({"logit_prior": 1.0, "agree_share": agree, "rival_support": -agree,
                       "no_answer": no_answer}, {"logit_prior": 1.0}, m)
    s = np.zeros((2, m, m + 1, m + 1))
    for key, value in (spread or {}).items():
        s[key] = value
    return UnifiedModel(models or tuple(f"t{i}" for i in range(m)), wc, np.zeros(m), ww, np.zeros(m), s,
                        np.tile(np.eye(m), (m + 1, m + 1, 1, 1)), np.array(cost), np.full(m, 0.5),
                        max_calls or m)


# --- the decision, by hand ------------------------------------------------------------------------


def test_first_call_is_the_best_single_utility_in_any_order() -> None:
    """Without spread a plan is worth max(prior) − λ·Σcost; prior (0.6, 0.8, 0.9), relative
    costs (0.1, 0.3, 1): λ = 0.2 gives 0.58, 0.74, 0.70 → the middle tier, skipping the first;
    λ = 0.05 gives 0.595, 0.785, 0.85 → the dearest at once; λ = 2 gives 0.4, 0.2, −1.1 → the first."""
    model = _model([0.1, 0.3, 1.0])
    prior = [0.6, 0.8, 0.9]
    step = model.decide(prior, [], [], 0.2)
    assert (step.call, step.answer, step.plan) == (1, None, (1,))
    assert step.value == pytest.approx(0.74)
    assert model.decide(prior, [], [], 0.05).call == 2
    assert model.decide(prior, [], [], 2.0).call == 0


def test_it_stops_when_no_call_pays_for_itself_and_returns_the_best_estimate() -> None:
    """After the middle tier (estimate 0.8): the dearest adds 0.9 − 0.8 = 0.1 of quality for
    λ·1 of cost; it stops at λ = 0.2 (0.8 > 0.7) and calls at λ = 0.05 (0.85 > 0.8)."""
    model = _model([0.1, 0.3, 1.0])
    stop = model.decide([0.6, 0.8, 0.9], [1], [0], 0.2)
    assert (stop.call, stop.answer, stop.plan) == (None, 1, ())
    assert stop.value == pytest.approx(0.8)
    assert model.decide([0.6, 0.8, 0.9], [1], [0], 0.05).call == 2
    assert model.decide([0.6, 0.8, 0.9], [1], [0], 0.05, available=[True, True, False]).call is None


def test_agreement_decides_whether_to_escalate() -> None:
    """Two cheap tiers with prior 0.5 (logit 0) called; agreement weight 3:
    they agree → each sigmoid(3·1) = 0.9526 > 0.95 − 0.5 → stop with the first;
    they disagree → each sigmoid(−3·1) = 0.0474 < 0.45 → call the dear tier."""
    model = _model([0.05, 0.05, 1.0], agree=3.0)
    prior = [0.5, 0.5, 0.95]
    agree = model.decide(prior, [0, 1], [7, 7], 0.5)
    assert agree.call is None and agree.answer == 0
    assert agree.quality[0] == pytest.approx(1 / (1 + math.exp(-3)))
    disagree = model.decide(prior, [0, 1], [7, 8], 0.5)
    assert disagree.call == 2
    assert disagree.quality[1] == pytest.approx(1 / (1 + math.exp(3)))
    assert disagree.value == pytest.approx(0.95 - 0.5)


def test_the_spread_of_an_uncalled_estimate_is_worth_paying_for() -> None:
    """Called tier 0 at 0.7; tier 1 waiting at 0.7 whose estimate still moves by σ = 0.1 once
    it answers: E[max(0.7, N(0.7, 0.1²))] = 0.7 + 0.1·φ(0) = 0.7399. At λ·c = 0.02 the call
    pays (0.7199 > 0.7), at 0.06 it does not (0.6799); with σ = 0 it never does."""
    spread = {(0, 1, 1, 2): 0.1}
    model = _model([0.1, 1.0], spread=spread)
    prior = [0.7, 0.7]
    calls = model.decide(prior, [0], [0], 0.02)
    assert calls.call == 1
    assert calls.value == pytest.approx(0.7 + 0.1 / math.sqrt(2 * math.pi) - 0.02, abs=0.006)
    assert model.decide(prior, [0], [0], 0.06).call is None
    assert _model([0.1, 1.0]).decide(prior, [0], [0], 0.0).call is None


def test_max_calls_and_bad_inputs() -> None:
    model = _model([0.1, 0.3, 1.0], max_calls=1)
    assert model.decide([0.6, 0.8, 0.9], [1], [0], 0.0).call is None  # one call, and it was made
    with pytest.raises(ValueError, match="shape"):
        model.decide([0.5, 0.5], [], [], 0.1)
    with pytest.raises(ValueError, match="distinct"):
        model.decide([0.5, 0.5, 0.5], [0, 0], [1, 1], 0.1)
    with pytest.raises(ValueError, match="cost_weight"):
        model.decide([0.5, 0.5, 0.5], [], [], -1.0)
    with pytest.raises(RouterArtifactError, match="max_calls"):
        _model([0.1, 0.3], max_calls=3)
    with pytest.raises(RouterArtifactError, match="shape"):
        dataclasses.replace(model, cost=np.ones(2))


def test_features_by_hand() -> None:
    prior = np.array([0.5, 0.8, 0.2])
    rows = called_features(prior, [0, 1, 2], [4, 4, None])
    # tier 0: one of two others agrees; support 0.8 / (0.8 + 0.2); no rival answer (tier 2 gave none)
    assert rows[0].tolist() == pytest.approx([0.0, 0.5, 0.8, 0.0, 1.0, 0.0])
    assert rows[2, CALLED_FEATURES.index("no_answer")] == 1.0
    waiting = waiting_features(prior, [2], [4, 5])
    assert waiting[0].tolist() == pytest.approx([math.log(0.25), 0.5, 1.0, 0.5])


# --- fitting, replay and λ calibration --------------------------------------------------------------


def _synthetic(n: int = 300, seed: int = 0) -> UnifiedData:
    """Three tiers of rising skill and cost; right answers agree (group 0), wrong ones are
    scattered; the prior is the true P(right) plus noise."""
    rng = np.random.default_rng(seed)
    hard = rng.uniform(size=n)
    p = np.clip(np.array([0.55, 0.75, 0.95])[None, :] * (1.25 - hard[:, None]), 0, 1)
    right = rng.uniform(size=p.shape) < p
    groups = np.where(right, 0, rng.integers(1, 5, size=p.shape))
    prior = np.clip(p + rng.normal(0, 0.05, p.shape), 0, 1)
    cost = np.tile([0.01, 0.1, 1.0], (n, 1))
    return UnifiedData(("a", "b", "c"), prior, right.astype(float), cost, groups)


def test_fit_and_calibrated_cost_weight_are_monotone() -> None:
    train = _synthetic(250)
    model = fit_unified(train, max_calls=3)
    assert model.models == ("a", "b", "c") and model.max_calls == 3
    swept = sweep_unified(model, train, cost_weight_grid(10))
    costs = [float(r.cost.mean()) for _, r in swept]
    assert costs[0] > costs[-1]  # λ = 0 buys quality; a high λ calls one cheap tier
    assert swept[-1][1].calls.max() == 1
    lam = [calibrate_cost_weight(swept, train, RouteTargetKind.QUALITY, t) for t in (0.7, 0.8, 0.9, 0.95)]
    assert lam == sorted(lam, reverse=True)  # a higher quality target never allows a larger λ
    best = float(train.quality.mean(axis=0).max())
    for target, chosen in zip((0.7, 0.8, 0.9, 0.95), lam):
        replayed = dict(swept)[chosen]
        assert replayed.quality.mean() >= target * best - 1e-12
    by_cost = [calibrate_cost_weight(swept, train, RouteTargetKind.COST, t) for t in (0.05, 0.2, 0.5, 1.0)]
    assert by_cost == sorted(by_cost, reverse=True)  # more money never needs a larger λ
    with pytest.raises(RouteCalibrationError, match="no λ"):
        calibrate_cost_weight(swept, train, RouteTargetKind.QUALITY, 1.5)
    with pytest.raises(RouteCalibrationError, match="not shares"):
        calibrate_cost_weight(swept, train, RouteTargetKind.SHARES, 0.5)


def test_the_curve_spans_cheapest_to_best_on_held_out_data() -> None:
    """On held-out synthetic data: a large λ calls the cheapest tier once; λ = 0 comes within
    0.02 of the best tier's quality; quality falls as λ grows (allowing replay noise)."""
    train, test = _synthetic(250, 0), _synthetic(250, 1)
    model = fit_unified(train, max_calls=3)
    swept = sweep_unified(model, test, cost_weight_grid(8))
    high = swept[-1][1]
    assert high.calls.max() == 1 and high.cost.mean() == pytest.approx(0.01)
    assert swept[0][1].quality.mean() >= float(test.quality.mean(axis=0).max()) - 0.02
    qualities = [float(r.quality.mean()) for _, r in swept]
    assert all(b <= a + 0.01 for a, b in itertools.pairwise(qualities))


def test_artifact_round_trip_and_subset(tmp_path: Path) -> None:
    model = fit_unified(_synthetic(120), max_calls=2)
    model.save(tmp_path / "u.json")
    back = load_unified(tmp_path / "u.json")
    prior = np.array([0.3, 0.6, 0.9])
    assert back.decide(prior, [0], [1], 0.1) == model.decide(prior, [0], [1], 0.1)
    two = back.subset(["c", "a"])
    assert two.models == ("c", "a") and two.cost.max() == 1.0 and two.max_calls == 2
    with pytest.raises(RouterArtifactError, match="knows nothing of z"):
        back.subset(["a", "z"])
    (tmp_path / "bad.json").write_text('{"format": "other"}')
    with pytest.raises(RouterArtifactError, match="not a unified model"):
        load_unified(tmp_path / "bad.json")


def test_bad_data_and_candidates() -> None:
    good = _synthetic(20)
    with pytest.raises(UnifiedDataError, match="quality must lie in"):
        dataclasses.replace(good, quality=good.quality * 2)
    with pytest.raises(UnifiedDataError, match="shape"):
        dataclasses.replace(good, cost=good.cost[:, :2])
    quality = np.array([[0.5, 0.4, 0.9, 0.95]] * 4)
    cost = np.array([[1.0, 2.0, 3.0, 10.0]] * 4)
    assert candidate_models(quality, cost) == [0, 2, 3]  # tier 1 is dearer and worse than tier 0
    assert candidate_models(quality, cost, limit=2) == [0, 3]


# --- the engine on replay tiers ----------------------------------------------------------------------


PRIORS = {  # the router's P(good) per tier, per prompt (a fixed router: no encoder needed)
    "Question: What is 9 times 3?\nAnswer:": (0.95, 0.95, 0.99),
    "Question: Which dynasty built the Forbidden City?\nAnswer:": (0.1, 0.9, 0.95),
}


class FixedRouter:
    name, default = "fixed", 2

    async def route(self, ctx: RouteContext) -> RouteDecision:
        p = PRIORS[ctx.text]
        return RouteDecision(0, ctx.tiers[0].name, RouteReason.PREDICTED, self.name,
                             tuple(TierScore(t.name, v, None) for t, v in zip(ctx.tiers, p)))


def _policy(tmp_path: Path, unified: str, mode: str = "unified", router: str = "",
            replay: Path = TOPICS) -> Path:
    x = np.eye(12, 384, dtype=np.float32) + 0.01
    labels = np.tile([1.0, 1.0, 1.0], (12, 1))
    labels[:6, 0] = 0.0
    data = CorrectnessData("t", tuple(f"q{i}" for i in range(12)), MODELS, labels,
                           np.tile([0.0001, 0.001, 0.01], (12, 1)))
    train_knn(data, embeddings=x, k=3).save(tmp_path / "knn")
    _model([0.01, 0.1, 1.0], models=MODELS).save(tmp_path / "unified.json")
    body = textwrap.dedent(f"""\
        feature: unified
        tiers:
          - {{name: cheap, model: cheap-model, provider: {{kind: replay, data: {replay}}}}}
          - {{name: mid, model: mid-model, provider: {{kind: replay, data: {replay}}}}}
          - {{name: dear, model: dear-model, provider: {{kind: replay, data: {replay}}}}}
        routing:
          mode: {mode}
          router: {router or '{kind: knn, artifact: knn, cold_start: false}'}
        """) + textwrap.indent(textwrap.dedent(unified), "  ")
    path = tmp_path / "unified.yaml"
    path.write_text(body)
    return path


@pytest.mark.anyio
async def test_engine_stops_early_and_skips_a_tier(tmp_path: Path) -> None:
    path = _policy(tmp_path, """\
        unified: {artifact: unified.json, cost_weight: 0.5, answer: exact}
        """)
    async with Cascade.from_yaml(path) as engine:
        assert engine.routing is not None and engine.routing.mode is RoutingMode.UNIFIED
        engine.routing = dataclasses.replace(engine.routing, router=FixedRouter())  # type: ignore[arg-type]
        sums = await engine.run("Question: What is 9 times 3?\nAnswer:")
        # λ 0.5: cheap 0.95 − 0.005 beats mid 0.95 − 0.05 and dear 0.99 − 0.5; then nothing pays
        assert [a.tier_name for a in sums.attempts] == ["cheap"]
        assert (sums.answer, sums.accepted, sums.confidence) == ("27", True, pytest.approx(0.95))
        assert sums.cost == pytest.approx(0.0001)
        engine.routing = dataclasses.replace(engine.routing, unified=dataclasses.replace(
            engine.routing.unified, cost_weight=0.2))
        history = await engine.run("Question: Which dynasty built the Forbidden City?\nAnswer:")
        # λ 0.2: cheap 0.098, mid 0.88, dear 0.75 → mid, skipping cheap; then dear adds 0.05 < 0.2
        assert [a.tier_name for a in history.attempts] == ["mid"]
        assert history.attempts[0].decision is Decision.ACCEPT and history.answer == "Ming"
        engine.routing = dataclasses.replace(engine.routing, unified=dataclasses.replace(
            engine.routing.unified, cost_weight=0.01))
        dear = await engine.run("Question: Which dynasty built the Forbidden City?\nAnswer:")
        # λ 0.01: dear 0.94 beats mid 0.899 at once
        assert [a.tier_name for a in dear.attempts] == ["dear"] and dear.tier_name == "dear"


@pytest.mark.anyio
async def test_engine_escalates_on_disagreement_and_returns_the_best_estimate(tmp_path: Path) -> None:
    """Agreement weight 3, λ 0.6, priors (0.5, 0.5, 0.95), costs (0.01, 0.1, 1); mid's
    estimate still moves by σ 0.45 once it answers after cheap. Step 1: cheap 0.494 beats mid
    0.44 and dear 0.35. Step 2: stopping is worth 0.5; calling mid 0.5 + 0.45·φ(0) − 0.06 ≈
    0.62. Cheap says "I am not sure", mid "Augustus": each now sigmoid(−3) = 0.047, so dear
    (0.95 − 0.6 = 0.35) is called; it agrees with mid: dear's agreement share 1/2 and the rival's
    prior-weighted support 0.5 / (0.5 + 0.5) cancel (3·0.5 − 3·0.5), so it keeps 0.95, above
    mid's sigmoid(3·0.5 − 3·0.5/1.45) = 0.614, and dear's answer is returned."""
    path = _policy(tmp_path, """\
        unified: {artifact: unified.json, cost_weight: 0.6, answer: exact, max_calls: 3}
        """)
    model = _model([0.01, 0.1, 1.0], agree=3.0, models=MODELS, spread={(0, 1, 1, 2): 0.45})
    model.save(tmp_path / "unified.json")
    PRIORS["Question: Who was the first emperor of Rome?\nAnswer:"] = (0.5, 0.5, 0.95)
    async with Cascade.from_yaml(path) as engine:
        assert engine.routing is not None
        engine.routing = dataclasses.replace(engine.routing, router=FixedRouter())  # type: ignore[arg-type]
        result = await engine.run("Question: Who was the first emperor of Rome?\nAnswer:")
    assert [a.tier_name for a in result.attempts] == ["cheap", "mid", "dear"]
    assert result.tier_name == "dear" and result.confidence == pytest.approx(0.95)
    assert result.answer == "Augustus" and result.accepted
    assert sum(a.decision is Decision.ACCEPT for a in result.attempts) == 1


WORKED = "Question: Tom has 9 boxes of 3 pens and buys 4 more pens. How many pens?\nAnswer:"


@pytest.mark.anyio
@pytest.mark.parametrize("check, pad", [("", 0), ("", 200), ("check_arithmetic: false", 0)])
async def test_an_answer_whose_own_arithmetic_is_false_counts_as_no_answer(tmp_path: Path, check: str,
                                                                           pad: int) -> None:
    """λ 0.5, priors (0.95, 0.95, 0.99), "no answer" weight −6. Cheap is called first (0.95 −
    0.005, as above). Its working says 9 * 3 = 28: with the check (on by default for number
    answers) it counts as no answer, its estimate falls to sigmoid(logit 0.95 − 6) = 0.047 and
    mid (0.95 − 0.05) is called and returned; with ``check_arithmetic: false`` cheap's "#### 32"
    is an answer, 0.95, and the run stops there. ``pad`` lines of true working first make the
    answer long enough to be judged in a worker thread."""
    data = tmp_path / "worked.csv"
    with data.open("w", newline="") as out:
        rows = csv.writer(out)
        rows.writerow(["", "sample_id", "prompt", "eval_name", *MODELS,
                       *(f"{m}|model_response" for m in MODELS), *(f"{m}|total_cost" for m in MODELS),
                       "oracle_model_to_route_to"])
        rows.writerow([0, "w.0", repr([WORKED]), "math", 0.0, 1.0, 1.0,
                       repr(["1 + 1 = 2\n" * pad + "9 * 3 = 28 pens in boxes, 28 + 4 = 32. #### 32"]),
                       repr(["9 * 3 = 27 pens, 27 + 4 = 31. #### 31"]), repr(["#### 31"]),
                       0.0001, 0.001, 0.01, "mid-model"])
    path = _policy(tmp_path, f"unified: {{artifact: unified.json, cost_weight: 0.5, answer: number, {check}}}",
                   replay=data)
    _model([0.01, 0.1, 1.0], models=MODELS, no_answer=-6.0).save(tmp_path / "unified.json")
    PRIORS[WORKED] = (0.95, 0.95, 0.99)
    async with Cascade.from_yaml(path) as engine:
        assert engine.routing is not None and engine.routing.unified is not None
        assert engine.routing.unified.key.check_arithmetic == (not check)  # type: ignore[attr-defined]
        engine.routing = dataclasses.replace(engine.routing, router=FixedRouter())  # type: ignore[arg-type]
        result = await engine.run(WORKED)
    if check:
        assert [a.tier_name for a in result.attempts] == ["cheap"] and result.answer.endswith("#### 32")
        assert result.confidence == pytest.approx(0.95) and result.attempts[0].details == {}
    else:
        assert [a.tier_name for a in result.attempts] == ["cheap", "mid"]
        assert result.tier_name == "mid" and result.answer.endswith("#### 31")
        assert result.attempts[0].details == {"false_arithmetic": ["9 * 3 = 28"]}


def test_the_arithmetic_check_follows_the_answer_kind_unless_set() -> None:
    assert AnswerKey.of(AnswerKind.NUMBER).check_arithmetic
    assert not AnswerKey.of(AnswerKind.CHOICE).check_arithmetic
    assert not AnswerKey.of(AnswerKind.NUMBER, False).check_arithmetic
    assert AnswerKey.of(AnswerKind.EXACT, True)("so 2 + 2 = 5.\nAnswer: five") is None
    assert AnswerKey.of(AnswerKind.EXACT)("so 2 + 2 = 5.\nAnswer: five") == "five"
    assert AnswerKey.of(AnswerKind.NUMBER).judge("2 + 2 = 5, #### 5") == (None, ("2 + 2 = 5",))
    settings = UnifiedSettings(_model([0.1, 1.0]), 0.1, AnswerKey.of(AnswerKind.NUMBER))
    keys = [settings.key(a) for a in ("3 + 4 = 8, so #### 8", "#### 8", "3 + 4 = 7 #### 7", "so #### 7")]
    assert settings.grouped(keys) == [None, 0, 1, 1]


def test_policy_errors_name_the_key(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match=r"routing \(line 6\): mode unified needs `unified:`"):
        Cascade.from_yaml(_policy(tmp_path, ""))
    with pytest.raises(PolicyError, match=r"routing\.unified.*mode unified only \(mode is both\)"):
        Cascade.from_yaml(_policy(tmp_path, "unified: {artifact: unified.json, cost_weight: 0.1}", mode="both"))
    with pytest.raises(PolicyError, match=r"routing\.unified\.cost_weight"):
        Cascade.from_yaml(_policy(tmp_path, "unified: {artifact: unified.json, cost_weight: -1}"))
    with pytest.raises(PolicyError, match=r"routing\.unified\.max_calls"):
        Cascade.from_yaml(_policy(tmp_path, "unified: {artifact: unified.json, cost_weight: 1, max_calls: 0}"))
    with pytest.raises(PolicyError, match=r"routing\.unified.*needs a trained router"):
        Cascade.from_yaml(_policy(tmp_path, "unified: {artifact: unified.json, cost_weight: 0.1}",
                                  router="{kind: rules, rules: [{start: mid, min_chars: 5}]}"))
    with pytest.raises(RouterArtifactError, match="cannot read the unified model"):
        Cascade.from_yaml(_policy(tmp_path, "unified: {artifact: missing.json, cost_weight: 0.1}"))
