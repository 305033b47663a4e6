"""One suite, end to end: single models, random, oracle and every estimator's cascade
(settings chosen on train, measured on test through the engine), with the metrics."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cascade.bench import _metrics as metrics
from cascade.bench._agreement import AgreementFound, agreement_curve
from cascade.bench._replay import (
    Curve,
    Outcomes,
    Progress,
    Recorded,
    Side,
    Suite,
    judged,
    open_side,
    oracle,
    oracle_frontier,
    record_confidences,
    run_setting,
    singles,
)
from cascade.bench._sweep import best_chain
from verifiers import Estimator

PerTier = Mapping[str, Estimator]  # tier name -> its estimator
# (train-side estimators, test-side estimators). A learning estimator is cross-fitted on train
# (each train query judged by a model that did not see it) and refitted on all of train for test.
EstimatorBuilder = Callable[[Suite, Side, Side], Awaitable[tuple[PerTier, PerTier]]]


@dataclass(frozen=True, slots=True)
class EstimatorMethod:
    """A cascade method: per-tier estimators built (and trained, if they learn) on train."""

    name: str
    build: EstimatorBuilder | None = None
    lengths: tuple[int, ...] = (2, 3)
    agreement: bool = False  # the agreement-cascade search (cascade/bench/_agreement.py) instead


@dataclass(slots=True)
class SuiteReport:
    suite: str
    queries: int
    c_max: float
    curves: list[Curve]
    metrics: dict[str, dict[str, object]] = field(default_factory=dict)
    reference: dict[str, object] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    ran: set[str] = field(default_factory=set)  # methods and routers that produced a curve


@dataclass(frozen=True, slots=True)
class Judged:
    """What a cascade method leaves for router + cascade: the engine-recorded confidences on
    train, the test-side estimators, and which tiers it can judge."""

    method: str
    recorded: Mapping[str, Recorded]
    on_test: PerTier
    judged: frozenset[str]


async def cascade_curve(method: EstimatorMethod, suite: Suite, train: Side, test: Side,
                        single_train: Mapping[str, Outcomes], progress: Progress | None,
                        keep: list[Judged] | None = None) -> Curve | None:
    """None when the method judges no tier of this suite."""
    assert method.build is not None
    on_train, on_test = await method.build(suite, train, test)
    if not on_train:
        return None
    recorded: dict[str, Recorded] = {}
    for tier in train.tiers:
        if tier.name in on_train:
            recorded[tier.name] = await record_confidences(tier, on_train[tier.name], train, progress)
        else:  # not judgeable by this method: it can still close a chain (answers unchecked)
            single = single_train[tier.name]
            recorded[tier.name] = Recorded(np.zeros_like(single.cost), single.correct, single.cost)
    names = [t.name for t in train.tiers]
    order = sorted(names, key=lambda n: float(single_train[n].cost.sum()))
    single_cost = {n: single_train[n].cost for n in names}
    chain, settings, train_aiq = best_chain(recorded, single_cost, order, method.lengths,
                                            judged=frozenset(on_train))
    if keep is not None:
        keep.append(Judged(method.name, recorded, on_test, frozenset(on_train)))
    by_name = {t.name: t for t in test.tiers}
    curve = Curve(f"cascade: {method.name}", "cascade")
    for setting in settings:
        tiers = [judged(by_name[n], on_test[n], th) for n, th in zip(chain[:-1], setting.thresholds)]
        tiers.append(by_name[chain[-1]])
        curve.outcomes.append(await run_setting(tiers, test, progress))
        curve.settings.append({"chain": list(chain), "thresholds": list(setting.thresholds),
                               "train_cost": setting.train_cost,
                               "train_accuracy": setting.train_accuracy, "train_aiq": train_aiq})
    return curve


Phase = Callable[[str], None]  # told what the suite is doing now (progress lines)


def _quiet(_: str) -> None:
    """No phase reporting."""


async def run_suite(suite: Suite, data: Path, methods: Sequence[EstimatorMethod] = (),
                    progress: Progress | None = None, bootstrap_rounds: int = 200,
                    routers: Sequence[str] = (), phase: Phase = _quiet) -> SuiteReport:
    """Every method is either a curve in the report (and in ``report.ran``) or a note saying
    why it did not run; a curve without points is dropped with a note, never a crash."""
    train, test = open_side(suite, data, "train"), open_side(suite, data, "test")
    notes: list[str] = []
    ran: set[str] = set()
    try:
        phase("single models")
        single_test = await singles(test, progress)
        single_train = await singles(train, progress)
        curves = [Curve(name, "single", [o], [{"tier": name}]) for name, o in single_test.items()]
        curves.append(Curve("random", "random",
                            points_only=metrics.hull([o.point() for o in single_test.values()])))
        curves.append(Curve("oracle", "oracle", points_only=[oracle(single_test)]))
        curves.append(Curve("oracle frontier", "oracle", points_only=oracle_frontier(single_test)))
        judged_by: list[Judged] = []
        agreed: list[AgreementFound] = []
        for method in methods:
            phase(f"cascade: {method.name}")
            if method.agreement:
                found = await agreement_curve(suite, train, test, progress, notes, agreed)
                curve = found
            else:
                curve = await cascade_curve(method, suite, train, test, single_train, progress, judged_by)
                if curve is None:
                    notes.append(f"{method.name}: judges no tier of this suite (not run)")
            if curve is not None and _kept(curve, notes):
                curves.append(curve)
                ran.add(method.name)
        if routers:
            from cascade.bench._routing import (
                router_curves,  # torch: only when routers are benchmarked
            )

            plain = [r for r in routers if not r.startswith("unified-")]
            found_curves = await router_curves(plain, train, test, single_train, judged_by, progress,
                                               notes, agreed, suite.name, phase=phase, ran=ran)
            if len(plain) < len(routers):  # the unified decision (cascade/bench/_unified.py)
                from cascade.bench._unified import unified_curves

                found_curves += await unified_curves([r for r in routers if r not in plain], suite, train, test,
                                                     single_train, single_test, notes, phase, ran)
            curves += [c for c in found_curves if _kept(c, notes)]
    finally:
        await train.engine.aclose()
        await test.engine.aclose()
    c_max = suite.c_max or max(metrics.hull(c.points())[-1][0] for c in curves if c.kind != "oracle")
    report = SuiteReport(suite.name, len(test.queries), c_max, curves, notes=notes, ran=ran)
    phase("metrics and bootstrap")
    _measure(report, single_test, bootstrap_rounds)
    return report


def _kept(curve: Curve, notes: list[str]) -> bool:
    """A curve with no measured point (a degenerate search) is reported, not plotted."""
    if curve.points():
        return True
    notes.append(f"{curve.name}: no setting was found on train, so nothing was measured (not run)")
    return False


def _share(cost: float | None, reference: float) -> float | None:
    return None if cost is None else cost / reference


def _measure(report: SuiteReport, single: Mapping[str, Outcomes], rounds: int) -> None:
    points = {name: o.point() for name, o in single.items()}
    best = max(points.values(), key=lambda p: (p[1], -p[0]))
    weak = min(points.values(), key=lambda p: (p[0], -p[1]))
    gap = metrics.Gap(weak, best) if best[0] > weak[0] and best[1] > weak[1] else None
    for curve in report.curves:
        pts = curve.points()
        row: dict[str, object] = {
            "kind": curve.kind,
            "points": [list(p) for p in pts],
            "aiq": metrics.aiq(pts, report.c_max),
            "cost_to_95": _share(metrics.cost_to_reach(pts, 0.95 * best[1]), best[0]),
            "cost_to_99": _share(metrics.cost_to_reach(pts, 0.99 * best[1]), best[0]),
        }
        if gap is not None:
            row["apgr"] = metrics.apgr(pts, gap)
            row["cpt50"], row["cpt80"] = metrics.cpt(pts, gap, 0.5), metrics.cpt(pts, gap, 0.8)
        if curve.outcomes and rounds:
            row["aiq_ci95"] = metrics.bootstrap(*curve.arrays(),
                                                lambda p: metrics.aiq(p, report.c_max), rounds=rounds)
        if curve.settings and curve.outcomes:
            row["settings"] = [dict(s, escalation=o.escalation(), test_point=list(o.point()))
                               for s, o in zip(curve.settings, curve.outcomes)]
        report.metrics[curve.name] = row
    _compare(report, rounds)
    report.reference = {"best_single": list(best), "weak_single": list(weak),
                                    "c_max": report.c_max, "queries": report.queries}


def _compare(report: SuiteReport, rounds: int) -> None:
    """Each curve with rivals (router + cascade against routing only and cascade only): the
    paired-bootstrap AIQ margin over the better rival and the share of rounds it wins."""
    measured = {c.name: c for c in report.curves if c.outcomes}
    for curve in report.curves:
        if not rounds or not curve.rivals or not {curve.name, *curve.rivals} <= measured.keys():
            continue
        found = metrics.paired_margin(curve.arrays(), [measured[name].arrays() for name in curve.rivals],
                                      lambda p: metrics.aiq(p, report.c_max), rounds=rounds)
        if found is not None:
            report.metrics[curve.name]["aiq_margin"] = {
                "rivals": list(curve.rivals), "ci95": [found[0], found[1]], "wins": found[2]}


def runs_needed(train: Side, test: Side, methods: int, routers: int = 0) -> int:
    """Engine runs a suite takes (for progress bars): singles on both sides, each method's
    recording on train and its settings on test (at most 24), each router's routing-only
    settings on test (at most 12) and its router + cascade settings (at most 24 per method)."""
    t = len(train.tiers)
    return t * (len(train.queries) + len(test.queries)) + methods * (
        t * len(train.queries) + 24 * len(test.queries)) + routers * (12 + 24 * methods) * len(test.queries)


def finite(value: float) -> float | None:
    return value if math.isfinite(value) else None
