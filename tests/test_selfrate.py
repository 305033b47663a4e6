"""Self-rating: parsing messy ratings; unparseable replies are recorded as confidence 0."""

from __future__ import annotations

import pytest

from verifiers import (
    Asked,
    Candidate,
    EstimateContext,
    MissingInputError,
    RatingScale,
    SelfRatingEstimator,
    Turn,
    Usage,
    parse_rating,
)

Z, P, PC = RatingScale.ZERO_TO_TEN, RatingScale.PROBABILITY, RatingScale.PERCENT
pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(("text", "scale", "expected"), [
    ("8/10", Z, 0.8),
    ("Rating: 7", Z, 0.7),
    ("**9**", Z, 0.9),
    ("I'd say 7.5 out of 10.", Z, 0.75),
    ("Rating: 10", Z, 1.0),
    ("0", Z, 0.0),
    ("Confidence: 0.9.", Z, 0.9),
    ("0.85", Z, 0.85),
    ("85%", Z, 0.85),
    ("The answer looks right. Score = 6", Z, 0.6),
    ("There are 3 steps; rating: 8", Z, 0.8),
    ("Rating: 12", Z, None),
    ("no idea", Z, None),
    ("", Z, None),
    ("0.3", P, 0.3),
    ("probability: .75", P, 0.75),
    ("1", P, 1.0),
    ("7", P, None),
    ("90", PC, 0.9),
    ("Confidence 45 %", PC, 0.45),
    ("150", PC, None),
    ("4 out of 100", PC, 0.04),
])
def test_parse_rating(text: str, scale: RatingScale, expected: float | None) -> None:
    value = parse_rating(text, scale)
    assert value == (None if expected is None else pytest.approx(expected))


def asker(reply: str, seen: list[str]):
    async def ask(messages: tuple[Turn, ...]) -> Asked:
        seen.append(messages[-1].content)
        return Asked(reply, Usage(1, 50, 3, 0.0002))
    return ask


async def test_estimate_asks_with_the_template_and_counts_the_cost() -> None:
    seen: list[str] = []
    ctx = EstimateContext((Turn("user", "What is {x} in json?"),), Candidate("A dict."), "t", None,
                          asker("Rating: 8", seen))
    estimate = await SelfRatingEstimator().estimate(ctx)
    assert estimate.confidence == pytest.approx(0.8) and estimate.usage.cost == pytest.approx(0.0002)
    assert "What is {x} in json?" in seen[0] and "A dict." in seen[0]  # braces are safe


async def test_unparseable_is_zero_and_recorded() -> None:
    ctx = EstimateContext((Turn("user", "q"),), Candidate("a"), "t", None, asker("I cannot rate this.", []))
    estimate = await SelfRatingEstimator().estimate(ctx)
    assert estimate.confidence == 0.0 and estimate.details == {"parsed": False, "raw": "I cannot rate this."}
    with pytest.raises(MissingInputError):
        await SelfRatingEstimator().estimate(EstimateContext((), Candidate("a")))
