"""The unified decision's look-ahead rule: its float scorer equals the numpy quality models,
its values equal an independent brute-force expectimax, hand-computed decisions (a cheap
pair that agrees stops, one that disagrees escalates), the artifact, the choice of rule on
train, and the engine running it on replay tiers."""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest

from cascade import Cascade
from cascade.errors import RouterArtifactError
from cascade.routing._lookahead import AnswerStats, _Scorer, canonical
from cascade.routing._unified import CALLED_FEATURES, WAITING_FEATURES, DecisionRule, UnifiedModel, load_unified
from cascade.routing._unified_train import UnifiedData, answer_stats, choose_rule, cost_weight_grid, fit_unified, sweep_unified
from tests.test_unified import MODELS, PRIORS, FixedRouter, _model, _policy, _synthetic

EXACT = AnswerStats(1.0, 0.0, (0.0, 0.0, 0.0))  # letters: good answers agree, bad ones never


def _lookahead(model: UnifiedModel, stats: AnswerStats = EXACT) -> UnifiedModel:
    return dataclasses.replace(model, rule=DecisionRule.LOOKAHEAD, answers=stats)


def _random_model(rng: np.random.Generator, m: int, max_calls: int) -> UnifiedModel:
    return UnifiedModel(tuple(f"t{i}" for i in range(m)), rng.normal(0, 1.5, (m, len(CALLED_FEATURES))),
                        rng.normal(0, 1, m), rng.normal(0, 1.5, (m, len(WAITING_FEATURES))), rng.normal(0, 1, m),
                        np.zeros((2, m, m + 1, m + 1)), np.tile(np.eye(m), (m + 1, m + 1, 1, 1)),
                        np.sort(rng.uniform(0.01, 1, m)), np.full(m, 0.5), max_calls, DecisionRule.LOOKAHEAD,
                        AnswerStats(float(rng.uniform(0.3, 1)), float(rng.uniform(0, 0.7)),
                                    tuple(float(v) for v in rng.uniform(0, 0.2, m))))


def test_the_float_scorer_equals_the_numpy_quality_models() -> None:
    rng = np.random.default_rng(3)
    for _ in range(40):
        m = int(rng.integers(2, 6))
        model = _random_model(rng, m, m)
        prior = rng.uniform(0, 1, m)
        k = int(rng.integers(0, m + 1))
        called = [int(t) for t in rng.permutation(m)[:k]]
        groups = [None if rng.random() < 0.2 else int(rng.integers(0, 3)) for _ in called]
        expected = model.qualities(prior, called, groups)
        scorer = _Scorer(prior.tolist(), model.w_called.tolist(), model.b_called.tolist(),
                         model.w_waiting.tolist(), model.b_waiting.tolist())
        state = canonical(called, groups)
        got = scorer.called(state)
        for t in range(m):
            value = got[t] if t in called else scorer.waiting(state, t)
            assert value == pytest.approx(expected[t], abs=1e-9)


def _brute(model: UnifiedModel, prior: np.ndarray, called: list[int], groups: list[int | None],
           lam: float) -> float:
    """Expectimax written from the documented rule with the numpy quality models."""
    a = model.answers
    assert a is not None
    q = model.qualities(prior, called, groups)
    best = max((q[t] for t in called), default=-math.inf)
    if len(called) >= model.max_calls:
        return float(best)
    seen = sorted({g for g in groups if g is not None})
    good = {g: float(np.mean([q[t] for t, h in zip(called, groups) if h == g])) for g in seen}
    if sum(good.values()) > 1:
        total = sum(good.values())
        good = {g: v / total for g, v in good.items()}
    for j in range(len(prior)):
        if j in called:
            continue
        qj = float(q[j])
        join = {g: p * qj * a.agree_right + (1 - p) * (1 - qj) * a.agree_wrong for g, p in good.items()}
        if sum(join.values()) > 1:
            s = sum(join.values())
            join = {g: v / s for g, v in join.items()}
        none = a.no_answer[j]
        outcomes = [(g, (1 - none) * v) for g, v in join.items()]
        outcomes.append((max(seen, default=-1) + 1, (1 - none) * (1 - sum(join.values()))))
        outcomes.append((None, none))
        value = -lam * model.cost[j] + sum(p * _brute(model, prior, called + [j], groups + [g], lam)
                                           for g, p in outcomes if p > 0)
        best = max(best, value)
    return float(best)


