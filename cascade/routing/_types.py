"""The router plugin: one protocol with one main method, and the context it is given. A router
never produces the answer; it only says where the run starts (``RouteDecision``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from cascade.types import RouteDecision
from verifiers import AskFn

_EMPTY: Mapping[str, str] = {}


@dataclass(frozen=True, slots=True)
class RouteTier:
    """What a router knows of a tier: its name and model."""

    name: str
    model: str


@dataclass(frozen=True, slots=True)
class RouteContext:
    """One request as routers see it. ``text`` is the whole conversation under the documented
    truncation rule (``verifiers.conversation_text``: the last user turn's end, then earlier
    turns newest first while they fit whole); ``ask`` calls the grader model (causal-LLM)."""

    text: str
    tiers: tuple[RouteTier, ...]
    metadata: Mapping[str, str] = field(default_factory=lambda: _EMPTY)
    ask: AskFn | None = None


@runtime_checkable
class Router(Protocol):
    name: str
    default: int  # the safe default tier's index

    async def route(self, ctx: RouteContext) -> RouteDecision: ...
