"""The offline replay benchmark: the real engine on the replay provider, swept over settings
chosen on a train split and measured on a test split.

A *suite* is a policy YAML whose tiers are replay tiers (``cascade/bench/_suites/*.yaml``, or any
user policy), with ``${DATA}`` / ``${SPLIT}`` placeholders, plus a split rule. Every measured
point comes from ``Cascade.run`` over the test queries: what is measured is what ships.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib.resources.abc import Traversable
from pathlib import Path

import numpy as np

from cascade import Cascade, Policy, Tier, load_policy, parse_policy
from cascade._tier import Routing
from cascade.tuning._calibrate import Recorded, record_tier
from cascade.errors import RunError
from cascade.providers import ReplayProvider
from cascade.types import Decision
from verifiers import AnswerKind, CachedEncoder, Estimator

Progress = Callable[[int], None]  # called with the number of queries just finished


@functools.cache
def bench_encoder() -> CachedEncoder:
    """One MiniLM cache per process: every text is encoded once, in batches, whichever
    methods and routers read it (the model loads on first use)."""
    return CachedEncoder()


class SplitRule(enum.Enum):
    FILES = "files"  # ${SPLIT} selects a train and a test file (RouterBench *_train / *_test)
    HALVES = "halves"  # one file: np.random.RandomState(seed).permutation(n), first n // 2 train


@dataclass(frozen=True, slots=True)
class Suite:
    name: str
    policy: Path | Traversable  # a file, or package data (the built-in suites)
    split: SplitRule
    c_max: float | None = None  # the published c_max to compare AIQs under (BASELINES.md)
    seed: int = 0
    complete_only: bool = True  # drop rows where any tier's correctness cell is empty
    files: tuple[Path, Path] | None = None  # (train, test) exported to the policy as ${FILE}
    answer: AnswerKind | None = None  # how answers compare (agreement cascades)


@dataclass(frozen=True, slots=True)
class Query:
    prompt: str
    row: int  # 1-based row of the recorded data


@dataclass(frozen=True, slots=True)
class Side:
    """One split, ready to run: its tiers (live replay providers) and its queries."""

    engine: Cascade
    queries: tuple[Query, ...]

    @property
    def tiers(self) -> tuple[Tier, ...]:
        return self.engine.tiers


@dataclass(slots=True)
class Outcomes:
    """Per-query results of one setting: total cost, quality (0/1 correctness or a graded
    score in [0, 1]; "accuracy" is its mean), tiers called."""

    cost: np.ndarray
    correct: np.ndarray
    reached: np.ndarray  # (queries, tiers) bool

    def point(self) -> tuple[float, float]:
        return float(self.cost.sum()), float(self.correct.mean())

    def escalation(self) -> list[float]:
        """Per tier of the setting: share of the queries reaching it that went on to the next
        (with routing, queries started above a tier never reached it and are not counted)."""
        called = self.reached.sum(axis=0)
        went_on = (self.reached[:, :-1] & self.reached[:, 1:]).sum(axis=0)
        return [float(went_on[j] / called[j]) if called[j] else 0.0
                for j in range(self.reached.shape[1] - 1)]


@dataclass(slots=True)
class Curve:
    name: str
    kind: str
    outcomes: list[Outcomes] = field(default_factory=list)
    settings: list[Mapping[str, object]] = field(default_factory=list)
    points_only: list[tuple[float, float]] = field(default_factory=list)  # analytic methods
    rivals: tuple[str, ...] = ()  # curves this one is compared with, paired (router + cascade)

    def points(self) -> list[tuple[float, float]]:
        return [o.point() for o in self.outcomes] or list(self.points_only)

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-setting, per-query (cost, correct), each of shape (settings, queries)."""
        return np.stack([o.cost for o in self.outcomes]), np.stack([o.correct for o in self.outcomes])


def _policy(suite: Suite, data: Path, split: str) -> Policy:
    env = {"DATA": str(data), "SPLIT": split}
    if suite.files is not None:
        env["FILE"] = str(suite.files[0 if split == "train" else 1])
    if isinstance(suite.policy, Path):
        return load_policy(suite.policy, env=env)
    return parse_policy(suite.policy.read_text(encoding="utf-8"), source=str(suite.policy), env=env)


def _base_dir(suite: Suite) -> Path:
    """Where the suite's relative paths start: its folder (package data in a zip: none)."""
    return suite.policy.parent if isinstance(suite.policy, Path) else Path.cwd()


