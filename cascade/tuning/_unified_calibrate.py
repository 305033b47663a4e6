"""``cascade train-router --kind unified`` and ``cascade calibrate`` on a ``routing.mode:
unified`` policy: fit the unified decision's artifact from recorded data, and choose its λ
(``routing.unified.cost_weight``) for a target.

**Fitting** (``train_unified``): each tier answers every labelled row through the engine
(``_unified_data.record_answers``); priors are cross-fitted with the policy's router kind and
encoder (k folds, the router's hyperparameters fixed: read from its artifact, or chosen once
by cross-validation on all the data); ``choose_rule`` fits the quality models on them and keeps the better decision rule. The
router artifact the policy names is **reused** when it exists (its kind, encoder and
hyperparameters drive the cross-fit), else trained on all the data and written there.

**λ** (``calibrate_unified``): on data the artifact was **not** fitted on, the policy is loaded
as the engine loads it (its router, its unified artifact bound to the tiers, ``max_calls``,
``answer``), the router's P(ok) on the data's prompts are the priors, and ``sweep_unified``
replays the decision for every λ of the grid; ``calibrate_cost_weight`` picks λ. Held out,
not cross-fitted: the artifact and the router were fitted on their data, so λ chosen on the
same rows would see priors and quality estimates better than the engine's on new requests
(the artifact records its training file's sha256; calibrating on that file is refused)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import numpy as np

from cascade.engine import Cascade
from cascade.errors import CascadeError
from cascade.policy import LearnedRouterSpec, Policy, RoutingMode, UnifiedSpec
from cascade.providers import ReplayProvider as ReplayLive
from cascade.routing import (
    CorrectnessData,
    LearnedRouter,
    Replayed,
    RouteCalibrationError,
    RouterEncoder,
    RouterKind,
    RouteTargetKind,
    UnifiedData,
    calibrate_cost_weight,
    choose_knn,
    cost_weight_grid,
    choose_rule,
    load_router_model,
    router_text,
    sweep_unified,
)
from cascade.routing._train import choose_mf
from cascade.routing._unified import AnswerKey, fitted_on
from cascade.tuning._calibrate import Target, TargetKind, replayed_policy
from cascade.tuning._unified_data import (
    MIN_ROWS_PER_FOLD,
    Answers,
    RouterSettings,
    UnifiedFitError,
    cross_fitted_priors,
    file_digest,
    group_ids,
    labelled_rows,
    record_answers,
    require_answers,
    train_router,
)
from verifiers import StaticEncoder, auroc
from verifiers._calibrate import good

__all__ = [
    "DEFAULT_FOLDS",
    "LambdaPoint",
    "UnifiedCalibration",
    "UnifiedFit",
    "UnifiedTargetError",
    "calibrate_unified",
    "choose_cost_weight",
    "refine",
    "train_unified",
    "unified_specs",
]

DEFAULT_FOLDS = 5
DEFAULT_MAX_CALLS = 3  # the bench's; routing.unified.max_calls overrides


class UnifiedTargetError(CascadeError):
    """No λ of the grid meets the target on the data; ``closest`` is the λ that comes
    nearest, with what it reaches."""

    def __init__(self, message: str, closest: LambdaPoint) -> None:
        self.closest = closest
        super().__init__(message)


def unified_specs(policy: Policy, source: str = "the policy") -> tuple[LearnedRouterSpec, UnifiedSpec]:
    """The router and ``unified:`` sections of a unified-mode policy (else ``UnifiedFitError``)."""
    routing = policy.routing
    if routing is None or routing.mode is not RoutingMode.UNIFIED or routing.unified is None:
        mode = "no routing section" if routing is None else f"routing.mode is {routing.mode.value}"
        raise UnifiedFitError(f"{source} is not in unified mode ({mode}): set `routing.mode: unified` "
                              "with a knn, mf or bert router and `routing.unified: {artifact, cost_weight}`")
    assert isinstance(routing.router, LearnedRouterSpec)  # the policy's validator checks it
    return routing.router, routing.unified


def _resolve(path: str, base_dir: Path) -> Path:
    p = Path(path).expanduser()
    return p if p.is_absolute() else base_dir / p


@dataclass(frozen=True, slots=True)
class _Recorded:
    tiers: tuple[str, ...]
    models: tuple[str, ...]  # the tiers' models in the data
    rows: tuple[int, ...]
    prompts: tuple[str, ...]
    answers: Answers
    dropped: int


async def _record(engine: Cascade, data: Path, min_rows: int = 1) -> _Recorded:
    provider = engine.tiers[0].provider
    assert isinstance(provider, ReplayLive)  # replayed_policy swapped every provider
    table = provider.table
    models = tuple(t.model for t in engine.tiers)
    rows = labelled_rows(table, models)
    if len(rows) < min_rows:
        raise UnifiedFitError(f"{data}: {len(rows)} rows have a label for every tier's model "
                              f"({', '.join(models)}); at least {min_rows} are needed")
    prompts = tuple(table.rows[i - 1].prompt for i in rows)
    answers = await record_answers(engine.tiers, list(zip(prompts, rows)))
    return _Recorded(tuple(t.name for t in engine.tiers), models, tuple(rows), prompts, answers,
                     len(table.rows) - len(rows))


# --- fitting ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class UnifiedFit:
    """What ``train_unified`` did: where it wrote, how the router was obtained, and the
    per-tier quality, cost and cross-fitted prior AUROC on the data."""

    artifact: Path
    router_artifact: Path
    router_trained: bool  # False: the policy's existing router artifact was reused
    router: str  # the router settings used for the cross-fit
    tiers: tuple[str, ...]
    models: tuple[str, ...]
    queries: int
    dropped: int  # rows without a label for every tier's model
    folds: int
    max_calls: int
    quality: tuple[float, ...]
    cost: tuple[float, ...]
    prior_auroc: tuple[float | None, ...]
    notes: tuple[str, ...] = ()


def _router_settings(spec: LearnedRouterSpec, path: Path, names: Sequence[str],
                     encoder: RouterEncoder | None) -> RouterSettings | None:
    """The settings of the policy's existing router artifact (None: there is none)."""
    if not path.exists():
        return None
    model = load_router_model(path, sha256=spec.sha256)
    if model.kind.value != spec.kind:
        raise UnifiedFitError(f"routing.router says kind {spec.kind}, but {path} is a "
                              f"{model.kind.value} router")
    missing = [n for n in names if n not in model.models]
    if missing:
        raise UnifiedFitError(f"{path} was trained for {', '.join(model.models)}; it knows nothing "
                              f"of {', '.join(missing)} (delete it to train a new one here)")
    has = RouterEncoder.STATIC if getattr(model, "static", None) is not None else RouterEncoder.MINILM
    if encoder is not None and encoder is not has:
        raise UnifiedFitError(f"{path} exists and was trained with the {has.value} encoder; "
                              f"--encoder {encoder.value} would not be used (delete the artifact "
                              "to train a new router, or drop --encoder)")
    return RouterSettings.of(model)


