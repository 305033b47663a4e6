"""The unified decision's look-ahead rule (``DecisionRule.LOOKAHEAD``): an exact expectation
over what the next answers can be, instead of Normal moves of the estimates. Pure Python on
floats (a step is a few hundred tiny evaluations, where numpy's per-call cost would dominate);
no I/O.

A state is the set of called tiers with their answer groups. From a state, calling tier ``j``
has a few outcomes: its answer joins one of the groups already seen, starts a new group, or
gives no answer. Their probabilities come from the current estimates and three statistics of
the training data (``AnswerStats``): with ``π_g`` the probability that group ``g``'s answer is
good (its members' mean estimate, scaled so the groups sum to at most 1) and ``q_j`` tier j's
estimate while waiting,

    P(j joins g) = (1 − none_j) · (π_g · q_j · agree_right + (1 − π_g) · (1 − q_j) · agree_wrong)

(``agree_right``: how often two good answers share a group — 1 for letters and numbers, low
for code; ``agree_wrong``: how often two bad ones do — 1 for a binary choice), a new group takes
the rest and "no answer" ``none_j``. Each outcome leads to a new state whose estimates the
fitted quality models give, so the value of a state is computed backwards over every reachable
state (at most ``max_calls`` answers):

    V(s) = max( max_{i called} q_i ,  max_j  −λ·cost_j + Σ_o P(o) · V(s + (j, o)) )

Stopping returns the called tier with the highest estimate. Unlike valuing a fixed set of
calls, this counts that a later call is made only when the earlier answers leave doubt (a
cheap pair that agrees needs no strong model; one that disagrees does)."""

from __future__ import annotations

import math
from collections.abc import MutableMapping, Sequence
from dataclasses import dataclass

__all__ = ["AnswerStats", "State", "lookahead"]

State = tuple[tuple[int, int | None], ...]  # (tier, group) sorted by tier, groups renumbered
_EPS = 1e-4


@dataclass(frozen=True, slots=True)
class AnswerStats:
    """How answers group, measured on the training data."""

    agree_right: float  # P(two good answers share a group)
    agree_wrong: float  # P(two bad answers share a group)
    no_answer: tuple[float, ...]  # per tier: P(no answer could be extracted)

    def subset(self, idx: Sequence[int]) -> AnswerStats:
        return AnswerStats(self.agree_right, self.agree_wrong, tuple(self.no_answer[i] for i in idx))


def canonical(called: Sequence[int], groups: Sequence[int | None]) -> State:
    relabel: dict[int, int] = {}
    out = []
    for tier, group in sorted(zip(called, groups), key=lambda p: p[0]):
        out.append((tier, None if group is None else relabel.setdefault(group, len(relabel))))
    return tuple(out)


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x > -500 else 0.0


class _Scorer:
    """The fitted quality models for one query's prior, on floats. Mirrors
    ``_unified.called_features`` / ``waiting_features`` (tests check they agree)."""

    def __init__(self, prior: Sequence[float], w_called: Sequence[Sequence[float]],
                 b_called: Sequence[float], w_waiting: Sequence[Sequence[float]],
                 b_waiting: Sequence[float]) -> None:
        clipped = [min(max(float(p), _EPS), 1 - _EPS) for p in prior]
        self.logit = [math.log(p / (1 - p)) for p in clipped]
        self.weight = [min(max(float(p), _EPS), 1.0) for p in prior]
        self.wc, self.bc, self.ww, self.bw = w_called, b_called, w_waiting, b_waiting

    def called(self, state: State) -> dict[int, float]:
        k = len(state)
        total = sum(self.weight[t] for t, _ in state)
        out = {}
        for tier, group in state:
            w = self.wc[tier]
            z = self.bc[tier] + w[0] * self.logit[tier] + (w[5] if group is None else 0.0)
            if k > 1:
                others = total - self.weight[tier]
                agree_n, agree_w = 0, 0.0
                rival: dict[int, float] = {}
                for other, g in state:
                    if other == tier or g is None:
                        continue
                    if group is not None and g == group:
                        agree_n += 1
                        agree_w += self.weight[other]
                    else:
                        rival[g] = rival.get(g, 0.0) + self.weight[other]
                z += w[1] * agree_n / (k - 1) + w[4]
                if others > 0:
                    z += w[2] * agree_w / others + (w[3] * max(rival.values()) / others if rival else 0.0)
            out[tier] = _sigmoid(z)
        return out

    def waiting(self, state: State, tier: int) -> float:
        k = len(state)
        counts: dict[int, int] = {}
        for _, g in state:
            if g is not None:
                counts[g] = counts.get(g, 0) + 1
        share = max(counts.values()) / k if counts else 0.0
        w = self.ww[tier]
        z = self.bw[tier] + w[0] * self.logit[tier] + w[1] * share
        if k:
            z += w[2] + (w[3] * share if k >= 2 else 0.0)
        return _sigmoid(z)


