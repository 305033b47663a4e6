"""Which cheap models to pair, and the thresholds, chosen on labelled answers (pure numpy).

A *plan* is a cascade of at most three tiers: an ensemble of cheap models (their consensus is
the answer; agreement is its confidence), optionally one middle model judged by its agreement
with the ensemble's answers, and a last model that always answers. ``search`` learns agreement
weights for every candidate plan (out-of-fold confidences, so a plan is judged on rows its
weights did not see), simulates every threshold pair, and returns each plan's operating points.
``pick`` applies a quality or cost target; ``frontier`` keeps the points on the cost–accuracy
hull (the benchmark measures those on the test split).
"""

from __future__ import annotations

import enum
import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from verifiers._agreement import (
    AGREE,
    DISAGREE,
    AgreementModel,
    agreement_matrix,
    consensus,
    fit_features,
)
from verifiers._calibrate import CalibrationError, good, simulate_cascade
from verifiers._normalise import AnswerKind, Embed
from verifiers._trained import TrainingDataError


@dataclass(frozen=True, slots=True)
class AnswerSet:
    """Every model's answer to the same labelled queries: ``texts[m][q]`` (None: no answer),
    ``correct`` (quality in [0, 1]: 0/1 correctness or a graded score) and ``cost`` of shape
    (queries, models)."""

    models: tuple[str, ...]
    texts: tuple[tuple[str | None, ...], ...]
    correct: np.ndarray
    cost: np.ndarray

    def __post_init__(self) -> None:
        n, m = self.correct.shape
        if m != len(self.models) or self.cost.shape != (n, m) or len(self.texts) != m \
                or any(len(t) != n for t in self.texts):
            raise ValueError("texts, correct and cost must cover the same queries and models")
        if n == 0:
            raise CalibrationError("no labelled queries")


@dataclass(frozen=True, slots=True)
class Plan:
    """A cascade shape: ensemble members, an optional middle model, the last model (indices
    into ``AnswerSet.models``)."""

    ensemble: tuple[int, ...]  # empty: the last model alone
    middle: int | None
    last: int

    @property
    def single(self) -> bool:
        return not self.ensemble


@dataclass(frozen=True, slots=True)
class Learned:
    """A plan with its learned agreement models (fitted on all rows), the consensus weights of
    the ensemble members, and per-tier out-of-fold confidences, correctness and cost."""

    plan: Plan
    models: tuple[AgreementModel, ...]  # one per judged tier (ensemble, middle)
    weights: tuple[float, ...]  # consensus weight per ensemble member (its accuracy here)
    confidence: tuple[np.ndarray, ...]
    correct: tuple[np.ndarray, ...]
    cost: tuple[np.ndarray, ...]


@dataclass(frozen=True, slots=True)
class Point:
    """One operating point: a plan with thresholds (per judged tier) and what it did."""

    learned: Learned
    thresholds: tuple[float, ...]
    cost: float  # total over the queries
    accuracy: float
    escalation: tuple[float, ...]


class Goal(str, enum.Enum):
    QUALITY = "quality"  # the cheapest point reaching this share of the best model's accuracy
    COST = "cost"  # the most accurate point within this share of the most accurate model's cost


def matrices(answers: AnswerSet, kind: AnswerKind, *, embed: Embed | None = None,
             similarity: float = 0.85) -> np.ndarray:
    """(queries, models, models) pairwise agreement. Free text is embedded once, in a batch."""
    lookup: Embed | None = None
    if kind is AnswerKind.TEXT and embed is not None:
        texts = sorted({t for column in answers.texts for t in column if t is not None})
        table = dict(zip(texts, np.asarray(embed(texts), dtype=float))) if texts else {}
        lookup = lambda batch: np.stack([table[t] for t in batch])  # noqa: E731
    n = answers.correct.shape[0]
    return np.stack([agreement_matrix([column[q] for column in answers.texts], kind,
                                      embed=lookup, similarity=similarity) for q in range(n)])


