"""``cascade search-ensemble``: which cheap models to pair at tier 1 (and the thresholds),
chosen on labelled recorded answers.

Every one-model tier of the policy answers the data's queries alone through the real engine
(its provider swapped for a replay of ``--data``), which gives each model's answer, recorded
correctness and cost per query. The plan search is pure (``verifiers._agreement_search``).
The chosen plan is written as a new policy: an ensemble tier, an optional middle tier, the
last tier — the tiers' own settings (providers with their ``${ENV}`` placeholders, prices)
copied from the source policy text — plus the learned agreement weights as artifacts.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from cascade._tier import Member, Tier
from cascade.engine import Cascade
from cascade.errors import ConfigError, PolicyError, PolicyIssue, RunError
from cascade.policy import Policy
from verifiers import AgreementEstimator, AnswerKind, AnswerSet, Goal, Point

Progress = Callable[[int], None]


@dataclass(frozen=True, slots=True)
class SearchTarget:
    goal: Goal
    value: float

    @classmethod
    def parse(cls, text: str) -> SearchTarget:
        """``quality=0.99`` (share of the best model's accuracy) or ``cost=0.3`` (share of the
        most accurate model's cost)."""
        name, _, value = text.partition("=")
        try:
            goal, number = Goal(name.strip()), float(value)
        except ValueError:
            raise ConfigError(f"target {text!r}: expected quality=Q or cost=C") from None
        if not 0 < number <= 1.5:
            raise ConfigError(f"target {text!r}: value out of range (0, 1.5]")
        return cls(goal, number)


async def collect(tiers: Sequence[Tier], queries: Sequence[tuple[str, int]], feature: str = "search",
                  progress: Progress | None = None) -> AnswerSet:
    """Each one-model tier alone, unchecked, on every (prompt, data row): its answer text,
    the recorded correctness and what the call cost."""
    n = len(queries)
    texts, correct, cost = [], np.zeros((n, len(tiers))), np.zeros((n, len(tiers)))
    for j, tier in enumerate(tiers):
        engine = Cascade([dataclasses.replace(tier, estimator=None, threshold=None)], feature=feature)
        column: list[str | None] = []
        for i, (prompt, row) in enumerate(queries):
            try:
                result = await engine.run(prompt, metadata={"replay_row": str(row)})
            except RunError as exc:
                column.append(None)
                cost[i, j] = math.fsum(a.cost for a in exc.attempts)
                continue
            column.append(result.answer)
            correct[i, j] = result.label or 0.0  # quality: 0/1 or graded
            cost[i, j] = result.cost
        texts.append(tuple(column))
        if progress is not None:
            progress(n)
    return AnswerSet(tuple(t.model for t in tiers), tuple(texts), correct, cost)


def estimators(point: Point, kind: AnswerKind) -> tuple[AgreementEstimator, ...]:
    """The plan's agreement estimators (ensemble tier, then the middle tier if any)."""
    learned, plan = point.learned, point.learned.plan
    names = [model.sources for model in learned.models]
    weights = dict(zip(names[0], learned.weights)) if names else {}
    out = [AgreementEstimator(kind, len(plan.ensemble), True, weights, learned.models[0])]
    if plan.middle is not None:
        out.append(AgreementEstimator(kind, 1 + len(plan.ensemble), True, {}, learned.models[1]))
    return tuple(out)


def plan_tiers(point: Point, tiers: Sequence[Tier], kind: AnswerKind) -> list[Tier]:
    """The plan as live tiers, built from one-model ``tiers`` (indexed as the AnswerSet)."""
    plan = point.learned.plan
    last = dataclasses.replace(tiers[plan.last], estimator=None, threshold=None)
    if plan.single:
        return [last]
    judged = estimators(point, kind)
    members = tuple(Member(tiers[j].model, tiers[j].provider, tiers[j].price) for j in plan.ensemble)
    first = tiers[plan.ensemble[0]]
    ensemble = dataclasses.replace(
        first, name="ensemble", model="+".join(m.model for m in members), members=members,
        consensus=judged[0], estimator=judged[0], threshold=point.thresholds[0])
    out = [ensemble]
    if plan.middle is not None:
        out.append(dataclasses.replace(tiers[plan.middle], estimator=judged[1],
                                       threshold=point.thresholds[1]))
    return out + [last]


# --- writing the chosen plan as a policy ---------------------------------------------------------


def _raw_tiers(source: Path) -> list[dict[str, Any]]:
    """The tiers as written (``${ENV}`` placeholders kept: secrets are never expanded into
    the new file)."""
    try:
        raw = yaml.safe_load(source.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise PolicyError(str(source), [PolicyIssue("", None, f"not valid YAML: {exc}")]) from None
    return list(raw["tiers"])


def _threshold(value: float) -> float | str:
    """Exactly as chosen (rounding up would refuse the confidences equal to it)."""
    return "never" if value > 1 else float(min(1.0, value))


def plan_policy(point: Point, policy: Policy, source: Path, out: Path, kind: AnswerKind,
                names: Sequence[str]) -> Path:
    """Write the plan as a policy YAML at ``out`` with its agreement artifacts beside it
    (``<out stem>.agreement/<tier>``); ``names`` are the tier names indexed as the AnswerSet."""
    plan, learned = point.learned.plan, point.learned
    raw = {t["name"]: t for t in _raw_tiers(source)}
    folder = out.parent / f"{out.stem}.agreement"
    tiers: list[dict[str, Any]] = []
    judged = estimators(point, kind) if not plan.single else ()
    if not plan.single:
        base = raw[names[plan.ensemble[0]]]
        members: list[Any] = []
        for j in plan.ensemble:
            spec = raw[names[j]]
            same = spec["provider"] == base["provider"] and spec.get("price") == base.get("price")
            members.append(spec["model"] if same else {k: spec[k] for k in ("model", "provider", "price") if k in spec})
        learned.models[0].save(folder / "ensemble")
        tiers.append({"name": "ensemble", "models": members,
                      **{k: v for k, v in base.items() if k not in ("name", "model", "estimator", "threshold")},
                      "estimator": {"kind": "agreement", "answer": kind.value,
                                    "min_members": judged[0].min_members,
                                    "weights": {k: round(v, 6) for k, v in judged[0].weights.items()},
                                    "artifact": f"{folder.name}/ensemble"},
                      "threshold": _threshold(point.thresholds[0])})
        if plan.middle is not None:
            name = names[plan.middle]
            learned.models[1].save(folder / name)
            tiers.append({**raw[name], "estimator": {
                "kind": "agreement", "answer": kind.value, "min_members": judged[1].min_members,
                "artifact": f"{folder.name}/{name}"}, "threshold": _threshold(point.thresholds[1])})
    tiers.append({k: v for k, v in raw[names[plan.last]].items() if k not in ("estimator", "threshold")})
    document = {"feature": f"{policy.feature or source.stem}-ensemble",
                "description": "written by cascade search-ensemble", "tiers": tiers}
    if policy.deadline_s is not None:
        document["deadline_s"] = policy.deadline_s
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=4096), encoding="utf-8")
    return out