def _new_settings(kind: RouterKind, static: StaticEncoder | None, x: np.ndarray,
                  data: CorrectnessData) -> RouterSettings:
    """Hyperparameters chosen once by cross-validation on all the data, as the bench does."""
    match kind:
        case RouterKind.KNN:
            choice = choose_knn(x, data.labels, data.costs)
            return RouterSettings(kind, static, k=choice.k, weighting=choice.weighting, prior=choice.prior)
        case RouterKind.MF:
            return RouterSettings(kind, static, mf=choose_mf(x, data.labels, data.costs).settings)
        case RouterKind.KNN_MF:
            choice = choose_knn(x, data.labels, data.costs)
            return RouterSettings(kind, static, k=choice.k, weighting=choice.weighting, prior=choice.prior,
                                  mf=choose_mf(x, data.labels, data.costs).settings)
        case RouterKind.BERT:
            return RouterSettings(kind)
    raise AssertionError(kind)


def _embed(texts: Sequence[str], static: StaticEncoder | None) -> np.ndarray:
    if static is not None:
        return static.encode(list(texts))
    from verifiers import shared_encoder

    return shared_encoder().encode(list(texts))


def _aurocs(p: np.ndarray, quality: np.ndarray) -> tuple[float | None, ...]:
    out = []
    for j in range(p.shape[1]):
        labels = good(quality[:, j])
        out.append(float(auroc(p[:, j], labels)) if 0 < labels.mean() < 1 else None)
    return tuple(out)