def features(agree: np.ndarray, candidate: np.ndarray, sources: Sequence[int]) -> np.ndarray:
    """Rows of ``AgreementModel.features`` for every query at once: ``candidate[q]`` is the
    model whose answer is judged, ``sources`` the model indices the agreement model knows;
    a source's own answer is not evidence for itself."""
    n = len(candidate)
    src = np.asarray(sources)
    row = agree[np.arange(n), candidate][:, src]  # (queries, sources): each source vs the candidate
    other = src[None, :] != candidate[:, None]
    return np.concatenate([(~other).astype(float), ((row == AGREE) & other).astype(float),
                           ((row == DISAGREE) & other).astype(float)], axis=1)


def consensus_choice(agree: np.ndarray, members: Sequence[int], weights: Sequence[float]) -> np.ndarray:
    """Per query, the model index an ensemble of ``members`` returns (``consensus``)."""
    index = np.ix_(members, members)
    return np.array([members[consensus(agree[q][index], weights)] for q in range(agree.shape[0])])


@dataclass(frozen=True, slots=True)
class _Judged:
    model: AgreementModel
    confidence: np.ndarray
    correct: np.ndarray
    cost: np.ndarray


def _judge(answers: AnswerSet, agree: np.ndarray, candidate: np.ndarray, sources: Sequence[int],
           kind: AnswerKind, cost: np.ndarray, seed: int) -> _Judged:
    n = len(candidate)
    x = features(agree, candidate, sources)
    quality = answers.correct[np.arange(n), candidate].astype(float)
    y = good(quality).astype(int)  # the agreement model predicts "good"; simulations use quality
    model, confidence = fit_features(x, y, [answers.models[j] for j in sources], kind, seed=seed)
    return _Judged(model, confidence, quality, cost)


def learn(answers: AnswerSet, agree: np.ndarray, plan: Plan, kind: AnswerKind, seed: int = 0,
          cache: dict[tuple[int, ...], tuple[tuple[float, ...], _Judged]] | None = None) -> Learned:
    """Fit the plan's agreement models; raises ``TrainingDataError`` when a tier's candidates
    are all right or all wrong here. ``cache`` shares the ensemble tier between plans."""
    n = answers.correct.shape[0]
    members = plan.ensemble
    known = None if cache is None else cache.get(members)
    if known is None:
        accuracy = answers.correct.mean(axis=0)
        weights = tuple(float(accuracy[j]) for j in members)
        chosen = consensus_choice(agree, members, weights)
        known = (weights, _judge(answers, agree, chosen, members, kind,
                                 answers.cost[:, list(members)].sum(axis=1), seed))
        if cache is not None:
            cache[members] = known
    weights, first = known
    judged = [first]
    if plan.middle is not None:
        mid = plan.middle
        judged.append(_judge(answers, agree, np.full(n, mid), (mid, *members), kind,
                             answers.cost[:, mid], seed))
    return Learned(plan, tuple(j.model for j in judged), weights,
                   tuple(j.confidence for j in judged),
                   (*(j.correct for j in judged), answers.correct[:, plan.last]),
                   (*(j.cost for j in judged), answers.cost[:, plan.last]))


def _grid(confidence: np.ndarray, size: int) -> list[float]:
    """'Always accept' (0: a confidence below every training one is still accepted), the
    distinct confidences (or their quantiles) above the minimum, and 'never accept'."""
    values = np.unique(confidence)
    if len(values) > size:
        values = np.unique(np.quantile(confidence, np.linspace(0, 1, size)))
    return [0.0] + [float(v) for v in values[1:] if v > 0.0] + [math.inf]


def points(learned: Learned, grid: int = 12) -> list[Point]:
    """Every threshold combination of the plan (quantile grids of its confidences)."""
    out = []
    grids = [_grid(c, grid) for c in learned.confidence]
    for thresholds in itertools.product(*grids):
        spent, right, escalation = simulate_cascade(thresholds, learned.confidence,
                                                    learned.correct, learned.cost)
        out.append(Point(learned, tuple(thresholds), float(spent.sum()), float(right.mean()),
                         tuple(escalation)))
    return out