def test_values_equal_a_brute_force_expectimax() -> None:
    rng = np.random.default_rng(11)
    for _ in range(25):
        m = int(rng.integers(2, 5))
        model = _random_model(rng, m, int(rng.integers(1, m + 1)))
        prior = rng.uniform(0.05, 0.95, m)
        lam = float(rng.choice([0.0, 0.05, 0.3, 2.0]))
        k = int(rng.integers(0, model.max_calls))
        called = [int(t) for t in rng.permutation(m)[:k]]
        groups: list[int | None] = [int(rng.integers(0, 2)) for _ in called]
        step = model.decide(prior, called, groups, lam)
        assert step.value == pytest.approx(_brute(model, prior, called, groups, lam), abs=1e-9)
        if step.call is not None:  # the chosen call is worth what the state is worth
            assert step.call not in called


def test_a_cheap_pair_that_agrees_stops_and_one_that_disagrees_escalates() -> None:
    """Priors (0.7, 0.7, 0.95), costs (0.05, 0.05, 1), agreement weight 3, λ 0.3.
    Agree: each cheap estimate sigmoid(logit 0.7 + 3) = 0.979; calling the dear tier is worth
    at most its share of agreeing (0.979·0.95 → 0.997) and disagreeing (→ 0.65), 0.973 − 0.3 <
    0.979: stop. Disagree: each sigmoid(logit 0.7 − 3) = 0.104; calling the dear tier:
    joins either (0.104·0.95 each → 0.95) or answers anew (0.802 → sigmoid(logit 0.95 − 1.5) =
    0.809): 0.837 − 0.3 = 0.537 > 0.104: call it."""
    model = _lookahead(_model([0.05, 0.05, 1.0], agree=3.0))
    prior = [0.7, 0.7, 0.95]
    agree = model.decide(prior, [0, 1], [4, 4], 0.3)
    assert agree.call is None and agree.answer == 0
    assert agree.value == pytest.approx(1 / (1 + math.exp(-(math.log(0.7 / 0.3) + 3))))
    disagree = model.decide(prior, [0, 1], [4, 5], 0.3)
    assert disagree.call == 2
    assert disagree.value == pytest.approx(0.537, abs=0.002)
    first = model.decide(prior, [], [], 0.3)
    assert first.call in (0, 1)  # cheap first: the dear tier is needed only on disagreement
    assert model.decide(prior, [], [], 3.0).call in (0, 1) and model.decide(prior, [], [], 0.0).call is not None
    assert model.decide(prior, [0, 1], [4, 5], 0.3, available=[True, True, False]).call is None


def test_a_second_cheap_opinion_is_worth_its_price_only_to_the_look_ahead() -> None:
    """After one cheap answer (estimate 0.7) at λ 0.3, with no fitted spreads: the spread rule
    sees nothing to gain from the other cheap tier and stops. The look-ahead counts that it
    agrees with P 0.7·0.7 (→ 0.979) and otherwise leaves the dear tier worth calling (0.537):
    −0.015 + 0.49·0.979 + 0.51·0.537 = 0.739 > 0.7, so it calls it."""
    spread = _model([0.05, 0.05, 1.0], agree=3.0)
    prior = [0.7, 0.7, 0.95]
    assert spread.decide(prior, [0], [0], 0.3).call is None
    step = _lookahead(spread).decide(prior, [0], [0], 0.3)
    assert step.call == 1
    assert step.value == pytest.approx(0.739, abs=0.002)


def test_artifact_keeps_the_rule_and_statistics(tmp_path: Path) -> None:
    train = _synthetic(150)
    model = fit_unified(train, max_calls=3, rule=DecisionRule.LOOKAHEAD)
    assert model.answers == answer_stats(train)
    model.save(tmp_path / "u.json")
    back = load_unified(tmp_path / "u.json")
    assert back.rule is DecisionRule.LOOKAHEAD and back.answers == model.answers
    prior = np.array([0.3, 0.6, 0.9])
    assert back.decide(prior, [0], [1], 0.1) == model.decide(prior, [0], [1], 0.1)
    two = back.subset(["c", "a"])
    assert two.answers is not None and two.answers.no_answer == (model.answers.no_answer[2], model.answers.no_answer[0])
    data = json.loads((tmp_path / "u.json").read_text())
    old = {k: v for k, v in data.items() if k not in ("rule", "answers")} | {"format": "cascade-unified/1"}
    (tmp_path / "old.json").write_text(json.dumps(old))
    assert load_unified(tmp_path / "old.json").rule is DecisionRule.SPREAD  # version 1 still loads
    (tmp_path / "bad.json").write_text(json.dumps(old | {"rule": "lookahead"}))
    with pytest.raises(RouterArtifactError, match="needs answer statistics"):
        load_unified(tmp_path / "bad.json")
    (tmp_path / "bad2.json").write_text(json.dumps(data | {"answers": {"agree_right": 2, "agree_wrong": 0,
                                                                      "no_answer": [0, 0, 0]}}))
    with pytest.raises(RouterArtifactError, match="shares in"):
        load_unified(tmp_path / "bad2.json")
    (tmp_path / "bad3.json").write_text(json.dumps(data | {"rule": "psychic"}))
    with pytest.raises(RouterArtifactError, match="malformed"):
        load_unified(tmp_path / "bad3.json")