async def train_unified(policy: Policy, data: Path, base_dir: Path, *, out: Path | None = None,
                        encoder: RouterEncoder | None = None,
                        static: Callable[[], StaticEncoder] | None = None,
                        folds: int = DEFAULT_FOLDS, seed: int = 0,
                        progress: Callable[[str], None] | None = None) -> UnifiedFit:
    """Fit the unified artifact of a unified-mode ``policy`` on ``data`` (see the module doc).
    ``out``: where to write it (default: the policy's ``routing.unified.artifact``);
    ``encoder``: for a new router (default MiniLM; ``static()`` gives the static encoder)."""
    tell = progress or (lambda _: None)
    router, spec = unified_specs(policy)
    if folds < 2:
        raise UnifiedFitError(f"--folds must be at least 2, got {folds}")
    kind = RouterKind(router.kind)
    if kind is RouterKind.BERT and encoder is RouterEncoder.STATIC:
        raise UnifiedFitError("--encoder static is for knn and mf: a BERT router fine-tunes MiniLM itself")
    replay = replayed_policy(policy, data).model_copy(update={"routing": None})
    tell("recording each tier's answers from the data")
    async with Cascade.from_policy(replay, base_dir=base_dir) as engine:
        names = tuple(router.models.get(t.name, t.model) for t in engine.tiers)
        recorded = await _record(engine, data, MIN_ROWS_PER_FOLD * folds)
    answers = recorded.answers
    key = AnswerKey.of(spec.answer, spec.check_arithmetic)
    groups = group_ids(answers.texts, key)
    require_answers(answers, groups, recorded.models, spec.answer, str(data))
    texts = tuple(router_text(p, router.max_chars) for p in recorded.prompts)
    labelled = CorrectnessData(str(data), texts, names, answers.quality.astype(np.float32), answers.cost)
    router_path = _resolve(router.artifact, base_dir)
    settings = _router_settings(router, router_path, names, encoder)
    trained = settings is None
    chosen_static = settings.static if settings is not None else (
        static() if encoder is RouterEncoder.STATIC and static is not None else None)
    if encoder is RouterEncoder.STATIC and settings is None and chosen_static is None:
        raise UnifiedFitError("--encoder static needs a static encoder (--static-table DIR, or "
                              "let the command distil one)")
    tell("embedding the prompts")
    x = await anyio.to_thread.run_sync(_embed, texts, None if kind is RouterKind.BERT else chosen_static)
    if settings is None:
        tell(f"choosing the {kind.value} router's settings by cross-validation")
        settings = await anyio.to_thread.run_sync(_new_settings, kind, chosen_static, x, labelled)
        full = await anyio.to_thread.run_sync(train_router, settings, labelled, x)
        full.save(router_path)
    tell(f"cross-fitting priors ({folds} folds, {settings.describe()})")
    prior = await anyio.to_thread.run_sync(cross_fitted_priors, settings, labelled, x, folds, seed)
    unified_data = UnifiedData(names, prior, answers.quality, answers.cost, groups)
    max_calls = min(spec.max_calls or DEFAULT_MAX_CALLS, len(names))
    tell(f"fitting the unified decision ({len(texts)} queries, {len(names)} tiers)")
    model, rule_scores = await anyio.to_thread.run_sync(choose_rule, unified_data, max_calls, seed)
    target = out if out is not None else _resolve(spec.artifact, base_dir)
    target.parent.mkdir(parents=True, exist_ok=True)
    document = {**model.to_json(), "fitted_on": {
        "file": data.name, "sha256": file_digest(data), "queries": len(texts), "folds": folds,
        "router": settings.describe(), "router_artifact": str(router.artifact), "key": key.to_json(),
        "rule_aiq_on_data": {rule.value: score for rule, score in rule_scores.items()}}}
    target.write_text(json.dumps(document, indent=1), encoding="utf-8")
    notes = [f"decision rule {model.rule.value}: the larger area under its cost–quality curve replayed "
             "on this data (" + ", ".join(f"{r.value} {v:.4f}" for r, v in rule_scores.items()) + ")"]
    notes.extend(answers.failure_notes(recorded.tiers))
    if key.check_arithmetic:
        texts_seen = [t for row in answers.texts for t in row if t]
        false = sum(1 for t in texts_seen if key.judge(t)[1])
        notes.append(f"{key.describe()}: {false} of {len(texts_seen)} recorded answers show false "
                     "working and count as no answer")
    if out is not None and out.resolve() != _resolve(spec.artifact, base_dir).resolve():
        notes.append(f"the policy reads {spec.artifact}: point routing.unified.artifact at {out} to use this fit")
    return UnifiedFit(target, router_path, trained, settings.describe(), recorded.tiers, names,
                      len(texts), recorded.dropped, folds, max_calls,
                      tuple(float(v) for v in answers.quality.mean(axis=0)),
                      tuple(float(v) for v in answers.cost.mean(axis=0)),
                      _aurocs(prior, answers.quality), tuple(notes))