def plans(answers: AnswerSet, *, pool: int = 6, sizes: Sequence[int] = (2, 3),
          last: int | None = None, middles: bool = True) -> list[Plan]:
    """Candidate plans: ensembles from the ``pool`` cheapest models, an optional middle model
    from the rest (cheaper than the last), and the last model (default: the most accurate,
    the cheaper on ties)."""
    total = answers.cost.sum(axis=0)
    accuracy = answers.correct.mean(axis=0)
    if last is None:
        last = max(range(len(total)), key=lambda j: (accuracy[j], -total[j]))
    order = [j for j in np.argsort(total, kind="stable").tolist() if j != last]
    out = []
    for size in sizes:
        for ensemble in itertools.combinations(order[:pool], size):
            out.append(Plan(tuple(ensemble), None, last))
            if middles:
                out += [Plan(tuple(ensemble), j, last) for j in order
                        if j not in ensemble and total[j] < total[last]]
    return out


def alone(answers: AnswerSet, model: int) -> Point:
    """One model answering every query unchecked (a plan without an ensemble)."""
    correct, cost = answers.correct[:, model], answers.cost[:, model]
    learned = Learned(Plan((), None, model), (), (), (), (correct,), (cost,))
    return Point(learned, (), float(cost.sum()), float(correct.mean()), ())


def search(answers: AnswerSet, kind: AnswerKind, *, agree: np.ndarray | None = None,
           candidates: Sequence[Plan] | None = None, grid: int = 12, seed: int = 0,
           progress: Callable[[int], None] | None = None, singles: bool = True) -> list[Point]:
    """Every candidate plan's operating points (plans that cannot be learned here are left
    out), and with ``singles`` every model alone."""
    agree = matrices(answers, kind) if agree is None else agree
    out: list[Point] = [alone(answers, j) for j in range(len(answers.models))] if singles else []
    cache: dict[tuple[int, ...], tuple[tuple[float, ...], _Judged]] = {}
    for plan in candidates if candidates is not None else plans(answers):
        try:
            learned = learn(answers, agree, plan, kind, seed, cache)
        except TrainingDataError:
            continue
        out += points(learned, grid)
        if progress is not None:
            progress(1)
    if not out:
        raise CalibrationError("no plan could be learned: every candidate answer is always right "
                               "or always wrong on this data")
    return out


def pick(found: Sequence[Point], goal: Goal, value: float, answers: AnswerSet) -> Point:
    """The point meeting the target: QUALITY — the cheapest with accuracy ≥ value × the best
    single model's; COST — the most accurate with cost ≤ value × the most accurate model's."""
    accuracy = answers.correct.mean(axis=0)
    total = answers.cost.sum(axis=0)
    best = max(range(len(accuracy)), key=lambda j: (accuracy[j], -total[j]))
    if goal is Goal.QUALITY:
        ok = [p for p in found if p.accuracy >= value * accuracy[best] - 1e-12]
        if not ok:
            raise CalibrationError(f"no plan reaches {value:g} × the best model's accuracy "
                                   f"({accuracy[best]:.4f}) on this data")
        return min(ok, key=lambda p: (p.cost, -p.accuracy))
    ok = [p for p in found if p.cost <= value * total[best] + 1e-12]
    if not ok:
        raise CalibrationError(f"no plan costs at most {value:g} × the most accurate model's cost")
    return max(ok, key=lambda p: (p.accuracy, -p.cost))


def frontier(found: Sequence[Point], keep: int = 24) -> list[Point]:
    """The points on the non-decreasing convex hull of (cost, accuracy), at most ``keep`` of
    them spread along it."""
    ordered = sorted(found, key=lambda p: (p.cost, -p.accuracy))
    hull: list[Point] = []
    for point in ordered:
        if hull and point.accuracy <= hull[-1].accuracy:
            continue
        while len(hull) >= 2 and _turns_up(hull[-2], hull[-1], point):
            hull.pop()
        hull.append(point)
    if len(hull) <= keep:
        return hull
    index = np.unique(np.linspace(0, len(hull) - 1, keep).round().astype(int))
    return [hull[i] for i in index]


def _turns_up(a: Point, b: Point, c: Point) -> bool:
    """True when b lies on or below the segment a–c (b is not a hull vertex)."""
    return (b.cost - a.cost) * (c.accuracy - a.accuracy) - (b.accuracy - a.accuracy) * (c.cost - a.cost) >= 0
