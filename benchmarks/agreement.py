"""Agreement cascades on the replay bench (issue 11): every one-model tier answers the train
queries through the engine, ``cascade search-ensemble``'s plan search runs on those answers,
and the plans on the train hull are measured on test through the engine (ensemble tiers,
agreement estimators with the weights learned on train), as they ship."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import anyio

from benchmarks.replay import Curve, Progress, Side, Suite, run_setting
from cascade._ensemble_search import collect, describe, plan_tiers
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
    if len({t.model for t in tiers}) != len(tiers):
        notes.append("agreement: two tiers share a model name, so their answers cannot be told "
                     "apart as agreement evidence (not run)")
        return None
    answers = await collect(tiers, [(q.prompt, q.row) for q in train.queries], progress=progress)
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
        built = plan_tiers(point, test_tiers, suite.answer)
        curve.outcomes.append(await run_setting(built, test, progress))
        curve.settings.append({**describe(point, names), "train_cost": point.cost,
                               "train_accuracy": point.accuracy})
    return curve


def plan_label(point: Point, names: Sequence[str]) -> str:
    d = describe(point, names)
    ensemble = " + ".join(d["ensemble"])  # type: ignore[arg-type]
    return " → ".join(str(t) for t in (ensemble, d["middle"], d["last"]) if t)
