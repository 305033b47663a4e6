"""The unified cost–quality decision on the replay bench (``--router unified-knn``,
``unified-mf``, ``unified-knn-static``, ``unified-mf-static``): the router (settings by 5-fold
CV, as for routing alone) gives cross-fitted priors on train; the quality models and their
spreads are fitted on train (``cascade.routing._unified_train``), and the decision rule
(spread or look-ahead) is the one whose λ sweep replayed on train has the larger AIQ
(``choose_rule``); the tiers offered are the train's non-dominated ones (at most 5, the default
rule, nothing per data set); each λ of the default grid is one point measured on test. Test decisions replay the recorded answers and
costs with the same ``UnifiedModel.decide`` the engine calls."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import anyio
import numpy as np

from cascade.bench._replay import Curve, Outcomes, Side, Suite, bench_encoder
from cascade.bench._routing import _choose, _cross_fit, _fit, _inputs, router_kind
from cascade.providers import ReplayProvider
from cascade.routing._unified import AnswerKey
from cascade.routing._unified_train import (
    UnifiedData,
    candidate_models,
    choose_rule,
    cost_weight_grid,
    sweep_unified,
)
from cascade.tuning._unified_data import answer_key, group_ids
from verifiers import AnswerKind, shared_static

PREFIX = "unified-"
KINDS = ("unified-knn", "unified-mf", "unified-knn-mf", "unified-knn-static", "unified-mf-static",
         "unified-knn-mf-static")
MAX_CALLS = 3


def _groups(side: Side, names: Sequence[str], kind: AnswerKind | None) -> np.ndarray:
    """(queries, models) answer group ids from the recorded responses (-1: no answer;
    ``cascade.tuning._unified_data.group_ids``, as ``cascade train-router --kind unified``)."""
    by_name = {t.name: t for t in side.tiers}

    def response(row: int, name: str) -> str | None:
        tier = by_name[name]
        if not isinstance(tier.provider, ReplayProvider):
            return None
        table = tier.provider.table
        return table.record(table.rows[row - 1], tier.model).response

    return group_ids([[response(q.row, n) for n in names] for q in side.queries], answer_key(kind))


def _data(names: Sequence[str], prior: np.ndarray, quality: np.ndarray, cost: np.ndarray,
          groups: np.ndarray) -> UnifiedData:
    return UnifiedData(tuple(names), np.clip(prior, 0.0, 1.0), quality.astype(float), cost, groups)


async def unified_curves(kinds: Sequence[str], suite: Suite, train: Side, test: Side,
                         single_train: Mapping[str, Outcomes], single_test: Mapping[str, Outcomes],
                         notes: list[str], phase: Callable[[str], None] | None = None,
                         ran: set[str] | None = None) -> list[Curve]:
    tell = phase or (lambda _: None)
    curves = []
    ran = ran if ran is not None else set()
    if suite.answer is None:
        notes.append("unified: no answer kind, so answers cannot agree; the decision uses the "
                     "router's priors only (give --answer to use agreement)")
    elif AnswerKey.of(suite.answer).check_arithmetic:
        notes.append(f"unified: {suite.answer.value} answers whose own worked arithmetic is false "
                     "count as no answer (verifiers.check_arithmetic; policy key "
                     "unified.check_arithmetic)")
    for name in kinds:
        kind, static = router_kind(name.removeprefix(PREFIX))
        tell(f"unified: {name}: router on train")
        encoder = await anyio.to_thread.run_sync(shared_static) if static else bench_encoder()
        inputs = await anyio.to_thread.run_sync(_inputs, train, test, single_train, encoder)
        chosen = await anyio.to_thread.run_sync(_choose, kind, inputs)
        p_train = await anyio.to_thread.run_sync(_cross_fit, kind, inputs, chosen)
        router = await anyio.to_thread.run_sync(_fit, kind, inputs, np.arange(inputs.labels.shape[0]), chosen)
        p_test = await anyio.to_thread.run_sync(router.predict, list(inputs.texts[1]), inputs.x[1])
        tiers = candidate_models(inputs.labels, inputs.cost)
        names = [inputs.names[t] for t in tiers]
        tell(f"unified: {name}: fitting on train ({', '.join(names)})")
        train_data = _data(names, p_train.p[:, tiers], inputs.labels[:, tiers], inputs.cost[:, tiers],
                           _groups(train, names, suite.answer))
        model, scores = await anyio.to_thread.run_sync(choose_rule, train_data, MAX_CALLS)
        test_data = _data(names, p_test[:, tiers], np.stack([single_test[n].correct for n in names], axis=1),
                          np.stack([single_test[n].cost for n in names], axis=1),
                          _groups(test, names, suite.answer))
        tell(f"unified: {name}: measured on test")
        curve = Curve(name, "unified")
        swept = await anyio.to_thread.run_sync(sweep_unified, model, test_data)
        for lam, replayed in swept:
            curve.outcomes.append(Outcomes(replayed.cost, replayed.quality, replayed.reached))
            curve.settings.append({"tiers": names, "cost_weight": lam, "max_calls": model.max_calls,
                                   "rule": model.rule.value, "mean_calls": float(replayed.calls.mean())})
        chosen_by = ", ".join(f"{rule.value} {score:.4f}" for rule, score in scores.items())
        notes.append(f"{name}: tiers {', '.join(names)} (train's non-dominated), max {model.max_calls} "
                     f"calls, rule {model.rule.value} (train AIQ: {chosen_by}), {len(curve.outcomes)} λ "
                     f"from 0 to {cost_weight_grid()[-1]:g}")
        curves.append(curve)
        ran.add(name)
    return curves
