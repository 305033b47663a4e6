"""Recorded data for the unified cost–quality decision (``routing.mode: unified``): the
per query × tier arrays ``cascade.routing.UnifiedData`` holds, built from a policy and a
recorded-answers file, for ``cascade train-router --kind unified`` and ``cascade calibrate``.

- **quality, cost, answers** come from the real engine: each tier of the policy answers every
  labelled row alone from the replayed file, so costs are what the engine charges (the
  recorded cost, or the tier's price × the recorded tokens) and answers are the texts the
  engine's unified step compares;
- **answer groups**: equal normalised answers (``verifiers`` ``normalise`` with the policy's
  ``unified.answer`` kind) share an id per query; -1 where no answer could be extracted;
- **cross-fitted priors**: each row's P(good) per tier from a router of the policy's kind and
  encoder trained on the other folds (a router that saw a row's label would flatter it).

Bad inputs are ``UnifiedFitError`` (a ``ConfigError``) naming what is wrong."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from cascade._tier import Tier
from cascade.engine import Cascade
from cascade.errors import ConfigError, RunError
from cascade.providers import ReplayTable
from cascade.routing import (
    CorrectnessData,
    KnnWeighting,
    MfSettings,
    RouterKind,
    RouterModel,
    train_bert,
    train_knn,
    train_knn_mf,
    train_mf,
)
from cascade.routing._cv import fold_rows
from cascade.routing._models import prior_label
from cascade.routing._train import mf_options
from cascade.routing._unified import AnswerKey
from verifiers import AnswerKind, StaticEncoder

__all__ = [
    "MIN_ROWS_PER_FOLD",
    "Answers",
    "RouterSettings",
    "UnifiedFitError",
    "answer_key",
    "cross_fitted_priors",
    "file_digest",
    "group_ids",
    "labelled_rows",
    "record_answers",
    "require_answers",
    "train_router",
]

MIN_ROWS_PER_FOLD = 2  # each held-out fold needs rows, each training part more than one


class UnifiedFitError(ConfigError):
    """Recorded data or a policy that cannot fit or calibrate the unified decision (a model
    not in the data, no responses to compare, a policy not in unified mode, too few rows,
    calibrating on the data the artifact was fitted on)."""


def group_ids(answers: Sequence[Sequence[str | None]],
              key: Callable[[str], str | None] | None) -> np.ndarray:
    """(queries, tiers) answer group ids: per query, tiers whose answers have the same key
    share an id (0, 1, ... in tier order); -1 where there is no answer, the key finds none,
    or there is no ``key`` (no answer kind: nothing can agree)."""
    n = len(answers)
    m = len(answers[0]) if n else 0
    out = np.full((n, m), -1, dtype=int)
    if key is None:
        return out
    for i, row in enumerate(answers):
        seen: dict[str, int] = {}
        for j, text in enumerate(row):
            found = key(text) if text is not None else None
            if found is not None:
                out[i, j] = seen.setdefault(found, len(seen))
    return out


def answer_key(kind: AnswerKind | None) -> Callable[[str], str | None] | None:
    """The group key the engine uses for ``unified.answer: kind`` with the default arithmetic
    check (``routing.AnswerKey``; None: no kind)."""
    if kind is None:
        return None
    return AnswerKey.of(kind)


def labelled_rows(table: ReplayTable, models: Sequence[str]) -> list[int]:
    """1-based numbers of the rows with a quality label for every model (as the engine's
    ``replay_row`` metadata counts them); a model not in the data is a ``UnifiedFitError``."""
    if not table.has_labels_per_model:
        raise UnifiedFitError(f"{table.path}: the unified decision needs one labelled answer per "
                              "model per query (a RouterBench or RouteLLM CSV), not a multi-sample file")
    missing = [m for m in models if table.models and m not in table.models]
    if missing:
        raise UnifiedFitError(f"{table.path}: model(s) {', '.join(missing)} of the policy's tiers "
                              f"are not in the data (its models: {', '.join(table.models)})")
    return [i for i, row in enumerate(table.rows, 1)
            if all(table.record(row, m).correct is not None for m in models)]


@dataclass(frozen=True, slots=True)
class Answers:
    """Each tier alone on each row, through the engine: quality of its answer (0 when it
    failed), what it cost, and its answer text (None when it failed)."""

    quality: np.ndarray  # (n, tiers)
    cost: np.ndarray  # (n, tiers)
    texts: tuple[tuple[str | None, ...], ...]  # n × tiers
    failed: np.ndarray  # (n, tiers) bool: the call raised (a RunError)
    errors: tuple[str | None, ...]  # per tier: the first failure's error class

    def failure_notes(self, tiers: Sequence[str]) -> list[str]:
        """One line per tier whose calls failed: never a silent zero."""
        return [f"tier {name}: {count} of {len(self.failed)} calls failed ({kind}); counted as "
                "quality 0 at the cost charged"
                for name, count, kind in zip(tiers, self.failed.sum(axis=0), self.errors) if count]


def _error_kind(exc: RunError) -> str:
    """The failing call's error class as the attempt recorded it (its text stays out)."""
    recorded = next((a.error for a in reversed(exc.attempts) if a.error), None)
    return recorded.split(":", 1)[0].strip() if recorded else type(exc).__name__


