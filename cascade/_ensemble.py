"""One tier's model call: a single model, or an ensemble whose members run concurrently.

Every call goes through the seam (``cascade.resilience.call_model``: deployments, breakers,
retries, budgets; each try under the tier's timeout). A member that fails is recorded and the
tier decides on the answers it has (the consensus picks one). Only when no member answers does
the tier fail, with the first member's error. Every member's cost counts.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import anyio

from cascade._tier import Member, Tier
from cascade.errors import ProviderError
from cascade.resilience import RunScope, call_model
from cascade.types import CallPurpose, Completion, MemberAnswer, Request
from verifiers import Peer

Clock = Callable[[], float]


@dataclass(frozen=True, slots=True)
class Called:
    """What a tier's call produced: its answer, which model gave it, the total cost and
    tokens of every model called, and each member's record (ensembles)."""

    completion: Completion
    source: str  # the model (as the policy names it) whose answer is the tier's
    cost: float
    input_tokens: int
    output_tokens: int
    members: tuple[MemberAnswer, ...] = ()

    def peers(self, tier: str, *, earlier: bool) -> tuple[Peer, ...]:
        """The answers of this call as evidence: for the tier's own estimator the members
        other than the chosen one; for later tiers (``earlier``) every answer."""
        if not self.members:
            return (Peer(self.source, self.completion.text, True, tier),) if earlier else ()
        return tuple(Peer(m.source, m.answer, earlier, tier) for m in self.members
                     if earlier or not m.chosen)


def paid(members: Sequence[MemberAnswer]) -> tuple[float, tuple[int, int]]:
    """What an ensemble's calls cost: every member's, answered or not."""
    return (math.fsum(m.cost for m in members),
            (sum(m.input_tokens for m in members), sum(m.output_tokens for m in members)))


def with_answer_chosen(members: tuple[MemberAnswer, ...]) -> tuple[MemberAnswer, ...]:
    """The members as they are if one is chosen; else (a deadline cut the ensemble short)
    with the first that answered marked chosen."""
    if any(m.chosen for m in members):
        return members
    first = next((i for i, m in enumerate(members) if m.answer is not None), None)
    return tuple(replace(m, chosen=(i == first)) for i, m in enumerate(members))


async def call_tier(tier: Tier, request: Request, clock: Clock, done: list[MemberAnswer],
                    scope: RunScope, *, last: bool = False) -> Called:
    """Call the tier's model(s). ``done`` receives each member's record as it finishes, so a
    run deadline that cuts the tier short still counts what was paid for. ``last``: nothing
    to escalate to, so wait for a cooling-down deployment if the deadline allows."""
    if tier.members:
        return await _ensemble(tier, request, clock, done, scope)
    completion = await call_model(scope, tier.target, tier.call_for(request), CallPurpose.TIER,
                                  patient=last)
    return Called(completion, tier.model, tier.cost_of(completion), completion.input_tokens,
                  completion.output_tokens)


async def _member(tier: Tier, member: Member, request: Request, clock: Clock, scope: RunScope
                  ) -> tuple[MemberAnswer, Completion | None, ProviderError | None]:
    started = clock()
    call = replace(tier.call_for(request), model=member.model)
    try:
        completion = await call_model(scope, member.target(tier.timeout_s), call,
                                      CallPurpose.MEMBER)
    except ProviderError as exc:
        error = exc
    else:
        record = MemberAnswer(member.model, completion.text, member.cost_of(completion),
                              completion.input_tokens, completion.output_tokens,
                              clock() - started, label=completion.choices[0].label, name=member.name)
        return record, completion, None
    record = MemberAnswer(member.model, None, latency_s=clock() - started,
                          error=f"{type(error).__name__}: {error}", name=member.name)
    return record, None, error


async def _ensemble(tier: Tier, request: Request, clock: Clock, done: list[MemberAnswer],
                    scope: RunScope) -> Called:
    results: list[tuple[MemberAnswer, Completion | None, ProviderError | None] | None] = \
        [None] * len(tier.members)

    async def run(i: int) -> None:
        results[i] = outcome = await _member(tier, tier.members[i], request, clock, scope)
        done.append(outcome[0])

    async with anyio.create_task_group() as group:
        for i in range(len(tier.members)):
            group.start_soon(run, i)
    finished = [r for r in results if r is not None]
    answered = [i for i, (_, completion, _) in enumerate(finished) if completion is not None]
    if not answered:
        raise next(error for _, _, error in finished if error is not None)
    assert tier.consensus is not None  # guaranteed by Tier.__post_init__
    texts = [finished[i][0].answer for i in answered]
    pick = answered[await tier.consensus.choose(texts, [finished[i][0].source for i in answered],
                                                 request.metadata)]
    members = tuple(replace(r, chosen=(i == pick)) for i, (r, _, _) in enumerate(finished))
    completion = finished[pick][1]
    assert completion is not None
    cost, (input_tokens, output_tokens) = paid(members)
    return Called(completion, members[pick].source, cost, input_tokens, output_tokens, members)
