"""Self-consistency voting with adaptive early stopping.

The tier's own answer is the first vote; more are drawn with ``ctx.sample`` in rounds of
``batch``, never more than ``k`` votes in all. Confidence = the share of votes in the
candidate's answer cluster (so it speaks for the answer the tier returns).

Early stopping (in the spirit of Aggarwal et al. 2023, "Let's Sample Step by Step:
Adaptive-Consistency for Efficient Reasoning", arXiv 2305.11860): after each round, stop when
(a) the remaining votes could no longer change which side of one half the candidate's share
falls on, or (b) under a uniform prior the posterior probability that the candidate's cluster
holds the majority, P(p > 1/2 | Beta(1 + agree, 1 + disagree)), is above ``1 − stop_error``
or below ``stop_error``. At least ``min_samples`` votes are always drawn.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import anyio

from verifiers._normalise import AnswerKind, Embed, group_answers
from verifiers._types import Capability, Estimate, EstimateContext, MissingInputError, Usage


def majority_probability(agree: int, disagree: int) -> float:
    """P(p > 1/2) for p ~ Beta(1 + agree, 1 + disagree), exactly (integer parameters)."""
    a, b = 1 + agree, 1 + disagree
    n = a + b - 1
    below = sum(math.comb(n, j) for j in range(a, n + 1)) / 2**n  # I_{1/2}(a, b)
    return 1.0 - below


def decided(agree: int, disagree: int, remaining: int, stop_error: float = 0.05) -> bool:
    """True when more votes are not worth drawing (the sequential rule above)."""
    total = agree + disagree + remaining
    if 2 * agree > total or 2 * (agree + remaining) <= total:  # the side of 1/2 is fixed
        return True
    p = majority_probability(agree, disagree)
    return p >= 1 - stop_error or p <= stop_error


def vote_confidence(candidate: str, samples: Sequence[str], kind: AnswerKind,
                    embed: Embed | None = None, similarity: float = 0.85) -> tuple[float, dict[str, object]]:
    """Pure: the candidate's share of all votes (candidate included), with the tallies."""
    ids = group_answers([candidate, *samples], kind, embed=embed, similarity=similarity)
    votes = Counter(i for i in ids if i is not None)
    total = len(ids)
    if ids[0] is None:
        return 0.0, {"reason": "no answer could be extracted from the candidate", "votes": total}
    agree = votes[ids[0]]
    top = max(votes.values())
    return agree / total, {
        "votes": total,
        "agree": agree,
        "majority_share": top / total,
        "candidate_agrees_with_majority": agree == top,
        "clusters": len(votes),
    }


@dataclass(frozen=True, slots=True)
class SelfConsistencyEstimator:
    k: int = 5
    kind: AnswerKind = AnswerKind.EXACT
    early_stop: bool = True
    batch: int = 2
    min_samples: int = 3
    similarity: float = 0.85
    stop_error: float = 0.05
    embed: Embed | None = field(default=None, compare=False, hash=False)

    def __post_init__(self) -> None:
        if self.k < 2 or self.batch < 1 or not 1 <= self.min_samples <= self.k:
            raise ValueError("need k >= 2, batch >= 1 and 1 <= min_samples <= k")

    @property
    def name(self) -> str:
        return f"vote-{self.kind.value}@{self.k}"

    @property
    def requires(self) -> frozenset[Capability]:
        return frozenset({"samples"})

    async def _tally(self, candidate: str, texts: list[str]) -> tuple[float, dict[str, object]]:
        """Free text is embedded (CPU work): off the event loop."""
        if self.kind is AnswerKind.TEXT and self.embed is not None:
            return await anyio.to_thread.run_sync(
                lambda: vote_confidence(candidate, texts, self.kind, self.embed, self.similarity))
        return vote_confidence(candidate, texts, self.kind, self.embed, self.similarity)

    async def estimate(self, ctx: EstimateContext) -> Estimate:
        if ctx.sample is None:
            raise MissingInputError("self-consistency needs samples, and this tier cannot draw them")
        texts: list[str] = []
        usage = Usage()
        stopped_early = False
        while 1 + len(texts) < self.k:
            want = min(self.batch, self.k - 1 - len(texts))
            drawn = await ctx.sample(want)
            texts += [c.text for c in drawn.candidates[:want]]
            usage = usage + drawn.usage
            if not drawn.candidates:
                break
            used = 1 + len(texts)
            if self.early_stop and used >= self.min_samples and used < self.k:
                share, tally = await self._tally(ctx.candidate.text, texts)
                agree = int(tally.get("agree", 0))
                if decided(agree, used - agree, self.k - used, self.stop_error):
                    stopped_early = True
                    break
        share, tally = await self._tally(ctx.candidate.text, texts)
        return Estimate(share, usage, {**tally, "samples_used": 1 + len(texts),
                                       "stopped_early": stopped_early, "kind": self.kind.value})
