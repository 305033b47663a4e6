"""Ensemble tiers and agreement through the engine: scripted members that agree, fail or are
slow (the tier's timeout and the run's deadline hold), earlier answers reused across an
escalation, and a deterministic replay run on a hand-written RouterBench-format fixture."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from scripted import Scripted

from cascade import (
    Cascade,
    Decision,
    PolicyError,
    ProviderHTTPError,
    ReplayDataError,
    StopReason,
    Tier,
    load_policy,
)
from cascade._tier import Member
from cascade.policy import Price
from verifiers import AgreementEstimator, AnswerKind

pytestmark = pytest.mark.anyio

FIXTURE = Path(__file__).parent / "fixtures" / "agreement_routerbench.csv"
CHEAP = Price(input_per_1m=1.0, output_per_1m=2.0)
DEAR = Price(input_per_1m=10.0, output_per_1m=30.0)
CHOICE = AgreementEstimator(AnswerKind.CHOICE, min_members=2)


def ensemble(*members: Scripted, estimator: AgreementEstimator = CHOICE, threshold: float = 1.0,
             timeout_s: float = 60.0) -> Tier:
    return Tier("pair", "+".join(m.name for m in members), members[0], estimator, threshold, CHEAP,
                timeout_s=timeout_s, members=tuple(Member(m.name, m, CHEAP) for m in members),
                consensus=estimator)


def strong(text: str = "Answer: D") -> tuple[Scripted, Tier]:
    provider = Scripted(text, name="strong", input_tokens=20, output_tokens=7)
    return provider, Tier("strong", "strong", provider, price=DEAR)


# --- ensemble tiers on scripted members -------------------------------------------------------


async def test_members_that_agree_are_accepted_and_every_member_is_paid_for() -> None:
    a, b = Scripted("The answer is B", name="a"), Scripted("(b)", name="b")
    dear, top = strong()
    result = await Cascade([ensemble(a, b), top]).run("Pick one: A, B, C or D")
    assert result.accepted and result.tier == 0 and dear.calls == []
    assert len(a.calls) == 1 and len(b.calls) == 1
    assert a.calls[0].model == "a" and b.calls[0].model == "b"  # each member asks for its own model
    [attempt] = result.attempts
    assert attempt.confidence == 1.0 and attempt.decision is Decision.ACCEPT
    assert attempt.model == "a"  # ties go to the earlier member
    assert [m.model for m in attempt.members] == ["a", "b"]
    assert [m.chosen for m in attempt.members] == [True, False]
    one = (10 * 1.0 + 5 * 2.0) / 1e6
    assert attempt.cost == pytest.approx(2 * one) == pytest.approx(result.cost)
    assert (attempt.input_tokens, attempt.output_tokens) == (20, 10)
    assert attempt.details["agreed"] == ["pair/b"] and attempt.details["disagreed"] == []


async def test_members_that_disagree_escalate_and_the_result_records_who_disagreed() -> None:
    a, b = Scripted("A", name="a"), Scripted("C", name="b")
    dear, top = strong("D")
    result = await Cascade([ensemble(a, b), top]).run("q")
    assert result.tier == 1 and result.answer == "D" and len(dear.calls) == 1
    first = result.attempts[0]
    assert first.decision is Decision.ESCALATE and first.confidence == 0.5
    assert first.details["disagreed"] == ["pair/b"]
    assert result.cost == pytest.approx(2 * (10 + 10) / 1e6 + (20 * 10 + 7 * 30) / 1e6)


async def test_three_members_the_majority_is_the_tiers_answer() -> None:
    a, b, c = Scripted("A", name="a"), Scripted("C", name="b"), Scripted("answer: c", name="c")
    estimator = AgreementEstimator(AnswerKind.CHOICE, min_members=2)
    result = await Cascade([ensemble(a, b, c, estimator=estimator, threshold=0.6)]).run("q")
    [attempt] = result.attempts
    assert attempt.model == "b" and result.answer == "C"
    assert attempt.confidence == pytest.approx(2 / 3) and result.accepted
    assert [m.chosen for m in attempt.members] == [False, True, False]


async def test_a_failing_member_is_recorded_and_too_few_answers_mean_no_confidence() -> None:
    a = Scripted("B", name="a")
    b = Scripted("B", name="b", fail=ProviderHTTPError("scripted@b", 503, "overloaded"))
    dear, top = strong("B")
    result = await Cascade([ensemble(a, b), top]).run("q")
    first = result.attempts[0]
    assert first.answer == "B" and first.error is None  # the tier decided on what it had
    assert first.confidence == 0.0 and first.decision is Decision.ESCALATE  # 1 < min_members 2
    assert "fewer than min_members" in str(first.details["reason"])
    failed = first.members[1]
    assert failed.answer is None and failed.cost == 0.0
    assert failed.error is not None and "ProviderHTTPError" in failed.error
    assert first.members[0].chosen and not failed.chosen
    assert result.tier == 1 and len(dear.calls) == 1


async def test_with_min_members_one_a_lone_answer_may_still_be_accepted() -> None:
    a = Scripted("B", name="a")
    b = Scripted("B", name="b", fail=ProviderHTTPError("scripted@b", 500, "down"))
    lenient = AgreementEstimator(AnswerKind.CHOICE, min_members=1)
    result = await Cascade([ensemble(a, b, estimator=lenient), strong()[1]]).run("q")
    assert result.tier == 0 and result.accepted


async def test_every_member_failing_is_a_provider_error_and_the_run_moves_on() -> None:
    down = ProviderHTTPError("scripted", 502, "bad gateway")
    a, b = Scripted(name="a", fail=down), Scripted(name="b", fail=down)
    _, top = strong("D")
    result = await Cascade([ensemble(a, b), top]).run("q")
    first = result.attempts[0]
    assert first.decision is Decision.ERROR and first.error is not None
    assert "ProviderHTTPError" in first.error
    assert [m.answer for m in first.members] == [None, None]
    assert result.answer == "D" and result.tier == 1


async def test_a_slow_member_is_cut_at_the_tiers_timeout() -> None:
    a, b = Scripted("B", name="a"), Scripted("B", name="b", delay=30.0)
    dear, top = strong("B")
    started = time.perf_counter()
    result = await Cascade([ensemble(a, b, timeout_s=0.3), top]).run("q")
    assert time.perf_counter() - started < 10  # not the slow member's 30 s
    first = result.attempts[0]
    slow = first.members[1]
    assert slow.answer is None and slow.error is not None and "ProviderTimeoutError" in slow.error
    assert first.answer == "B" and first.confidence == 0.0  # one answer: below min_members
    assert result.tier == 1


async def test_the_run_deadline_holds_and_counts_the_members_that_finished() -> None:
    a, b = Scripted("B", name="a"), Scripted("B", name="b", delay=30.0)
    dear, top = strong()
    started = time.perf_counter()
    result = await Cascade([ensemble(a, b), top], deadline_s=0.3).run("q")
    assert time.perf_counter() - started < 10
    assert result.stop_reason is StopReason.DEADLINE and dear.calls == []
    [attempt] = result.attempts
    assert attempt.decision is Decision.TIMEOUT
    assert [m.model for m in attempt.members] == ["a"]  # the member that had answered
    assert result.answer == "B" and not result.accepted and attempt.model == "a"
    assert attempt.members[0].chosen
    assert attempt.cost == pytest.approx((10 * 1.0 + 5 * 2.0) / 1e6) == pytest.approx(result.cost)


# --- earlier answers reused across an escalation ---------------------------------------------


def evidence_chain(cheap: str, middle: str, top: str, *, earlier: bool = True
                   ) -> tuple[list[Tier], list[Scripted]]:
    p = [Scripted(cheap, name="cheap"), Scripted(middle, name="middle"), Scripted(top, name="top")]
    agree = AgreementEstimator(AnswerKind.CHOICE, min_members=2, earlier=earlier)
    tiers = [Tier("cheap", "cheap", p[0], agree, 1.0, CHEAP),
             Tier("middle", "middle", p[1], agree, 1.0, CHEAP),
             Tier("top", "top", p[2], price=DEAR)]
    return tiers, p


async def test_a_middle_tier_that_agrees_with_the_cheap_answer_is_accepted() -> None:
    tiers, p = evidence_chain("B", "(B)", "D")
    result = await Cascade(tiers).run("q")
    assert result.tier == 1 and result.accepted and p[2].calls == []
    first, second = result.attempts
    assert first.confidence == 0.0  # alone at tier 1: fewer than min_members
    assert second.confidence == 1.0 and second.details["agreed"] == ["cheap/cheap"]
    assert result.cost == pytest.approx(2 * (10 * 1.0 + 5 * 2.0) / 1e6)  # both paid for


async def test_a_middle_tier_that_disagrees_escalates() -> None:
    tiers, p = evidence_chain("B", "C", "D")
    result = await Cascade(tiers).run("q")
    assert result.tier == 2 and result.answer == "D" and len(p[2].calls) == 1
    assert result.attempts[1].confidence == 0.5
    assert result.attempts[1].details["disagreed"] == ["cheap/cheap"]


async def test_earlier_false_ignores_answers_already_paid_for() -> None:
    tiers, p = evidence_chain("B", "B", "D", earlier=False)
    result = await Cascade(tiers).run("q")
    assert result.tier == 2 and result.attempts[1].confidence == 0.0


async def test_ensemble_members_are_evidence_for_later_tiers() -> None:
    a, b = Scripted("A", name="a"), Scripted("C", name="b")
    mid = Scripted("C", name="mid")
    agree = AgreementEstimator(AnswerKind.CHOICE, min_members=2)
    tiers = [ensemble(a, b), Tier("mid", "mid", mid, agree, 0.6, CHEAP), strong()[1]]
    result = await Cascade(tiers).run("q")
    assert result.tier == 1 and result.accepted
    second = result.attempts[1]
    assert second.details["agreed"] == ["pair/b"] and second.details["disagreed"] == ["pair/a"]
    assert second.confidence == pytest.approx(2 / 3)


# --- a deterministic replay run on a RouterBench-format fixture ------------------------------

POLICY = """\
feature: agreement-fixture
tiers:
  - name: pair
    models: [a, b]
    provider: {{kind: replay, data: '{data}'}}
    estimator: {{kind: agreement, answer: choice, min_members: 2}}
    threshold: 1.0
  - name: strong
    model: c
    provider: {{kind: replay, data: '{data}'}}