# --- λ -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LambdaPoint:
    """The decision replayed on the data at one λ: mean cost per query, mean quality, mean
    tiers called, and the escalation rate (share of queries calling more than one tier)."""

    cost_weight: float
    cost: float
    quality: float
    calls: float
    escalation: float

    @classmethod
    def of(cls, cost_weight: float, r: Replayed) -> LambdaPoint:
        return cls(cost_weight, float(r.cost.mean()), float(r.quality.mean()),
                   float(r.calls.mean()), float((r.calls > 1).mean()))


@dataclass(frozen=True, slots=True)
class UnifiedCalibration:
    target: Target
    cost_weight: float
    points: tuple[LambdaPoint, ...]  # every λ of the grid, ascending
    queries: int
    tiers: tuple[str, ...]
    tier_quality: tuple[float, ...]  # each tier alone, mean on the data
    tier_cost: tuple[float, ...]
    notes: tuple[str, ...] = field(default=())

    @property
    def chosen(self) -> LambdaPoint:
        return next(p for p in self.points if p.cost_weight == self.cost_weight)

    @property
    def best_quality(self) -> float:
        return max(self.tier_quality)

    @property
    def dearest_cost(self) -> float:
        return max(self.tier_cost)

    def comment(self, source: str) -> str:
        c = self.chosen
        return (f"target {self.target.kind.value}={self.target.value:g} on {source} ({self.queries} "
                f"queries): quality {c.quality:.4f} ({c.quality / max(self.best_quality, 1e-12):.1%} "
                f"of the best tier), mean cost {c.cost:.6g} ({c.cost / max(self.dearest_cost, 1e-300):.1%} "
                f"of the dearest), {c.calls:.2f} calls")

    def to_dict(self) -> dict[str, object]:
        return {"target": {"kind": self.target.kind.value, "value": self.target.value},
                "cost_weight": self.cost_weight, "queries": self.queries,
                "tiers": [{"name": n, "quality": q, "cost": c}
                          for n, q, c in zip(self.tiers, self.tier_quality, self.tier_cost)],
                "points": [{"cost_weight": p.cost_weight, "cost": p.cost, "quality": p.quality,
                            "calls": p.calls, "escalation": p.escalation} for p in self.points],
                "notes": list(self.notes)}


def choose_cost_weight(swept: Sequence[tuple[float, Replayed]], data: UnifiedData,
                       target: Target) -> float:
    """λ for ``target`` (pure): quality and cost as ``calibrate_cost_weight``; escalation —
    the smallest λ whose share of queries calling more than one tier is at most the value.
    ``UnifiedTargetError`` when no λ meets it (naming the closest); a risk target is a
    ``UnifiedFitError`` (the decision has no per-tier accept threshold to certify)."""
    points = [LambdaPoint.of(lam, r) for lam, r in swept]
    match target.kind:
        case TargetKind.QUALITY | TargetKind.COST:
            kind = RouteTargetKind.QUALITY if target.kind is TargetKind.QUALITY else RouteTargetKind.COST
            try:
                return calibrate_cost_weight(swept, data, kind, target.value)
            except RouteCalibrationError as exc:
                if target.kind is TargetKind.QUALITY:
                    near = max(points, key=lambda p: (p.quality, p.cost_weight))
                    ref = float(data.quality.mean(axis=0).max())
                    reach = f"quality {near.quality:.4f} ({near.quality / max(ref, 1e-12):.1%} of the best tier's)"
                else:
                    near = min(points, key=lambda p: (p.cost, -p.cost_weight))
                    ref = float(data.cost.mean(axis=0).max())
                    reach = f"mean cost {near.cost:.6g} ({near.cost / max(ref, 1e-300):.1%} of the dearest tier's)"
                raise UnifiedTargetError(f"{exc} on this data; the closest is λ={near.cost_weight:.6g} "
                                         f"with {reach}", near) from None
        case TargetKind.ESCALATION:
            meeting = [p.cost_weight for p in points if p.escalation <= target.value + 1e-12]
            if not meeting:
                near = min(points, key=lambda p: (p.escalation, -p.cost_weight))
                raise UnifiedTargetError(
                    f"no λ keeps the share of queries calling more than one tier within "
                    f"{target.value:g}; the closest is λ={near.cost_weight:.6g} with "
                    f"{near.escalation:.1%}", near)
            return min(meeting)
        case TargetKind.RISK:
            raise _no_risk()
    raise AssertionError(target.kind)