def open_side(suite: Suite, data: Path, split: str) -> Side:
    """Build the split's engine; its queries are every row (FILES) or its half (HALVES)."""
    file_split = "test" if split == "test" or suite.split is SplitRule.HALVES else "train"
    engine = Cascade.from_policy(_policy(suite, data, file_split), base_dir=_base_dir(suite))
    provider = engine.tiers[0].provider
    if not isinstance(provider, ReplayProvider):
        raise TypeError(f"{suite.policy}: the first tier is not a replay tier")
    rows = provider.table.rows
    numbers = list(range(1, len(rows) + 1))
    if suite.split is SplitRule.HALVES:
        order = np.random.RandomState(suite.seed).permutation(len(rows)) + 1
        half = len(rows) // 2
        numbers = sorted(order[:half] if split == "train" else order[half:])
    if suite.complete_only:
        numbers = [n for n in numbers if _labelled(engine.tiers, n)]
    queries = tuple(Query(rows[n - 1].prompt, int(n)) for n in numbers)
    return Side(engine, queries)


def _labelled(tiers: Sequence[Tier], number: int) -> bool:
    for tier in tiers:
        for model, provider in zip(tier.models, tier.providers):
            if isinstance(provider, ReplayProvider):
                table = provider.table
                if table.record(table.rows[number - 1], model).correct is None:
                    return False
    return True


async def run_setting(tiers: Sequence[Tier], side: Side, progress: Progress | None = None,
                      routing: Routing | None = None) -> Outcomes:
    """Run the engine with these tiers (and routing, if any) over every query of the side."""
    engine = Cascade(tiers, feature=side.engine.feature, routing=routing)
    n, t = len(side.queries), len(tiers)
    cost, correct, reached = np.zeros(n), np.zeros(n), np.zeros((n, t), dtype=bool)
    for i, query in enumerate(side.queries):
        try:
            result = await engine.run(query.prompt, metadata={"replay_row": str(query.row)})
        except RunError as exc:  # every tier failed: paid for what was tried, no answer
            attempts = exc.attempts
            label = False
        else:
            attempts, label = result.attempts, float(result.label or 0.0)
        cost[i] = math.fsum(a.cost for a in attempts)
        correct[i] = label
        for attempt in attempts:
            if attempt.decision is not Decision.SKIP:
                reached[i, attempt.tier] = True
        if progress is not None and (i % 50 == 49 or i == n - 1):
            progress(50 if i % 50 == 49 else (i % 50) + 1)
    return Outcomes(cost, correct, reached)


def alone(tier: Tier) -> Tier:
    """The tier answering unchecked (a single-model baseline)."""
    return dataclasses.replace(tier, estimator=None, threshold=None)


def judged(tier: Tier, estimator: Estimator, threshold: float) -> Tier:
    return dataclasses.replace(tier, estimator=estimator, threshold=threshold)


async def singles(side: Side, progress: Progress | None = None) -> dict[str, Outcomes]:
    return {tier.name: await run_setting([alone(tier)], side, progress) for tier in side.tiers}


def oracle(single: Mapping[str, Outcomes]) -> tuple[float, float]:
    """Per query the cheapest of the models with the highest quality (with 0/1 correctness:
    the cheapest model that is right, or the cheapest model when none is)."""
    cost = np.stack([o.cost for o in single.values()])
    quality = np.stack([o.correct for o in single.values()]).astype(float)
    top = quality.max(axis=0)
    best = np.where(quality >= top - 1e-12, cost, np.inf).min(axis=0)
    return float(best.sum()), float(top.mean())


def oracle_frontier(single: Mapping[str, Outcomes], steps: int = 64) -> list[tuple[float, float]]:
    """RouterBench's oracle curve: per query the model maximising quality − λ·cost (the cheaper
    on ties), for λ swept from 0 (the one-point oracle) to a weight at which the cheapest model
    always wins; one (total cost, mean quality) point per λ."""
    cost = np.stack([o.cost for o in single.values()])  # (models, queries)
    quality = np.stack([o.correct for o in single.values()]).astype(float)
    spread = np.ptp(cost, axis=0)
    top = float(np.max((np.ptp(quality, axis=0) + 1.0) / np.where(spread > 0, spread, np.inf)))
    weights = [0.0] + ([float(w) for w in np.geomspace(top * 1e-4, top * 10, steps - 1)] if top > 0 else [])
    points = []
    columns = np.arange(cost.shape[1])
    for weight in weights:
        utility = quality - weight * cost
        tied = utility >= utility.max(axis=0) - 1e-12
        pick = np.where(tied, cost, np.inf).argmin(axis=0)  # ties: the cheaper model
        points.append((float(cost[pick, columns].sum()), float(quality[pick, columns].mean())))
    return points


async def record_confidences(tier: Tier, estimator: Estimator, side: Side,
                             progress: Progress | None = None) -> Recorded:
    """The tier alone with its estimator over the side's queries (cascade's own recorder)."""
    queries = [(q.prompt, q.row) for q in side.queries]
    return await record_tier(judged(tier, estimator, math.inf), queries, side.engine.feature, progress)