"""

# row: (accepted at the pair, the run's answer, whether the answer is recorded correct)
EXPECTED = {
    "agree.1": (True, "B", True),  # B and "Answer: B" agree, both right
    "agree.2": (False, "D", True),  # A vs D: escalate, c is right
    "agree.3": (True, "Answer: (C)", True),  # "Answer: (C)" and "c" agree
    "agree.4": (False, "B", True),
    "agree.5": (True, "**D**", False),  # both cheap models agree on a wrong D: accepted, wrong
    "agree.6": (False, "C", True),  # B vs "The answer is C"
}


def _prompt(sample_id: str) -> str:
    return f"Question {sample_id.split('.')[1]}: pick a letter.\nAnswer:"


async def test_replay_fixture_run_is_deterministic(tmp_path: Path) -> None:
    path = tmp_path / "pair.yaml"
    path.write_text(POLICY.format(data=FIXTURE))
    costs = {"a": [0.0011, 0.0012, 0.0013, 0.0014, 0.0015, 0.0016],
             "b": [0.0021, 0.0022, 0.0023, 0.0024, 0.0025, 0.0026],
             "c": [0.031, 0.032, 0.033, 0.034, 0.035, 0.036]}
    for repeat in range(2):  # the same answers, costs and decisions every time
        async with Cascade.from_policy(load_policy(path)) as engine:
            for i, (sample_id, (accepted_early, answer, right)) in enumerate(EXPECTED.items()):
                result = await engine.run(_prompt(sample_id))
                assert result.answer == answer, (repeat, sample_id)
                assert (result.tier == 0) is accepted_early, sample_id
                assert result.attempts[-1].label == right, sample_id  # quality: 1.0 / 0.0
                expected = costs["a"][i] + costs["b"][i] + (0 if accepted_early else costs["c"][i])
                assert result.cost == pytest.approx(expected), sample_id
                assert all(m.label is not None for m in result.attempts[0].members)


async def test_an_ensemble_member_missing_from_the_replay_data_is_refused_at_load(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(POLICY.format(data=FIXTURE).replace("models: [a, b]", "models: [a, zeta]"))
    with pytest.raises(ReplayDataError, match="zeta"):
        Cascade.from_policy(load_policy(path))


@pytest.mark.parametrize(("edit", "message"), [
    (("models: [a, b]", "models: [a]"), "at least two"),
    (("models: [a, b]", "models: [a, a]"), "twice"),
    (("estimator: {kind: agreement, answer: choice, min_members: 2}", "estimator: {kind: vote}"),
     "agreement"),
])
def test_bad_ensemble_policies_are_typed_errors(tmp_path: Path, edit: tuple[str, str], message: str) -> None:
    path = tmp_path / "bad.yaml"
    text = POLICY.format(data=FIXTURE)
    assert edit[0] in text
    path.write_text(text.replace(*edit))
    with pytest.raises(PolicyError, match=message):
        load_policy(path)