def test_answer_statistics_by_hand() -> None:
    """Three tiers, two queries. Pairs both good with answers: q0 (0,1) same group, (0,2)
    and (1,2) not → 1 of 3; pairs both bad: q1 (0,1) same → 1 of 1. Smoothed (a+1)/(n+2)."""


    data = UnifiedData(("a", "b", "c"), np.full((2, 3), 0.5), np.array([[1.0, 1.0, 0.8], [0.0, 0.2, 1.0]]),
                       np.ones((2, 3)), np.array([[0, 0, 1], [2, 2, -1]]))
    stats = answer_stats(data)
    assert stats.agree_right == pytest.approx((1 + 1) / (3 + 2))
    assert stats.agree_wrong == pytest.approx((1 + 1) / (1 + 2))
    assert stats.no_answer == (0.0, 0.0, 0.5)


def test_choose_rule_keeps_the_better_train_curve() -> None:
    train = _synthetic(120)
    model, scores = choose_rule(train, 3, grid=cost_weight_grid(8))
    assert set(scores) == set(DecisionRule)
    assert scores[model.rule] == max(scores.values())
    other = next(r for r in DecisionRule if r is not model.rule)
    rival = dataclasses.replace(model, rule=other)
    assert [r.point for _, r in sweep_unified(rival, train, cost_weight_grid(8))]  # both rules replay


def test_choose_rule_offers_the_look_ahead_only_where_it_is_fast() -> None:
    """Four tiers: the look-ahead's first step is over 1 ms there, so only the spread rule is
    scored and kept."""
    three = _synthetic(80)
    four = UnifiedData(("a", "b", "c", "d"), np.hstack([three.prior, three.prior[:, 2:]]),
                       np.hstack([three.quality, three.quality[:, 2:]]),
                       np.hstack([three.cost, 2 * three.cost[:, 2:]]), np.hstack([three.groups, three.groups[:, 2:]]))
    model, scores = choose_rule(four, 3, grid=cost_weight_grid(4))
    assert set(scores) == {DecisionRule.SPREAD} and model.rule is DecisionRule.SPREAD


@pytest.mark.anyio
async def test_engine_runs_the_look_ahead_rule(tmp_path: Path) -> None:
    """The engine asks the model at every step: the attempts are exactly the calls the rule
    makes on the recorded answers (cheap "I am not sure", mid and dear "Augustus")."""
    path = _policy(tmp_path, """\
        unified: {artifact: unified.json, cost_weight: 0.3, answer: exact, max_calls: 3}
        """)
    model = _lookahead(_model([0.01, 0.1, 1.0], agree=3.0, models=MODELS))
    model.save(tmp_path / "unified.json")
    prompt = "Question: Who was the first emperor of Rome?\nAnswer:"
    PRIORS[prompt] = (0.8, 0.8, 0.95)
    answers = {0: "I am not sure", 1: "Augustus", 2: "Augustus"}
    called: list[int] = []
    groups: list[int | None] = []
    while True:
        step = model.decide(PRIORS[prompt], called, groups, 0.3)
        if step.call is None:
            break
        called.append(step.call)
        keys = [answers[t] for t in called]
        groups = [keys.index(k) for k in keys]
    assert called == [0, 1, 2]  # cheap first; its odd answer and mid's disagree, so dear decides
    async with Cascade.from_yaml(path) as engine:
        assert engine.routing is not None
        engine.routing = dataclasses.replace(engine.routing, router=FixedRouter())  # type: ignore[arg-type]
        result = await engine.run(prompt)
    assert [a.tier_name for a in result.attempts] == [["cheap", "mid", "dear"][t] for t in called]
    assert result.tier_name == ["cheap", "mid", "dear"][step.answer]  # type: ignore[index]


def test_the_cache_is_shared_across_cost_weights() -> None:
    model = _lookahead(_model([0.05, 0.05, 1.0], agree=3.0))
    cache: dict = {}  # type: ignore[type-arg]
    steps = [model.decide([0.7, 0.7, 0.95], [], [], lam, cache=cache) for lam in (0.0, 0.3, 3.0)]
    assert cache and all(isinstance(k, tuple) for k in cache)
    fresh = [model.decide([0.7, 0.7, 0.95], [], [], lam) for lam in (0.0, 0.3, 3.0)]
    assert steps == fresh
    assert list(itertools.chain(*[s.quality for s in steps]))