def _groups_good(q: dict[int, float], state: State) -> dict[int, float]:
    """P(group g's answer is good) per group seen: its members' mean estimate, the groups
    scaled to sum to at most 1 (at most one answer is right when answers are unique)."""
    members: dict[int, list[float]] = {}
    for t, g in state:
        if g is not None:
            members.setdefault(g, []).append(q[t])
    good = {g: sum(v) / len(v) for g, v in members.items()}
    total = sum(good.values())
    return {g: v / total for g, v in good.items()} if total > 1 else good


def _outcomes(good: dict[int, float], q_j: float, none: float,
              stats: AnswerStats) -> list[tuple[int | None, float]]:
    """(group, or -1 for a new one, or None for no answer; probability) of calling a tier."""
    out: list[tuple[int | None, float]] = []
    joined = 0.0
    for g, p in good.items():
        share = p * q_j * stats.agree_right + (1 - p) * (1 - q_j) * stats.agree_wrong
        out.append((g, share))
        joined += share
    if joined > 1:
        out = [(g, v / joined) for g, v in out]
        joined = 1.0
    out = [(g, (1 - none) * v) for g, v in out if v > 0]
    if joined < 1:
        out.append((-1, (1 - none) * (1 - joined)))
    if none > 0:
        out.append((None, none))
    return out


def _child(state: State, tier: int, group: int | None) -> State:
    """``state`` with ``tier``'s answer in ``group`` (-1: a new group), canonical."""
    if group == -1:
        group = 1 + max((g for _, g in state if g is not None), default=-1)
    if all(t < tier for t, _ in state):  # appended last: the labels keep their order
        if group is None or group <= max((g for _, g in state if g is not None), default=-1) + 1:
            return (*state, (tier, group))
    return canonical([t for t, _ in state] + [tier], [g for _, g in state] + [group])


def lookahead(scorer: _Scorer, stats: AnswerStats, cost: Sequence[float], state: State,
              allowed: Sequence[bool], max_calls: int, cost_weight: float,
              estimates: MutableMapping[State, dict[int, float]]) -> tuple[int | None, float]:
    """The tier to call next from ``state`` (None: stop) and the state's value.
    ``estimates`` caches the called tiers' estimates per state (reusable across λ)."""
    values: dict[State, tuple[float, int | None]] = {}

    def value(s: State) -> tuple[float, int | None]:
        known = values.get(s)
        if known is not None:
            return known
        q = estimates.get(s) if s else {}
        if q is None:
            q = estimates[s] = scorer.called(s)
        best: tuple[float, int | None] = (max(q.values()), None) if q else (-math.inf, None)
        if len(s) < max_calls:
            seen = {t for t, _ in s}
            good = _groups_good(q, s)
            for j, free in enumerate(allowed):
                if not free or j in seen:
                    continue
                total = -cost_weight * cost[j]
                for group, p in _outcomes(good, scorer.waiting(s, j), stats.no_answer[j], stats):
                    total += p * value(_child(s, j, group))[0]
                if total > best[0] + 1e-12:
                    best = (total, j)
        values[s] = best
        return best

    score, call = value(state)
    return call, score
