"""A trained router (kNN, MF or BERT) bound to a policy's tiers: predicts P(acceptable) per
tier, applies the thresholds, and sends requests far from the training data (cold start) to
the cold-start tier (by default the safe default). The MiniLM encoder is shared; a router trained on a static encoder embeds
with the table its artifact carries, whatever ``embed`` it is given.

Where it runs: a decision is CPU work, so it runs in a worker thread, except the measured-tiny
case: a static-encoder kNN / MF router with at most ``INLINE_MAX_INDEX`` stored training
embedding values, on a text of at most ``INLINE_MAX_CHARS`` characters, decides on the event
loop (well under a millisecond, while the thread hop alone costs about as much;
docs/routing.md has the measurements)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import anyio
import numpy as np

from cascade.errors import RouterArtifactError
from cascade.routing._models import RouterKind, RouterModel
from cascade.routing._select import RouteRule, start_tier, utility_starts
from cascade.routing._types import RouteContext, RouteTier
from cascade.types import RouteDecision, RouteReason, TierScore
from verifiers._static import StaticEncoder

Embed = Callable[[Sequence[str]], np.ndarray]
INLINE_MAX_INDEX = 1 << 20  # training queries x dimensions: ~4,000 queries at 256 dimensions
INLINE_MAX_CHARS = 2000


def router_embed(model: RouterModel) -> Embed:
    """The embed function a router model must be queried with: the static encoder it was
    trained with (carried in its artifact), else the process's shared MiniLM encoder."""
    static = getattr(model, "static", None)
    if static is not None:
        return static.encode  # type: ignore[no-any-return]
    from verifiers import shared_encoder

    return shared_encoder().encode


def columns_for(model: RouterModel, tiers: Sequence[RouteTier], source: str) -> tuple[int, ...]:
    """Each tier's column in the artifact, by model name; a tier the router was not trained
    for is a ``RouterArtifactError`` (extra artifact models are fine: they are not tiers)."""
    missing = [f"{t.name} ({t.model})" for t in tiers if t.model not in model.models]
    if missing:
        raise RouterArtifactError(
            f"{source}: the router was trained for {', '.join(model.models)}; it knows nothing "
            f"of tier(s) {', '.join(missing)}. Retrain it with these models (cascade train-router "
            "--models ...) or map tiers with routing.router.models")
    return tuple(model.models.index(t.model) for t in tiers)


@dataclass(frozen=True, slots=True)
class LearnedRouter:
    model: RouterModel
    columns: tuple[int, ...]  # artifact column of each tier, in tier order
    thresholds: tuple[float, ...]  # per tier
    default: int
    embed: Embed
    min_similarity: float | None  # None: cold-start detection off
    rule: RouteRule = RouteRule.THRESHOLD
    cost_weight: float = 0.0  # utility rule only
    inline: bool | None = None  # decide on the event loop; None: the measured rule (module doc)
    cold_start_tier: int | None = None  # where cold starts go; None: ``default``
    _costs: tuple[float | None, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_costs", tuple(self.model.expected_cost[c] for c in self.columns))
        if self.rule is RouteRule.UTILITY and any(c is None for c in self.costs):
            raise RouterArtifactError("the utility rule needs each tier's expected cost, and this "
                                      "router was trained on data without costs: use the threshold rule")
        static = getattr(self.model, "static", None)
        if static is not None:  # embed as trained, whatever the caller passed
            object.__setattr__(self, "embed", static.encode)
        elif isinstance(getattr(self.embed, "__self__", None), StaticEncoder):
            raise RouterArtifactError("this router was trained on MiniLM embeddings; it cannot be "
                                      "queried with a static encoder's")
        if self.inline is None:
            tiny = (static is not None and self.model.kind in (RouterKind.KNN, RouterKind.MF, RouterKind.KNN_MF)
                    and self.model.index.embeddings.size <= INLINE_MAX_INDEX)
            object.__setattr__(self, "inline", tiny)

    @property
    def costs(self) -> tuple[float | None, ...]:
        """Each tier's expected cost per call (the model's, for the tier's column)."""
        return self._costs

    @property
    def name(self) -> str:
        return self.model.kind.value

    def predict(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(P(acceptable) per tier in tier order, similarity to the nearest training query)."""
        embeddings = self.embed(list(texts))
        width = self.model.index.embeddings.shape[1]
        if embeddings.ndim != 2 or embeddings.shape[1] != width:
            raise RouterArtifactError(f"the router was trained on {width}-dimensional embeddings, "
                                      f"its embed function gives shape {embeddings.shape}")
        p = self.model.predict(texts, embeddings)[:, list(self.columns)]
        return p, self.model.index.nearest(embeddings)

    def decide(self, text: str, tiers: Sequence[RouteTier]) -> RouteDecision:
        p, similarity = self.predict([text])
        scores = tuple(TierScore(t.name, float(v), c) for t, v, c in zip(tiers, p[0], self.costs))
        sim = float(similarity[0])
        if self.min_similarity is not None and sim < self.min_similarity:
            cold = self.default if self.cold_start_tier is None else self.cold_start_tier
            return RouteDecision(cold, tiers[cold].name, RouteReason.COLD_START,
                                 self.name, scores, sim,
                                 f"similarity {sim:.3f} < {self.min_similarity:.3f}")
        if self.rule is RouteRule.UTILITY:
            start = int(utility_starts(p, [float(c or 0.0) for c in self.costs], self.cost_weight)[0])
        else:
            start = start_tier(p[0], self.thresholds)
        if start is None:
            return RouteDecision(self.default, tiers[self.default].name, RouteReason.DEFAULT,
                                 self.name, scores, sim, "no tier passed its threshold")
        return RouteDecision(start, tiers[start].name, RouteReason.PREDICTED, self.name, scores, sim)

    async def route(self, ctx: RouteContext) -> RouteDecision:
        if self.inline and len(ctx.text) <= INLINE_MAX_CHARS:
            return self.decide(ctx.text, ctx.tiers)
        return await anyio.to_thread.run_sync(self.decide, ctx.text, ctx.tiers)