def describe(point: Point, names: Sequence[str]) -> Mapping[str, object]:
    plan = point.learned.plan
    return {"ensemble": [names[j] for j in plan.ensemble],
            "middle": None if plan.middle is None else names[plan.middle],
            "last": names[plan.last], "thresholds": [_threshold(t) for t in point.thresholds],
            "cost": point.cost, "accuracy": point.accuracy, "escalation": list(point.escalation)}


@dataclass(frozen=True, slots=True)
class SearchResult:
    chosen: Point
    alternatives: tuple[Point, ...]  # other plans meeting the target, best first
    names: tuple[str, ...]  # tier names, indexed as the AnswerSet
    answers: AnswerSet
    written: Path | None


async def search_ensemble(policy: Policy, source: Path, data: Path, target: SearchTarget,
                          kind: AnswerKind, out: Path | None, *, pool: int = 6,
                          sizes: Sequence[int] = (2, 3), middles: bool = True) -> SearchResult:
    """Collect every one-model tier's answers on ``data``, search the plans, pick by target,
    and (with ``out``) write the chosen plan as a policy."""
    import anyio

    from cascade.tuning._calibrate import replayed_policy
    from cascade.providers import ReplayProvider
    from verifiers import pick, search
    from verifiers._agreement_search import plans

    singles = [t for t in policy.tiers if not t.models]
    if len(singles) < 3:
        raise ConfigError("search-ensemble needs at least three one-model tiers to choose from")
    replay = replayed_policy(policy.model_copy(update={"tiers": tuple(singles), "routing": None}), data)
    async with Cascade.from_policy(replay, base_dir=source.parent) as engine:
        provider = engine.tiers[0].provider
        assert isinstance(provider, ReplayProvider)
        table = provider.table
        queries = [(row.prompt, i) for i, row in enumerate(table.rows, 1)
                   if all(table.record(row, t.model).correct is not None for t in engine.tiers)]
        if len(queries) < 20:
            raise ConfigError(f"{data}: {len(queries)} rows have a label for every tier; need 20")
        answers = await collect(engine.tiers, queries)
    candidates = plans(answers, pool=pool, sizes=sizes, middles=middles)
    found = await anyio.to_thread.run_sync(lambda: search(answers, kind, candidates=candidates))
    chosen = pick(found, target.goal, target.value, answers)
    names = tuple(t.name for t in singles)
    def rank(p: Point) -> tuple[float, float]:
        return (p.cost, -p.accuracy) if target.goal is Goal.QUALITY else (-p.accuracy, p.cost)

    best_of: dict[object, Point] = {}
    for p in sorted((p for p in found if _meets(p, target, answers)), key=rank, reverse=True):
        best_of[p.learned.plan] = p  # the best point of each plan wins (sorted worst first)
    others = sorted((p for plan, p in best_of.items() if plan != chosen.learned.plan), key=rank)
    written = plan_policy(chosen, policy, source, out, kind, names) if out is not None else None
    return SearchResult(chosen, tuple(others[:5]), names, answers, written)


def _meets(point: Point, target: SearchTarget, answers: AnswerSet) -> bool:
    accuracy, total = answers.correct.mean(axis=0), answers.cost.sum(axis=0)
    best = max(range(len(accuracy)), key=lambda j: (accuracy[j], -total[j]))
    if target.goal is Goal.QUALITY:
        return point.accuracy >= target.value * accuracy[best] - 1e-12
    return point.cost <= target.value * total[best] + 1e-12
