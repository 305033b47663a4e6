"""Rules declared in the policy: the first rule whose every condition holds names the start
tier; when none matches, the safe default. Pure and cheap: runs on the event loop."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from cascade.routing._types import RouteContext
from cascade.types import RouteDecision, RouteReason

_EMPTY: Mapping[str, str] = {}


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    start: int
    min_chars: int | None = None
    max_chars: int | None = None
    keywords: tuple[str, ...] = ()  # any of them, case-insensitive
    pattern: re.Pattern[str] | None = None
    metadata: Mapping[str, str] = field(default_factory=lambda: _EMPTY)  # all must equal

    def matches(self, text: str, metadata: Mapping[str, str]) -> bool:
        if self.min_chars is not None and len(text) < self.min_chars:
            return False
        if self.max_chars is not None and len(text) > self.max_chars:
            return False
        lowered = text.lower()
        if self.keywords and not any(k.lower() in lowered for k in self.keywords):
            return False
        if self.pattern is not None and self.pattern.search(text) is None:
            return False
        return all(metadata.get(k) == v for k, v in self.metadata.items())


@dataclass(frozen=True, slots=True)
class RulesRouter:
    rules: tuple[Rule, ...]
    default: int
    name: str = "rules"

    def decide(self, ctx: RouteContext) -> RouteDecision:
        for rule in self.rules:
            if rule.matches(ctx.text, ctx.metadata):
                return RouteDecision(rule.start, ctx.tiers[rule.start].name, RouteReason.RULE,
                                     self.name, detail=rule.name)
        return RouteDecision(self.default, ctx.tiers[self.default].name, RouteReason.DEFAULT,
                             self.name, detail="no rule matched")

    async def route(self, ctx: RouteContext) -> RouteDecision:
        return self.decide(ctx)
