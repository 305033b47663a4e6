"""Router input drift: are live queries still like the ones the router was trained on?

The learned router already embeds each query and measures its similarity to the nearest
training query (``RouteDecision.similarity``; below the router's cold-start similarity the
query is a cold start). The detector reuses that number — nothing is embedded twice — and
compares, over a time window, the share of live queries below the cold-start similarity with
the same share on the training set, held out (each training query against the others: by
construction about the router's cold-start quantile). It also reports the population
stability index (PSI) of the similarity distribution over the training set's deciles.

Counting is O(1) per run (``SloMonitor.record_route``, shared through the store like the
runs); the training side is computed once, when the monitor is built, on at most
``sample`` training queries (O(sample × n_train) numpy)."""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from cascade.routing import LearnedRouter

_EPS = 1e-4  # PSI: an empty bin counts as this share


@dataclass(frozen=True, slots=True)
class InputDriftTarget:
    """Alert when the share of ``feature``'s live queries below ``min_similarity`` (to every
    training query) is, with confidence, above ``max_share`` (the training set's held-out
    share ``baseline`` plus a margin). ``edges`` / ``expected``: the PSI bins."""

    feature: str
    min_similarity: float
    baseline: float
    max_share: float
    edges: tuple[float, ...]
    expected: tuple[float, ...]
    window_s: float = 3600.0
    min_queries: int = 50

    def __post_init__(self) -> None:
        if not 0 <= self.baseline < self.max_share < 1:
            raise ValueError(f"input drift: need 0 <= baseline ({self.baseline:.3f}) < "
                             f"max_share ({self.max_share:.3f}) < 1")
        if len(self.expected) != len(self.edges) + 1 or self.window_s <= 0 \
                or self.min_queries < 1:
            raise ValueError("input drift: one expected share per bin, window_s > 0, "
                             "min_queries >= 1")

    @classmethod
    def from_similarities(cls, feature: str, held_out: np.ndarray, min_similarity: float, *,
                          margin: float = 0.1, max_share: float | None = None,
                          window_s: float = 3600.0, min_queries: int = 50,
                          bins: int = 10) -> InputDriftTarget:
        """From the training queries' held-out nearest-neighbour similarities."""
        held_out = np.asarray(held_out, dtype=np.float64)
        if held_out.size == 0:
            raise ValueError("input drift: no training similarities")
        baseline = float(np.mean(held_out < min_similarity))
        edges = tuple(float(e) for e in np.unique(np.quantile(held_out, np.arange(1, bins) / bins)))
        counts = np.bincount([bisect.bisect_right(edges, s) for s in held_out],
                             minlength=len(edges) + 1)
        limit = min(0.99, baseline + margin) if max_share is None else max_share
        return cls(feature, float(min_similarity), baseline, limit, edges,
                   tuple(float(c) for c in counts / counts.sum()), window_s, min_queries)

    @classmethod
    def from_router(cls, feature: str, router: LearnedRouter, *, sample: int = 2000,
                    seed: int = 0, **kw: object) -> InputDriftTarget:
        """From a learned router's training index: at most ``sample`` training queries, each
        against every other one (its own similarity left out)."""
        held_out = held_out_similarities(router.model.index.embeddings, sample, seed)
        threshold = router.min_similarity if router.min_similarity is not None \
            else router.model.min_similarity
        return cls.from_similarities(feature, held_out, threshold, **kw)  # type: ignore[arg-type]

    def bin(self, similarity: float) -> int:
        return bisect.bisect_right(self.edges, similarity)


def held_out_similarities(embeddings: np.ndarray, sample: int = 2000,
                          seed: int = 0) -> np.ndarray:
    """Similarity of (up to ``sample`` of) the rows to their nearest other row."""
    n = embeddings.shape[0]
    if n < 2:
        raise ValueError("input drift: the router has fewer than two training queries")
    rows = np.arange(n) if n <= sample else np.sort(
        np.random.default_rng(seed).choice(n, sample, replace=False))
    out = np.empty(rows.size, dtype=np.float32)
    for start in range(0, rows.size, 512):
        chunk = rows[start:start + 512]
        sims = embeddings[chunk] @ embeddings.T
        sims[np.arange(chunk.size), chunk] = -np.inf
        out[start:start + chunk.size] = sims.max(axis=1)
    return out


def psi(expected: Sequence[float], observed: Sequence[float]) -> float:
    """Population stability index of ``observed`` counts against ``expected`` shares."""
    total = math.fsum(observed)
    if total <= 0:
        return 0.0
    value = 0.0
    for e, o in zip(expected, observed, strict=True):
        p, q = max(o / total, _EPS), max(e, _EPS)
        value += (p - q) * math.log(p / q)
    return value


__all__ = ["InputDriftTarget", "held_out_similarities", "psi"]
