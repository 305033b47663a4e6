"""Which estimator cascades a suite is benchmarked with. Each builds per-tier estimators from
the ``verifiers`` package; learning ones train on the train side only (cross-fitted there)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import anyio
import numpy as np

from cascade.bench._bench import EstimatorMethod, PerTier
from cascade.bench._replay import Side, Suite, bench_encoder
from cascade.providers import ReplayProvider
from verifiers._calibrate import GOOD
from verifiers._trained import check_examples
from verifiers import (
    AnswerKind,
    Capability,
    Estimate,
    EstimateContext,
    Example,
    SelfConsistencyEstimator,
    CachedEncoder,
    SklearnVerifier,
    TrainingDataError,
    train_sklearn_verifier,
)


async def _vote(suite: Suite, train: Side, test: Side) -> tuple[PerTier, PerTier]:
    """Self-consistency on every tier that can replay samples (MoT files)."""
    estimator = SelfConsistencyEstimator(k=10, kind=AnswerKind.EXACT, batch=2, min_samples=3)
    tiers = {t.name: estimator for t in train.tiers if t.provider.supports_n}
    return tiers, tiers


@dataclass
class Memo:
    """Serves a verifier's predictions computed in batches up front (identical to calling
    ``predict`` one query at a time, which would take minutes per suite on this CPU)."""

    verifier: SklearnVerifier
    values: dict[tuple[str, str], float] = field(default_factory=dict)

    name = "verifier-sklearn"
    requires: frozenset[Capability] = frozenset()

    async def estimate(self, ctx: EstimateContext) -> Estimate:
        query = "\n".join(t.content for t in ctx.query)
        value = self.values.get((query, ctx.candidate.text))
        if value is None:
            return await self.verifier.estimate(ctx)
        return Estimate(value, details={"kind": self.name})


def _answers(side: Side, model: str, tier_provider: ReplayProvider) -> list[tuple[str, str, float | None]]:
    table = tier_provider.table
    out = []
    for query in side.queries:
        record = table.record(table.rows[query.row - 1], model)
        out.append((query.prompt, record.response, record.correct))
    return out


def _fill(memo: Memo, pairs: Sequence[tuple[str, str]], features: np.ndarray) -> None:
    for (q, a), value in zip(pairs, memo.verifier.predict_features(features)):
        memo.values[(q, a)] = float(value)


async def _verifier(suite: Suite, train: Side, test: Side) -> tuple[PerTier, PerTier]:
    """A scikit-learn verifier per tier's model: cross-fitted (2 folds) for the train side,
    refitted on all of train for the test side."""
    return await anyio.to_thread.run_sync(_verifier_sync, train, test)


def _verifier_sync(train: Side, test: Side) -> tuple[PerTier, PerTier]:
    encoder = bench_encoder()
    on_train: dict[str, Memo] = {}
    on_test: dict[str, Memo] = {}

    for tier in _cheapest(train, min(JUDGED, len(train.tiers) - 1)):
        provider = tier.provider
        if not isinstance(provider, ReplayProvider) or not provider.table.has_labels_per_model \
                or not provider.table.has_responses:  # no answer text to judge
            continue
        rows = _answers(train, tier.model, provider)
        examples = [Example(q, a, bool(c is not None and c >= GOOD)) for q, a, c in rows]  # graded: good at >= 0.5
        x = _features(encoder, [(q, a) for q, a, _ in rows])
        folds = np.arange(len(examples)) % 2
        memo_train = None
        try:
            check_examples(examples)
            for fold in (0, 1):
                check_examples([e for e, f in zip(examples, folds) if f != fold])
        except TrainingDataError:
            continue  # this model is always (or never) right on train: nothing to learn
        for fold in (0, 1):
            fit = [e for e, f in zip(examples, folds) if f != fold]
            verifier = train_sklearn_verifier(fit, encoder=encoder)
            memo_train = memo_train or Memo(verifier)
            part = np.nonzero(folds == fold)[0]
            pairs = [(rows[i][0], rows[i][1]) for i in part]
            for (q, a), value in zip(pairs, verifier.predict_features(x[part])):
                memo_train.values[(q, a)] = float(value)
        on_train[tier.name] = memo_train  # type: ignore[assignment]
        full = Memo(train_sklearn_verifier(examples, encoder=encoder))
        test_provider = next(t.provider for t in test.tiers if t.name == tier.name)
        test_rows = _answers(test, tier.model, test_provider)  # type: ignore[arg-type]
        _fill(full, [(q, a) for q, a, _ in test_rows], _features(encoder, [(q, a) for q, a, _ in test_rows]))
        on_test[tier.name] = full
    return on_train, on_test


# Verifiers judge the cheapest tiers (a chain's early members; any tier may close a chain).
# Never the dearest: chains are cost-ordered, so it only ever closes one, unjudged; a verifier
# there would be trained, and its answers encoded, for nothing (a third of the MiniLM work
# on a two-model file).
JUDGED = 5


def _cheapest(side: Side, count: int) -> list:
    """The ``count`` tiers with the lowest recorded (or priced) cost over the side's queries."""
    def cost(tier) -> float:
        provider = tier.provider
        if not isinstance(provider, ReplayProvider):
            return float("inf")
        table = provider.table
        total = 0.0
        for query in side.queries:
            record = table.record(table.rows[query.row - 1], tier.model)
            total += record.cost if record.cost is not None else tier.price.cost(
                len(query.prompt) // 4, len(record.response or "") // 4)
        return total

    return sorted(side.tiers, key=cost)[:count]


def _features(encoder: CachedEncoder, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
    probe = SklearnVerifier(np.zeros(1), np.ones(1), np.zeros(1), 0.0, None, encoder=encoder)  # type: ignore[arg-type]
    return probe.features([q for q, _ in pairs], [a for _, a in pairs])


REGISTRY: Mapping[str, EstimatorMethod] = {
    "vote": EstimatorMethod("vote", _vote, (2,)),
    "verifier": EstimatorMethod("verifier", _verifier, (2, 3)),
    "agreement": EstimatorMethod("agreement", agreement=True),
}


def methods_for(suite: Suite, names: Sequence[str] | None = None) -> list[EstimatorMethod]:
    """The named methods (all when ``names`` is None; a method that judges no tier of a
    suite is skipped there with a note)."""
    if names is None:
        return list(REGISTRY.values())
    if list(names) == ["none"]:
        return []
    unknown = [n for n in names if n not in REGISTRY]
    if unknown:
        raise KeyError(f"no method {', '.join(unknown)} (methods: {', '.join(REGISTRY)})")
    return [REGISTRY[n] for n in names]
