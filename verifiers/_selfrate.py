"""LLM self-rating: a model (the same tier's, or another) rates the answer; the rating is
parsed robustly from messy output. An unparseable reply is confidence 0, recorded."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from verifiers._types import Capability, Estimate, EstimateContext, MissingInputError, Turn


class RatingScale(str, enum.Enum):
    ZERO_TO_TEN = "zero_to_ten"
    PROBABILITY = "probability"
    PERCENT = "percent"


DEFAULT_RATING_PROMPT = (
    "You are grading an answer for correctness.\n\n"
    "Question:\n{question}\n\n"
    "Proposed answer:\n{answer}\n\n"
    "How likely is the proposed answer to be correct and complete? Reply with a single "
    "rating from 0 (certainly wrong) to 10 (certainly right), as 'Rating: N'."
)

_TOP = {RatingScale.ZERO_TO_TEN: 10.0, RatingScale.PROBABILITY: 1.0, RatingScale.PERCENT: 100.0}
_NUM = r"(\d+(?:\.\d+)?|\.\d+)"
_OUT_OF = re.compile(_NUM + r"\s*(?:/|out of)\s*(10|100)\b", re.IGNORECASE)
_PERCENT = re.compile(_NUM + r"\s*%")
_LABELLED = re.compile(r"(?:rating|confidence|score|probability|grade)\s*(?:is|of|:|=)?\s*\**\s*" + _NUM,
                       re.IGNORECASE)
_ANY = re.compile(_NUM)


def _scaled(value: float, top: float, scale: RatingScale) -> float | None:
    result = value / top
    return result if 0.0 <= result <= 1.0 else None


def parse_rating(text: str, scale: RatingScale) -> float | None:
    """The rating in ``text`` mapped to [0, 1], or None (nothing that fits the scale).
    Precedence: "x/10" or "x out of 100", then "N%", then a number after rating /
    confidence / score, then the first number that fits the scale."""
    found = _OUT_OF.search(text)
    if found:
        return _scaled(float(found.group(1)), float(found.group(2)), scale)
    found = _PERCENT.search(text)
    if found:
        return _scaled(float(found.group(1)), 100.0, scale)
    found = _LABELLED.search(text)
    if found:
        return _number(found.group(1), scale)
    for match in _ANY.finditer(text):
        value = _number(match.group(1), scale)
        if value is not None:
            return value
    return None


def _number(raw: str, scale: RatingScale) -> float | None:
    value = float(raw)
    if scale is not RatingScale.PROBABILITY and value <= 1.0 and "." in raw:
        return value  # "0.9" or "Confidence: 0.9" on a 0-10 or percent prompt: a probability
    return _scaled(value, _TOP[scale], scale)


def _render(template: str, question: str, answer: str) -> str:
    return template.replace("{question}", question).replace("{answer}", answer)


@dataclass(frozen=True, slots=True)
class SelfRatingEstimator:
    prompt: str = DEFAULT_RATING_PROMPT
    scale: RatingScale = RatingScale.ZERO_TO_TEN

    @property
    def name(self) -> str:
        return f"self-rating-{self.scale.value}"

    @property
    def requires(self) -> frozenset[Capability]:
        return frozenset({"ask"})

    async def estimate(self, ctx: EstimateContext) -> Estimate:
        if ctx.ask is None:
            raise MissingInputError("self-rating needs a model to ask, and none was given")
        question = next((t.content for t in reversed(ctx.query) if t.role == "user"), "")
        asked = await ctx.ask((Turn("user", _render(self.prompt, question, ctx.candidate.text)),))
        rating = parse_rating(asked.text, self.scale)
        if rating is None:
            return Estimate(0.0, asked.usage, {"parsed": False, "raw": asked.text[:200]})
        return Estimate(rating, asked.usage, {"parsed": True, "rating": rating})
