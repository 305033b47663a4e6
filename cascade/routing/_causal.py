"""A small local causal LM grades the request's difficulty; each grade names a start tier.
An unparseable reply, or a grader that fails, sends the request to the safe default."""

from __future__ import annotations

import re
from dataclasses import dataclass

from cascade.routing._types import RouteContext
from cascade.types import RouteDecision, RouteReason
from verifiers import Turn

DEFAULT_GRADER_PROMPT = (
    "Rate how hard the following request is for an AI assistant to answer correctly, on a "
    "scale from 1 (trivial) to {levels} (very hard). Reply with the number only.\n\n"
    "Request:\n{query}\n\nDifficulty (1-{levels}):"
)
_NUMBER = re.compile(r"(?<![\d.])(\d{1,2})(?!\.?\d)")


def parse_grade(reply: str, levels: int) -> int | None:
    """The first whole number in 1..levels in the reply (e.g. 'Difficulty: 3/5' -> 3)."""
    for match in _NUMBER.finditer(reply):
        grade = int(match.group(1))
        if 1 <= grade <= levels:
            return grade
    return None


@dataclass(frozen=True, slots=True)
class CausalLLMRouter:
    starts: tuple[int, ...]  # start tier index for grade 1, 2, ...
    default: int
    prompt: str = DEFAULT_GRADER_PROMPT
    name: str = "causal_llm"

    async def route(self, ctx: RouteContext) -> RouteDecision:
        if ctx.ask is None:
            return self._fallback(ctx, "no grader model configured", 0.0)
        text = self.prompt.replace("{levels}", str(len(self.starts))).replace("{query}", ctx.text)
        asked = await ctx.ask((Turn("user", text),))
        grade = parse_grade(asked.text, len(self.starts))
        if grade is None:
            return self._fallback(ctx, f"unparseable grade {asked.text[:80]!r}", asked.usage.cost)
        start = self.starts[grade - 1]
        return RouteDecision(start, ctx.tiers[start].name, RouteReason.PREDICTED, self.name,
                             detail=f"grade {grade}", cost=asked.usage.cost)

    def _fallback(self, ctx: RouteContext, why: str, cost: float) -> RouteDecision:
        return RouteDecision(self.default, ctx.tiers[self.default].name, RouteReason.FAILED,
                             self.name, detail=why, cost=cost)