async def record_answers(tiers: Sequence[Tier], queries: Sequence[tuple[str, int]],
                         feature: str = "unified") -> Answers:
    """Run every tier alone (no estimator) on each (prompt, data row)."""
    n, m = len(queries), len(tiers)
    quality, cost = np.zeros((n, m)), np.zeros((n, m))
    texts: list[list[str | None]] = [[None] * m for _ in range(n)]
    failed = np.zeros((n, m), dtype=bool)
    errors: list[str | None] = [None] * m
    for j, tier in enumerate(tiers):
        engine = Cascade([replace(tier, estimator=None, threshold=math.inf, fallback_estimator=None)],
                         feature=feature)
        for i, (prompt, row) in enumerate(queries):
            try:
                result = await engine.run(prompt, metadata={"replay_row": str(row)})
            except RunError as exc:
                cost[i, j] = math.fsum(a.cost for a in exc.attempts)
                failed[i, j] = True
                errors[j] = errors[j] or _error_kind(exc)
                continue
            attempt = result.attempts[0]
            quality[i, j] = attempt.label or 0.0
            cost[i, j] = attempt.cost
            texts[i][j] = attempt.answer
    return Answers(quality, cost, tuple(tuple(r) for r in texts), failed, tuple(errors))


def require_answers(answers: Answers, groups: np.ndarray, models: Sequence[str],
                    kind: AnswerKind, source: str) -> None:
    """Agreement needs answers: a tier none of whose recorded responses gives an answer of
    ``kind`` is a ``UnifiedFitError`` naming it (empty responses, or none readable)."""
    empty = [m for j, m in enumerate(models) if not any((row[j] or "").strip() for row in answers.texts)]
    if empty:
        raise UnifiedFitError(
            f"{source}: no recorded responses for {', '.join(empty)}; `unified.answer: {kind.value}` "
            "compares the tiers' answers, so the data needs each model's response (RouterBench's "
            "`<model>|model_response` columns)")
    unread = [m for j, m in enumerate(models) if not np.any(groups[:, j] >= 0)]
    if unread:
        raise UnifiedFitError(
            f"{source}: no recorded response of {', '.join(unread)} gives a {kind.value!r} answer "
            f"(`unified.answer: {kind.value}`); choose the answer kind that fits the data "
            f"({', '.join(k.value for k in AnswerKind)})")


