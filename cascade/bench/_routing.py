"""Routers on the replay bench: routing only (over every tier of the suite) and router +
cascade (over a cascade method's chain), each trained and tuned on train only and measured on
test through the engine (``Routing`` on a ``Cascade``), as it ships.

Train-side router predictions are cross-fitted (each train query scored by a router that did
not see it), so that the settings chosen on train are not flattered by memorised labels.

Router names: ``knn``, ``mf``, ``bert`` (MiniLM embeddings), and ``knn-static`` / ``mf-static``
(the same routers on the static encoder distilled from MiniLM, ``verifiers.StaticEncoder``)."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import anyio
import numpy as np

from cascade.bench._agreement import AgreementFound, aliased, plan_label
from cascade.bench._bench import Judged
from cascade.bench._metrics import aiq
from cascade.bench._replay import Curve, Outcomes, Progress, Side, alone, bench_encoder, judged, run_setting
from cascade.bench._sweep import Setting, pareto, threshold_grid
from cascade.tuning._calibrate import Recorded
from cascade._tier import Routing
from cascade.policy import RoutingMode
from cascade.routing import (
    CorrectnessData,
    MfSettings,
    choose_knn,
    choose_mf,
    Rule,
    RulesRouter,
    LearnedRouter,
    RouterKind,
    RouteRule,
    RouterModel,
    router_text,
    starts,
    train_bert,
    utility_starts,
    train_knn,
    train_knn_mf,
    train_mf,
)
from cascade.tuning._ensemble_search import plan_tiers
from cascade.routing._cv import KnnChoice
from cascade.routing._models import NeighbourIndex
from cascade.routing._train import mf_options
from verifiers import CachedEncoder, Point, StaticEncoder, frontier, shared_static, simulate_cascade

FOLDS = {RouterKind.KNN: 5, RouterKind.MF: 5, RouterKind.KNN_MF: 5, RouterKind.BERT: 2}
KEEP = 24  # train-hull settings measured on test: as many as the cascade-only methods get
STATIC_SUFFIX = "-static"


RULES = "rules"  # a hand-writable length rule, its cut and tiers chosen on train (no model)
CAUSAL = "causal_llm"  # SmolLM2-135M grades difficulty (cascade/bench/_causal.py)
LONG = 1_000_000  # characters: the rules router reads the whole prompt


def router_kind(name: str) -> tuple[RouterKind, bool]:
    """A bench router name as (kind, on the static encoder); ValueError for an unknown one."""
    static = name.endswith(STATIC_SUFFIX)
    kind = RouterKind(name.removesuffix(STATIC_SUFFIX))
    if static and kind is RouterKind.BERT:
        raise ValueError("bert-static: a BERT router fine-tunes the MiniLM transformer itself")
    return kind, static


@dataclass(frozen=True, slots=True)
class Inputs:
    names: tuple[str, ...]  # tier names, cheapest first (on train)
    texts: tuple[tuple[str, ...], tuple[str, ...]]  # train, test
    x: tuple[np.ndarray, np.ndarray]
    labels: np.ndarray  # train (n, tiers)
    cost: np.ndarray  # train (n, tiers)
    default: int  # the safe default: the most accurate tier on train
    static: StaticEncoder | None = None  # x are this static encoder's embeddings (else MiniLM's)
    lookup: Mapping[str, np.ndarray] = field(default_factory=dict)  # test text -> its x row

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """The test queries' embeddings, computed once (the engine's router asks per query)."""
        if len(texts) == 1:  # the engine's router asks one query at a time
            return self.lookup[texts[0]][None]
        return np.stack([self.lookup[t] for t in texts])


def _label(kind: RouterKind, inputs: Inputs) -> str:
    return kind.value + (STATIC_SUFFIX if inputs.static is not None else "")


def _inputs(train: Side, test: Side, single: Mapping[str, Outcomes],
            encoder: CachedEncoder | StaticEncoder) -> Inputs:
    names = tuple(sorted(single, key=lambda n: float(single[n].cost.sum())))
    texts = (tuple(router_text(q.prompt) for q in train.queries),
             tuple(router_text(q.prompt) for q in test.queries))
    x = (encoder.encode(list(texts[0])), encoder.encode(list(texts[1])))
    labels = np.stack([single[n].correct for n in names], axis=1).astype(np.float32)
    cost = np.stack([single[n].cost for n in names], axis=1)
    default = int(np.argmax(labels.mean(axis=0)))
    return Inputs(names, texts, x, labels, cost, default,
                  encoder if isinstance(encoder, StaticEncoder) else None, dict(zip(texts[1], x[1])))


@dataclass(frozen=True, slots=True)
class Chosen:
    """Hyperparameters chosen once by 5-fold cross-validation on all of train (routing AIQ of
    out-of-fold predictions, ``cascade.routing._cv``), then used for every fit of the kind."""

    knn: KnnChoice | None = None
    mf: MfSettings | None = None

    def describe(self) -> str:
        parts = []
        if self.knn is not None:
            parts.append(f"{self.knn.describe()} (CV score {self.knn.score:.4f}; "
                         f"{self.knn.score_without_prior:.4f} without the prior)")
        if self.mf is not None:
            parts.append(f"dim={self.mf.dim}, weight_decay={self.mf.weight_decay:g}, epochs={self.mf.epochs}")
        return "; MF ".join(parts) if parts else "fixed settings"


def _choose(kind: RouterKind, inputs: Inputs) -> Chosen:
    match kind:
        case RouterKind.KNN:
            return Chosen(knn=choose_knn(inputs.x[0], inputs.labels, inputs.cost))
        case RouterKind.MF:
            return Chosen(mf=choose_mf(inputs.x[0], inputs.labels, inputs.cost).settings)
        case RouterKind.KNN_MF:
            return Chosen(knn=choose_knn(inputs.x[0], inputs.labels, inputs.cost),
                          mf=choose_mf(inputs.x[0], inputs.labels, inputs.cost).settings)
        case RouterKind.BERT:
            return Chosen()
    raise AssertionError(kind)


def _fit(kind: RouterKind, inputs: Inputs, rows: np.ndarray, chosen: Chosen = Chosen()) -> RouterModel:
    data = CorrectnessData("train", tuple(inputs.texts[0][i] for i in rows), inputs.names,
                           inputs.labels[rows], inputs.cost[rows])
    match kind:
        case RouterKind.KNN:
            knn = chosen.knn
            return train_knn(data, embeddings=inputs.x[0][rows], static=inputs.static,
                             k=None if knn is None else knn.k, weighting=None if knn is None else knn.weighting,
                             prior=None if knn is None else knn.prior)
        case RouterKind.MF:
            return train_mf(data, embeddings=inputs.x[0][rows], static=inputs.static,
                            **mf_options(chosen.mf))  # type: ignore[arg-type]
        case RouterKind.KNN_MF:
            knn = chosen.knn
            return train_knn_mf(data, embeddings=inputs.x[0][rows], static=inputs.static, mf=chosen.mf,
                                knn_k=None if knn is None else knn.k,
                                weighting=None if knn is None else knn.weighting,
                                prior=None if knn is None else knn.prior)
        case RouterKind.BERT:
            return train_bert(data, embeddings=inputs.x[0][rows], epochs=2, max_length=128)
    raise AssertionError(kind)


@dataclass(frozen=True, slots=True)
class Predicted:
    """Cross-fitted router output on train: P(ok) per tier, and which queries the engine
    would treat as cold starts (less similar to the fold's training queries than its cut),
    so that settings chosen on train pay for cold starts as they will on test."""

    p: np.ndarray  # (n, tiers)
    cold: np.ndarray  # (n,) bool


def _cross_fit(kind: RouterKind, inputs: Inputs, chosen: Chosen = Chosen()) -> Predicted:
    n = inputs.labels.shape[0]
    folds = np.array_split(np.random.default_rng(0).permutation(n), FOLDS[kind])
    p, cold = np.zeros(inputs.labels.shape), np.zeros(n, dtype=bool)
    for fold in folds:
        model = _fit(kind, inputs, np.setdiff1d(np.arange(n), fold), chosen)
        p[fold] = model.predict([inputs.texts[0][i] for i in fold], inputs.x[0][fold])
        cold[fold] = model.index.nearest(inputs.x[0][fold]) < model.min_similarity
    return Predicted(p, cold)


class _Nearest:
    """A router's training index whose per-query nearest similarity is remembered: the engine
    asks it once per query per setting. The test queries' similarities are computed up front
    in blocks (one matrix product instead of a 1 × n product per query and router)."""

    def __init__(self, base: NeighbourIndex, queries: np.ndarray | None = None, block: int = 1024) -> None:
        self.base = base
        self.embeddings = base.embeddings
        self._seen: dict[bytes, np.ndarray] = {}
        for start in range(0, 0 if queries is None else queries.shape[0], block):
            rows = queries[start:start + block]  # type: ignore[index]
            similarity = base.nearest(rows)
            self._seen.update((row.tobytes(), similarity[i:i + 1]) for i, row in enumerate(rows))

    def nearest(self, queries: np.ndarray) -> np.ndarray:
        if queries.shape[0] != 1:
            return self.base.nearest(queries)
        key = queries.tobytes()
        found = self._seen.get(key)
        if found is None:
            found = self._seen[key] = self.base.nearest(queries)
        return found


@dataclass(frozen=True, slots=True)
class Memo:
    """A router model whose test predictions were computed in one batch up front (a BERT
    forward pass per query per setting would take hours here); the engine still calls it.
    Its ``static`` is None: the engine embeds with the test queries' embeddings computed once
    up front by the router's own encoder (``Inputs.x``), never re-encoding per setting."""

    base: RouterModel
    rows: Mapping[str, np.ndarray]
    index: _Nearest
    static: None = None

    @classmethod
    def of(cls, base: RouterModel, texts: Sequence[str], p: np.ndarray, x: np.ndarray) -> Memo:
        """``x``: the test queries' embeddings, whose nearest similarities are computed here."""
        return cls(base, dict(zip(texts, p)), _Nearest(base.index, x))

    def __getattr__(self, name: str) -> object:
        return getattr(self.base, name)

    def predict(self, texts: Sequence[str], embeddings: np.ndarray) -> np.ndarray:
        if len(texts) == 1:  # the engine's router asks one query at a time
            return self.rows[texts[0]][None]
        return np.stack([self.rows[t] for t in texts])


def _router(memo: Memo, inputs: Inputs, columns: Sequence[int], threshold: float,
            default: int, cost_weight: float | None = None, cold: int | None = None,
            cold_start: bool = True) -> LearnedRouter:
    rule = RouteRule.THRESHOLD if cost_weight is None else RouteRule.UTILITY
    return LearnedRouter(memo, tuple(columns), (threshold,) * len(columns), default,  # type: ignore[arg-type]
                         inputs.embed, memo.min_similarity if cold_start else None, rule,
                         cost_weight or 0.0, inline=True, cold_start_tier=cold)  # lookups only: no thread hop


def _simulate(start: np.ndarray, chain: Sequence[Recorded], last_cost: np.ndarray,
              thresholds: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Per-query cost and correctness: start at ``start``, then climb the chain."""
    n = start.size
    spent, right, done = np.zeros(n), np.zeros(n), np.zeros(n, dtype=bool)
    for j, rec in enumerate(chain):
        active = ~done & (start <= j)
        spent += np.where(active, last_cost if j == len(chain) - 1 else rec.cost, 0.0)
        accept = active & ((j == len(chain) - 1) | (rec.confidence >= (thresholds[j] if j < len(thresholds) else 0)))
        right = np.where(accept, rec.correct, right)
        done |= accept
    return spent, right


@dataclass(frozen=True, slots=True)
class Combined:
    chain: tuple[str, ...]
    router_threshold: float
    setting: Setting
    cold: int = 0  # where cold starts begin: 0 (the cascade climbs) or the chain's last tier


def _combined(pred: Predicted, inputs: Inputs, judged_by: Judged) -> tuple[list[Combined], float]:
    """Every cost-ordered chain of 2-3 tiers (only judged tiers before the last) × router
    threshold × estimator thresholds × where cold starts begin (the chain's bottom, so the
    cascade decides, or its last tier, the safe default: the engine's ``cold_start_tier``), on
    train; the best chain's train-hull settings."""
    p = pred.p
    c_max = float(inputs.cost.sum(axis=0).max())
    best: tuple[list[Combined], float] | None = None
    for length in (2, 3):
        for chain in itertools.combinations(range(len(inputs.names)), length):
            names = tuple(inputs.names[j] for j in chain)
            if not set(names[:-1]) <= judged_by.judged:
                continue
            recs = [judged_by.recorded[n] for n in names]
            grids = [threshold_grid(r.confidence, 7) for r in recs[:-1]]
            options = []
            for r, cold in itertools.product(threshold_grid(p[:, list(chain)].ravel(), 9), (0, length - 1)):
                start = np.where(pred.cold, cold, starts(p[:, list(chain)], [r] * length, length - 1))
                for ths in itertools.product(*grids):
                    spent, right = _simulate(start, recs, inputs.cost[:, chain[-1]], ths)
                    options.append(Combined(names, r, Setting(names, ths, float(spent.sum()),
                                                              float(right.mean())), cold))
            score = aiq([(o.setting.train_cost, o.setting.train_accuracy) for o in options], c_max)
            if best is None or score > best[1]:
                best = (options, score)
    if best is None:
        return [], 0.0
    kept = {id(s) for s in pareto([o.setting for o in best[0]], KEEP)}
    return [o for o in best[0] if id(o.setting) in kept], best[1]


async def router_curves(kinds: Sequence[str], train: Side, test: Side, single: Mapping[str, Outcomes],
                        judged_by: Sequence[Judged], progress: Progress | None,
                        notes: list[str], agreed: Sequence[AgreementFound] = (),
                        suite: str = "suite", phase: Callable[[str], None] | None = None,
                        ran: set[str] | None = None) -> list[Curve]:
    """Routing only for each kind, and router + each cascade method that ran; what cannot run
    is a note. ``ran`` receives each kind that produced a curve."""
    by_encoder: dict[bool, Inputs] = {}
    by_name = {t.name: t for t in test.tiers}
    curves = []
    tell = phase or (lambda _: None)
    ran = ran if ran is not None else set()
    if RULES in kinds:
        tell("router: rules")
        curves.append(await rules_curve(train, test, single, progress))
        ran.add(RULES)
    if CAUSAL in kinds:
        from cascade.bench._causal import causal_curve  # llama.cpp: only when benchmarked

        tell("router: causal_llm")
        curves.append(await causal_curve(suite, train, test, single, progress, notes))
        ran.add(CAUSAL)
    for name in (k for k in kinds if k not in (RULES, CAUSAL)):
        kind, static = router_kind(name)
        if static not in by_encoder:  # MiniLM or static embeddings, each computed once, in batches
            tell("encoding prompts (static encoder)" if static else "encoding prompts (MiniLM)")
            encoder = await anyio.to_thread.run_sync(shared_static) if static else bench_encoder()
            by_encoder[static] = await anyio.to_thread.run_sync(_inputs, train, test, single, encoder)
        inputs = by_encoder[static]
        tell(f"router: {name}: settings by 5-fold cross-validation on train")
        chosen = await anyio.to_thread.run_sync(_choose, kind, inputs)
        notes.append(f"{name}: {chosen.describe()}, chosen by 5-fold cross-validation on train")
        tell(f"router: {name}: cross-fitted predictions on train")
        p_train = await anyio.to_thread.run_sync(_cross_fit, kind, inputs, chosen)
        model = await anyio.to_thread.run_sync(_fit, kind, inputs, np.arange(inputs.labels.shape[0]), chosen)
        p_test = await anyio.to_thread.run_sync(model.predict, list(inputs.texts[1]), inputs.x[1])
        memo = await anyio.to_thread.run_sync(Memo.of, model, inputs.texts[1], p_test, inputs.x[1])
        tell(f"router: {name}, measured on test")
        routed = await _routing_only(kind, memo, inputs, p_train, by_name, test, progress)
        curves.append(routed)
        ran.add(name)
        for judged_set in judged_by:
            curve = await _router_cascade(kind, memo, inputs, p_train, judged_set, by_name, test, progress)
            if curve is None:
                notes.append(f"router + cascade: {_label(kind, inputs)} + {judged_set.method}: no chain "
                             "of judged tiers (not run)")
            else:
                curve.rivals = (routed.name, f"cascade: {judged_set.method}")
                curves.append(curve)
        for found in agreed:
            curve = await _router_agreement(kind, memo, inputs, p_train, found, test, progress)
            if curve is None:
                notes.append(f"router + cascade: {_label(kind, inputs)} + agreement: no agreement plan "
                             "on the train hull to gate (not run)")
                continue
            curve.rivals = (routed.name, "cascade: agreement")
            curves.append(curve)
    return curves


@dataclass(frozen=True, slots=True)
class _Gate:
    """Router + agreement cascade: queries the router trusts to the ``solo`` model alone go
    there; those it trusts to the ensemble's strongest member run the agreement plan; the
    rest go straight to the plan's last model."""

    point: Point
    solo: int  # AnswerSet index
    strongest: int
    thresholds: tuple[float, float]
    setting: Setting
    cold_to_plan: bool  # cold starts run the agreement plan (else the plan's last model)


def _gates(pred: Predicted, inputs: Inputs, found: AgreementFound) -> list[_Gate]:
    """Every solo model × the two router thresholds × where cold starts go (the agreement plan,
    or its last model: the engine's ``cold_start_tier``), on train; the train-hull gates."""
    p, answers = pred.p, found.answers
    column = {j: inputs.names.index(found.names[j]) for j in range(len(found.names))}
    accuracy, mean_cost = answers.correct.mean(axis=0), answers.cost.mean(axis=0)
    options: list[_Gate] = []
    for point in frontier(found.found, 24):
        learned = point.learned
        plan = learned.plan
        if plan.single:
            continue
        spent_c, right_c, _ = simulate_cascade(point.thresholds, learned.confidence,
                                               learned.correct, learned.cost)
        strongest = max(plan.ensemble, key=lambda j: accuracy[j])
        solos = [j for j in range(len(found.names)) if mean_cost[j] < learned.cost[0].mean()]
        last = plan.last
        for solo in solos:
            p0, p1 = p[:, column[solo]], p[:, column[strongest]]
            for r0, r1, to_plan in itertools.product(threshold_grid(p0, 7), threshold_grid(p1, 7), (True, False)):
                start0 = ~pred.cold & (p0 >= r0)
                start1 = (pred.cold & to_plan) | (~pred.cold & ~start0 & (p1 >= r1))
                spent = np.where(start0, answers.cost[:, solo], np.where(start1, spent_c, answers.cost[:, last]))
                right = np.where(start0, answers.correct[:, solo], np.where(start1, right_c, answers.correct[:, last]))
                options.append(_Gate(point, solo, strongest, (r0, r1),
                                     Setting(inputs.names, (r0, r1), float(spent.sum()), float(right.mean())),
                                     to_plan))
    kept = {id(s) for s in pareto([o.setting for o in options], KEEP)}
    return [o for o in options if id(o.setting) in kept]


async def _router_agreement(kind: RouterKind, memo: Memo, inputs: Inputs, p_train: Predicted,
                            found: AgreementFound, test: Side, progress: Progress | None) -> Curve | None:
    """Router + agreement cascade, chosen on train (cross-fitted router predictions,
    out-of-fold agreement confidences), measured on test through the engine (mode both)."""
    gates = await anyio.to_thread.run_sync(_gates, p_train, inputs, found)
    if not gates:  # every train-hull point is one model alone: nothing for a router to gate
        return None
    curve = Curve(f"router + cascade: {_label(kind, inputs)} + agreement", "router+cascade")
    for gate in gates:
        tiers = [alone(found.test_tiers[gate.solo]),
                 *aliased(plan_tiers(gate.point, found.test_tiers, found.kind), gate.point, found.answers)]
        plan = gate.point.learned.plan
        models = [gate.solo, gate.strongest, *([plan.middle] if plan.middle is not None else []), plan.last]
        columns = [inputs.names.index(found.names[j]) for j in models]
        thresholds = (*gate.thresholds, *([np.inf] * (len(models) - 2)))
        router = LearnedRouter(memo, tuple(columns), thresholds, len(models) - 1,  # type: ignore[arg-type]
                               inputs.embed, memo.min_similarity, RouteRule.THRESHOLD, 0.0, inline=True,
                               cold_start_tier=1 if gate.cold_to_plan else len(models) - 1)
        curve.outcomes.append(await run_setting(tiers, test, progress, Routing(router, RoutingMode.BOTH)))
        curve.settings.append({"solo": found.names[gate.solo], "plan": plan_label(gate.point, found.names),
                               "router_thresholds": list(gate.thresholds),
                               "cold_start": "plan" if gate.cold_to_plan else found.names[plan.last],
                               "thresholds": [min(t, 9.0) for t in gate.point.thresholds],
                               "train_cost": gate.setting.train_cost,
                               "train_accuracy": gate.setting.train_accuracy})
    return curve


async def _routing_only(kind: RouterKind, memo: Memo, inputs: Inputs, pred: Predicted,
                        by_name: Mapping[str, object], test: Side, progress: Progress | None) -> Curve:
    """Over every tier: the utility rule (argmax P(ok) - λ·relative cost, RouterBench's) swept
    over λ, with cold starts sent to the safe default or routed like any query (cold-start
    detection off); the train-hull settings (cross-fitted predictions, the fold's cold starts)
    measured on test."""
    cost = inputs.cost.mean(axis=0)
    rows = np.arange(pred.p.shape[0])
    options = []
    for weight in [0.0, *np.geomspace(1e-3, 1e3, 31)]:
        routed = utility_starts(pred.p, list(cost), float(weight))
        for cold_start in (False, True):  # on ties (no cold start on train) the later, safer one is kept
            begin = np.where(pred.cold, inputs.default, routed) if cold_start else routed
            options.append(Setting(inputs.names, (float(weight), float(cold_start)),
                                   float(inputs.cost[rows, begin].sum()), float(inputs.labels[rows, begin].mean())))
    tiers = [alone(by_name[n]) for n in inputs.names]  # type: ignore[arg-type]
    curve = Curve(f"routing only: {_label(kind, inputs)}", "router")
    for setting in pareto(options, 12):
        weight, cold_start = setting.thresholds[0], bool(setting.thresholds[1])
        router = _router(memo, inputs, range(len(tiers)), 0.0, inputs.default, weight, cold_start=cold_start)
        curve.outcomes.append(await run_setting(tiers, test, progress,
                                                Routing(router, RoutingMode.ROUTE)))  # type: ignore[arg-type]
        curve.settings.append({"tiers": list(inputs.names), "cost_weight": weight,
                               "cold_start": "default tier" if cold_start else "off (routed)",
                               "train_cost": setting.train_cost, "train_accuracy": setting.train_accuracy})
    return curve


async def _router_cascade(kind: RouterKind, memo: Memo, inputs: Inputs, p_train: Predicted,
                          judged_set: Judged, by_name: Mapping[str, object], test: Side,
                          progress: Progress | None) -> Curve | None:
    options, train_aiq = await anyio.to_thread.run_sync(_combined, p_train, inputs, judged_set)
    if not options:
        return None
    curve = Curve(f"router + cascade: {_label(kind, inputs)} + {judged_set.method}", "router+cascade")
    for option in options:
        names = option.chain
        tiers = [judged(by_name[n], judged_set.on_test[n], th)  # type: ignore[arg-type]
                 for n, th in zip(names[:-1], option.setting.thresholds)]
        tiers.append(alone(by_name[names[-1]]))  # type: ignore[arg-type]
        columns = [inputs.names.index(n) for n in names]
        router = _router(memo, inputs, columns, option.router_threshold, len(names) - 1,
                         cold=option.cold)
        curve.outcomes.append(await run_setting(tiers, test, progress, Routing(router, RoutingMode.BOTH)))  # type: ignore[arg-type]
        curve.settings.append({"chain": list(names), "router_threshold": option.router_threshold,
                               "thresholds": list(option.setting.thresholds),
                               "cold_start_tier": names[option.cold],
                               "train_cost": option.setting.train_cost,
                               "train_accuracy": option.setting.train_accuracy, "train_aiq": train_aiq})
    return curve


def _rule_options(lengths: np.ndarray, labels: np.ndarray, cost: np.ndarray,
                  names: Sequence[str]) -> list[Setting]:
    """Every 'prompts of at least L characters start at tier B, the rest at tier A' over all
    tier pairs and 9 length quantiles (and each tier alone), on train."""
    rows = np.arange(lengths.size)
    options = [Setting((names[a],), (math.inf,), float(cost[:, a].sum()), float(labels[:, a].mean()))
               for a in range(len(names))]
    cuts = []  # decision-stump cuts: halfway below each of 9 length quantiles
    for q in np.unique(np.quantile(lengths, np.linspace(0.1, 0.9, 9))):
        below = lengths[lengths < q]
        if below.size:
            cuts.append(float(np.ceil((below.max() + q) / 2)))
    for a, b in itertools.permutations(range(len(names)), 2):
        for cut in cuts:
            start = np.where(lengths >= cut, b, a)
            options.append(Setting((names[a], names[b]), (float(cut),),
                                   float(cost[rows, start].sum()), float(labels[rows, start].mean())))
    return options


async def rules_curve(train: Side, test: Side, single: Mapping[str, Outcomes],
                      progress: Progress | None) -> Curve:
    """Routing only with a rules router: one length rule (a cut and two tiers) chosen on train,
    measured on test through the engine."""
    names = tuple(sorted(single, key=lambda n: float(single[n].cost.sum())))
    lengths = np.array([len(router_text(q.prompt, LONG)) for q in train.queries], dtype=float)
    labels = np.stack([single[n].correct for n in names], axis=1)
    cost = np.stack([single[n].cost for n in names], axis=1)
    by_name = {t.name: t for t in test.tiers}
    tiers = [alone(by_name[n]) for n in names]
    curve = Curve("routing only: rules (length)", "router")
    for setting in pareto(_rule_options(lengths, labels, cost, names), 12):
        short, cut = names.index(setting.chain[0]), setting.thresholds[0]
        rules = () if len(setting.chain) == 1 else (
            Rule("long", names.index(setting.chain[1]), min_chars=int(cut)),)
        routing = Routing(RulesRouter(rules, short), RoutingMode.ROUTE, max_chars=LONG)
        curve.outcomes.append(await run_setting(tiers, test, progress, routing))
        curve.settings.append({"short": setting.chain[0], "long": setting.chain[-1],
                               "min_chars": None if len(setting.chain) == 1 else int(cut),
                               "train_cost": setting.train_cost,
                               "train_accuracy": setting.train_accuracy})
    return curve
