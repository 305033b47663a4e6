"""Agreement cascades on the replay bench (issue 11): every one-model tier answers the train
queries through the engine, ``cascade search-ensemble``'s plan search runs on those answers,
and the plans on the train hull are measured on test through the engine (ensemble tiers,
agreement estimators with the weights learned on train), as they ship."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import anyio

from cascade.bench._replay import Curve, Progress, Side, Suite, run_setting
from cascade.tuning._ensemble_search import collect, describe, plan_tiers
from cascade._tier import Tier
from verifiers import AnswerKind, AnswerSet, CalibrationError, Point, frontier, search
from verifiers._agreement_search import plans

KEEP = 24  # hull points measured on test


@dataclass(frozen=True, slots=True)
class AgreementFound:
    """What the agreement method leaves for router + cascade: the train answers, the kind,
    every operating point found on train, and the test side's one-model tiers."""

    answers: AnswerSet
    kind: AnswerKind
    found: tuple[Point, ...]
    test_tiers: tuple[Tier, ...]
    names: tuple[str, ...]  # tier names, indexed as the AnswerSet


def one_model_tiers(side: Side) -> list[Tier]:
    return [t for t in side.tiers if not t.members]


async def agreement_curve(suite: Suite, train: Side, test: Side, progress: Progress | None,
                          notes: list[str], keep: list[AgreementFound] | None = None) -> Curve | None:
    if suite.answer is None:
        notes.append("agreement: no answer kind (the suite declares none and none could be detected "
                     "from the responses; give --answer) (not run)")
        return None
    tiers = one_model_tiers(train)
    answers = await collect(tiers, [(q.prompt, q.row) for q in train.queries], progress=progress)
    if len({t.model for t in tiers}) != len(tiers):  # one model, two prompts (MoT's CoT and PoT):
        answers = dataclasses.replace(answers, models=tuple(t.name for t in tiers))  # members by alias
        notes.append("agreement: tiers share a model, so ensemble members are told apart by their "
                     "tier names (member aliases)")
    candidates = plans(answers)
    if all(p.single for p in candidates):
        notes.append("agreement: too few models below the most accurate one to form an ensemble (not run)")
        return None
    if not any(t and t.strip() for column in answers.texts for t in column):
        notes.append("agreement: every recorded response is empty, so no two answers can agree (not run)")
        return None
    try:
        found = await anyio.to_thread.run_sync(lambda: search(answers, suite.answer, candidates=candidates))  # type: ignore[arg-type]
    except CalibrationError as exc:
        notes.append(f"agreement: {exc} (not run)")
        return None
    test_tiers = tuple(one_model_tiers(test))
    names = tuple(t.name for t in tiers)
    if keep is not None:
        keep.append(AgreementFound(answers, suite.answer, tuple(found), test_tiers, names))
    curve = Curve("cascade: agreement", "cascade")
    for point in frontier(found, KEEP):
        built = aliased(plan_tiers(point, test_tiers, suite.answer), point, answers)
        curve.outcomes.append(await run_setting(built, test, progress))
        curve.settings.append({**describe(point, names), "train_cost": point.cost,
                               "train_accuracy": point.accuracy})
    return curve


def aliased(tiers: list[Tier], point: Point, answers: AnswerSet) -> list[Tier]:
    """The plan's ensemble members named as the AnswerSet knows them (their aliases) when those
    names are not the members' models, so agreement weights and evidence find them."""
    plan = point.learned.plan
    if plan.single or all(answers.models[j] == tiers[0].members[i].model for i, j in enumerate(plan.ensemble)):
        return tiers
    members = tuple(dataclasses.replace(m, name=answers.models[j])
                    for m, j in zip(tiers[0].members, plan.ensemble))
    return [dataclasses.replace(tiers[0], members=members), *tiers[1:]]


def plan_label(point: Point, names: Sequence[str]) -> str:
    d = describe(point, names)
    ensemble = " + ".join(d["ensemble"])  # type: ignore[arg-type]
    return " → ".join(str(t) for t in (ensemble, d["middle"], d["last"]) if t)