@dataclass(frozen=True, slots=True)
class RouterSettings:
    """How every router of a cross-fit is trained: the kind, the static encoder (None:
    MiniLM), and the hyperparameters (chosen once, on all the data or read from an artifact)."""

    kind: RouterKind
    static: StaticEncoder | None = None
    k: int | None = None
    weighting: KnnWeighting | None = None
    mf: MfSettings | None = None
    prior: float | None = None  # kNN's pull toward each model's mean quality (m; math.inf: means only)
    epochs: int = 2  # BERT
    max_length: int = 256  # BERT: word pieces read per prompt

    @classmethod
    def of(cls, model: RouterModel) -> RouterSettings:
        """The settings an existing artifact was trained with."""
        static = getattr(model, "static", None)
        metrics = getattr(getattr(model, "header", None), "metrics", {})
        match model.kind:
            case RouterKind.KNN:
                return cls(model.kind, static, k=model.k, weighting=model.weighting,  # type: ignore[attr-defined]
                           prior=model.prior)  # type: ignore[attr-defined]
            case RouterKind.MF:
                return cls(model.kind, static, mf=_mf_settings(metrics))
            case RouterKind.KNN_MF:
                knn = model.knn  # type: ignore[attr-defined]
                return cls(model.kind, static, k=knn.k, weighting=knn.weighting, prior=knn.prior,
                           mf=_mf_settings(model.mf.header.metrics))  # type: ignore[attr-defined]
            case RouterKind.BERT:
                return cls(model.kind, None, epochs=int(metrics.get("epochs", 2)),
                           max_length=int(model.max_length))  # type: ignore[attr-defined]
        raise AssertionError(model.kind)

    def describe(self) -> str:
        encoder = "static encoder" if self.static is not None else "MiniLM"
        match self.kind:
            case RouterKind.KNN:
                prior = "-" if self.prior is None else prior_label(self.prior)
                return (f"knn, {encoder}, k={self.k}, {getattr(self.weighting, 'value', '-')} weighting, "
                        f"prior m={prior}")
            case RouterKind.MF:
                mf = self.mf
                settings = "settings by CV" if mf is None else \
                    f"dim={mf.dim}, weight_decay={mf.weight_decay:g}, epochs={mf.epochs}"
                return f"mf, {encoder}, {settings}"
            case RouterKind.KNN_MF:
                mf = self.mf
                settings = "MF settings by CV" if mf is None else \
                    f"MF dim={mf.dim}, weight_decay={mf.weight_decay:g}, epochs={mf.epochs}"
                prior = "-" if self.prior is None else prior_label(self.prior)
                return (f"knn-mf (mean of kNN and MF), {encoder}, k={self.k}, "
                        f"{getattr(self.weighting, 'value', '-')} weighting, prior m={prior}, {settings}")
            case RouterKind.BERT:
                return f"bert (fine-tuned MiniLM), {self.epochs} epochs, max_length {self.max_length}"
        raise AssertionError(self.kind)


def _mf_settings(metrics: dict[str, object]) -> MfSettings | None:
    """An MF router's settings from its artifact's metrics (None: not recorded, so CV)."""
    if all(key in metrics for key in ("dim", "epochs", "weight_decay")):
        return MfSettings(int(metrics["dim"]), int(metrics["epochs"]), float(metrics["weight_decay"]))  # type: ignore[arg-type]
    return None


def train_router(settings: RouterSettings, data: CorrectnessData, x: np.ndarray) -> RouterModel:
    """One router of ``settings`` on ``data`` (its embeddings ``x``, from the settings' encoder)."""
    match settings.kind:
        case RouterKind.KNN:
            return train_knn(data, k=settings.k, weighting=settings.weighting, embeddings=x,
                             static=settings.static, prior=settings.prior)
        case RouterKind.MF:
            return train_mf(data, embeddings=x, static=settings.static, **mf_options(settings.mf))  # type: ignore[arg-type]
        case RouterKind.KNN_MF:
            return train_knn_mf(data, knn_k=settings.k, weighting=settings.weighting, prior=settings.prior,
                                mf=settings.mf, embeddings=x, static=settings.static)
        case RouterKind.BERT:
            return train_bert(data, embeddings=x, epochs=settings.epochs, max_length=settings.max_length)
    raise AssertionError(settings.kind)


def cross_fitted_priors(settings: RouterSettings, data: CorrectnessData, x: np.ndarray,
                        folds: int, seed: int = 0) -> np.ndarray:
    """(n, models) P(good): each row predicted by a router trained on the other folds."""
    n = data.labels.shape[0]
    if folds < 2:
        raise UnifiedFitError(f"--folds must be at least 2, got {folds}")
    if n < MIN_ROWS_PER_FOLD * folds:
        raise UnifiedFitError(f"{data.source}: {n} labelled rows are too few for {folds} folds of "
                              f"cross-fitted priors (at least {MIN_ROWS_PER_FOLD * folds}); record "
                              "more queries or lower --folds")
    p = np.zeros(data.labels.shape)
    for number, rows in enumerate(fold_rows(n, folds, seed), 1):
        fit = np.setdiff1d(np.arange(n), rows)
        part = CorrectnessData(f"{data.source} (fold {number} of {folds})",
                               tuple(data.texts[i] for i in fit), data.models, data.labels[fit],
                               None if data.costs is None else data.costs[fit])
        model = train_router(settings, part, x[fit])
        p[rows] = model.predict([data.texts[i] for i in rows], x[rows])
    return np.clip(p, 0.0, 1.0)


def file_digest(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()