def _no_risk() -> UnifiedFitError:
    return UnifiedFitError(
        "a risk target certifies each tier's accept threshold (false accepts <= alpha); the "
        "unified decision has no accept threshold: calibrate λ to quality=Q, cost=C or escalation=E")


REFINE = 8  # λ tried between the chosen grid point and its neighbour that misses the target


def refine(lambdas: Sequence[float], chosen: float, kind: TargetKind) -> list[float]:
    """``REFINE`` λ strictly between ``chosen`` and its grid neighbour on the side that misses
    the target (above it for quality, below for cost and escalation; geometric spacing, linear
    down to 0), so the choice is not held to the coarse grid. Monotonicity in the target is
    kept: a stricter target's interval lies wholly on the side of a looser one's choice."""
    ordered = sorted(set(lambdas))
    at = ordered.index(chosen)
    step = 1 if kind is TargetKind.QUALITY else -1
    if not 0 <= at + step < len(ordered):
        return []
    low, high = sorted((chosen, ordered[at + step]))
    inner = np.geomspace(low, high, REFINE + 2) if low > 0 else np.linspace(low, high, REFINE + 2)
    return [float(v) for v in inner[1:-1]]


async def calibrate_unified(policy: Policy, data: Path, target: Target, base_dir: Path,
                            grid: Sequence[float] | None = None) -> UnifiedCalibration:
    """Choose λ on held-out recorded ``data`` (see the module doc)."""
    router, spec = unified_specs(policy)
    if target.kind is TargetKind.RISK:  # before anything is recorded
        raise _no_risk()
    artifact = _resolve(spec.artifact, base_dir)
    absent = [path for path in (router.artifact, spec.artifact) if not _resolve(path, base_dir).exists()]
    if absent:
        raise UnifiedFitError(f"{' and '.join(absent)} not found (relative to {base_dir}): fit them "
                              "first on training data with cascade train-router --kind unified "
                              "--policy P.yaml --data TRAIN")
    fitted = fitted_on(artifact)
    notes = []
    if fitted is not None and fitted.get("sha256") == file_digest(data):
        raise UnifiedFitError(
            f"{data} is the file {spec.artifact} was fitted on: λ chosen on the same rows would see "
            "better priors and quality estimates than the engine gets on new requests. Calibrate "
            "on held-out recorded data (split the file before cascade train-router --kind unified)")
    if fitted is None:
        notes.append(f"{spec.artifact} does not record the data it was fitted on: make sure "
                     f"{data.name} was not part of it")
    async with Cascade.from_policy(replayed_policy(policy, data), base_dir=base_dir) as engine:
        routing = engine.routing
        assert routing is not None and routing.unified is not None  # unified mode, checked above
        assert isinstance(routing.router, LearnedRouter)
        settings, learned = routing.unified, routing.router
        recorded = await _record(engine, data)
        texts = [router_text(p, routing.max_chars) for p in recorded.prompts]
        p, _ = await anyio.to_thread.run_sync(learned.predict, texts)
    answers = recorded.answers
    notes.extend(answers.failure_notes(recorded.tiers))
    groups = group_ids(answers.texts, settings.key)
    require_answers(answers, groups, recorded.models, spec.answer, str(data))
    unified_data = UnifiedData(settings.model.models, np.clip(p, 0.0, 1.0), answers.quality,
                               answers.cost, groups)
    lambdas = list(grid) if grid is not None else cost_weight_grid()
    if spec.cost_weight not in lambdas:  # the policy's current λ, for comparison
        lambdas = sorted([*lambdas, spec.cost_weight])
    swept = await anyio.to_thread.run_sync(sweep_unified, settings.model, unified_data, lambdas)
    finer = refine(lambdas, choose_cost_weight(swept, unified_data, target), target.kind)
    if finer:
        swept = sorted([*swept, *await anyio.to_thread.run_sync(
            sweep_unified, settings.model, unified_data, finer)], key=lambda item: item[0])
    chosen = choose_cost_weight(swept, unified_data, target)
    if target.kind is TargetKind.QUALITY and chosen == max(lambdas):
        notes.append(f"λ={chosen:g}, the grid's largest, meets the quality target: a larger λ may too")
    elif target.kind is not TargetKind.QUALITY and chosen == 0.0:
        notes.append("λ=0 (quality only) already meets the target")
    return UnifiedCalibration(target, chosen, tuple(LambdaPoint.of(lam, r) for lam, r in swept),
                              len(texts), recorded.tiers,
                              tuple(float(v) for v in answers.quality.mean(axis=0)),
                              tuple(float(v) for v in answers.cost.mean(axis=0)), tuple(notes))
