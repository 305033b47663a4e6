"""Trained verifiers: P(this answer is correct | query, answer), learned from labelled data.

- ``SklearnVerifier``: logistic regression on [MiniLM(query), MiniLM(answer tail), lengths,
  token-logprob statistics, sample agreement], then a probability calibration (isotonic or
  Platt) fitted on a held-out fifth of the training data.
- ``CrossEncoderVerifier``: the MiniLM encoder fine-tuned as a cross-encoder over
  (query, answer) with a linear head (in the spirit of FrugalGPT's answer scorer), Platt-
  calibrated on a held-out fifth.

Both save to and load from safe artifact directories (``_artifacts``); inference in
``estimate`` runs in a worker thread.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import numpy as np

from verifiers._artifacts import ArtifactError, load_artifact, save_artifact
from verifiers._encoder import CachedEncoder, MiniLMEncoder, shared_encoder
from verifiers._logprob import LogprobStatistic, summarise
from verifiers._types import Capability, Estimate, EstimateContext, EstimatorError

if TYPE_CHECKING:
    from verifiers._cross_encoder import CrossEncoderVerifier

ANSWER_TAIL = 512
# The query's end the verifier embeds; the routers read the same length
# (``cascade.routing._train.ROUTER_MAX_CHARS`` is this), so a prompt is encoded once for both.
QUERY_TAIL = 500
LEGACY_QUERY_TAIL = 1000  # artifacts saved before the query tail was recorded


class TrainingDataError(EstimatorError):
    """Training data that cannot train a verifier (the message says why)."""


class Calibration(str, enum.Enum):
    ISOTONIC = "isotonic"
    PLATT = "platt"


class VerifierKind(str, enum.Enum):
    SKLEARN = "verifier-sklearn"
    CROSS_ENCODER = "verifier-cross-encoder"


@dataclass(frozen=True, slots=True)
class Example:
    query: str
    answer: str
    correct: bool
    token_logprobs: tuple[float, ...] | None = None
    agreement: float | None = None


def check_examples(examples: Sequence[Example]) -> np.ndarray:
    if not examples:
        raise TrainingDataError("no training examples")
    labels = np.array([bool(e.correct) for e in examples])
    if labels.all():
        raise TrainingDataError(f"no negative labels among {labels.size} examples (every answer is correct)")
    if not labels.any():
        raise TrainingDataError(f"no positive labels among {labels.size} examples (every answer is wrong)")
    return labels


def _split(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.random.default_rng(seed).permutation(n)
    cut = max(1, int(round(n * 0.8)))
    return order[:cut], order[cut:]


# --- calibration maps (pure) ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CalibrationMap:
    method: Calibration
    xs: tuple[float, ...] = ()  # isotonic knots
    ys: tuple[float, ...] = ()
    a: float = 1.0  # Platt: sigmoid(a * score + b)
    b: float = 0.0

    def __call__(self, score: np.ndarray) -> np.ndarray:
        if self.method is Calibration.ISOTONIC:
            return np.interp(score, self.xs, self.ys)
        return 1.0 / (1.0 + np.exp(-(self.a * score + self.b)))

    @classmethod
    def fit(cls, method: Calibration, score: np.ndarray, labels: np.ndarray) -> CalibrationMap:
        if len(set(labels.tolist())) < 2:  # a held-out part with one class: fall back to identity
            return cls(Calibration.PLATT)
        if method is Calibration.ISOTONIC:
            from sklearn.isotonic import IsotonicRegression

            iso = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(score, labels)
            return cls(method, tuple(map(float, iso.X_thresholds_)), tuple(map(float, iso.y_thresholds_)))
        from sklearn.linear_model import LogisticRegression

        lr = LogisticRegression(C=1e4).fit(score.reshape(-1, 1), labels)
        return cls(method, a=float(lr.coef_[0, 0]), b=float(lr.intercept_[0]))

    def to_meta(self) -> dict[str, object]:
        return {"method": self.method.value, "xs": list(self.xs), "ys": list(self.ys), "a": self.a, "b": self.b}

    @classmethod
    def from_meta(cls, meta: object) -> CalibrationMap:
        if not isinstance(meta, dict):
            raise ValueError("calibration is not an object")
        return cls(Calibration(meta["method"]), tuple(meta["xs"]), tuple(meta["ys"]),
                   float(meta["a"]), float(meta["b"]))


# --- scikit-learn verifier ------------------------------------------------------------------


def _side_features(answers: Sequence[str], queries: Sequence[str],
                   logprobs: Sequence[tuple[float, ...] | None] | None,
                   agreement: Sequence[float | None] | None) -> np.ndarray:
    rows = []
    for i, (q, a) in enumerate(zip(queries, answers)):
        lp = logprobs[i] if logprobs is not None else None
        ag = agreement[i] if agreement is not None else None
        stats = [summarise(lp, s) for s in (LogprobStatistic.MEAN, LogprobStatistic.MIN,
                                            LogprobStatistic.QUANTILE)] if lp else [0.0, 0.0, 0.0]
        rows.append([math.log1p(len(a)), math.log1p(len(q)), *stats, float(bool(lp)),
                     0.0 if ag is None else ag, float(ag is not None)])
    return np.asarray(rows, dtype=np.float32)


@dataclass(frozen=True, slots=True)
class SklearnVerifier:
    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: float
    calibration: CalibrationMap
    metrics: dict[str, object] = field(default_factory=dict, compare=False)
    encoder: MiniLMEncoder | CachedEncoder = field(default_factory=shared_encoder, compare=False, repr=False)
    query_tail: int = QUERY_TAIL  # characters of the query's end it embeds (recorded in its artifact)

    name = "verifier-sklearn"

    @property
    def requires(self) -> frozenset[Capability]:
        return frozenset()

    def features(self, queries: Sequence[str], answers: Sequence[str],
                 logprobs: Sequence[tuple[float, ...] | None] | None = None,
                 agreement: Sequence[float | None] | None = None) -> np.ndarray:
        q = self.encoder.encode([s[-self.query_tail:] for s in queries])
        a = self.encoder.encode([s[-ANSWER_TAIL:] for s in answers])
        return np.hstack([q, a, _side_features(answers, queries, logprobs, agreement)])

    def predict_features(self, x: np.ndarray) -> np.ndarray:
        score = ((x - self.mean) / self.scale) @ self.coef + self.intercept
        return np.clip(self.calibration(score), 0.0, 1.0)

    def predict(self, queries: Sequence[str], answers: Sequence[str],
                logprobs: Sequence[tuple[float, ...] | None] | None = None,
                agreement: Sequence[float | None] | None = None) -> np.ndarray:
        return self.predict_features(self.features(queries, answers, logprobs, agreement))

    async def estimate(self, ctx: EstimateContext) -> Estimate:
        query = "\n".join(t.content for t in ctx.query)
        lp = ctx.candidate.token_logprobs
        value = await anyio.to_thread.run_sync(
            lambda: float(self.predict([query], [ctx.candidate.text], [lp])[0]))
        return Estimate(value, details={"kind": self.name})

    def save(self, directory: str | Path) -> Path:
        arrays = {"mean": self.mean, "scale": self.scale, "coef": self.coef,
                  "intercept": np.array([self.intercept])}
        meta = {"calibration": self.calibration.to_meta(), "metrics": self.metrics,
                "query_tail": self.query_tail}
        return save_artifact(directory, VerifierKind.SKLEARN.value, meta, arrays)


def train_sklearn_verifier(examples: Sequence[Example], *, calibration: Calibration = Calibration.ISOTONIC,
                           seed: int = 0, encoder: MiniLMEncoder | CachedEncoder | None = None) -> SklearnVerifier:
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score

    labels = check_examples(examples)
    encoder = encoder or shared_encoder()
    probe = SklearnVerifier(np.zeros(1), np.ones(1), np.zeros(1), 0.0, CalibrationMap(calibration), encoder=encoder)
    x = probe.features([e.query for e in examples], [e.answer for e in examples],
                       [e.token_logprobs for e in examples], [e.agreement for e in examples])
    fit, held = _split(len(examples), seed)
    check_examples([examples[i] for i in fit])  # the fitting part needs both labels too
    mean, scale = x[fit].mean(axis=0), x[fit].std(axis=0) + 1e-6
    z = (x - mean) / scale
    smallest = min(int(labels[fit].sum()), int((~labels[fit]).sum()))
    best_c = 1.0  # too few of one class to cross-validate C
    if smallest >= 2:
        best_c = max((0.01, 0.1, 1.0), key=lambda c: cross_val_score(
            LogisticRegression(C=c, class_weight="balanced", max_iter=2000), z[fit], labels[fit],
            cv=min(5, smallest), scoring="roc_auc").mean())
    model = LogisticRegression(C=best_c, class_weight="balanced", max_iter=2000).fit(z[fit], labels[fit])
    coef, intercept = model.coef_[0].astype(np.float32), float(model.intercept_[0])
    cal = CalibrationMap.fit(calibration, z[held] @ coef + intercept, labels[held])
    return SklearnVerifier(mean.astype(np.float32), scale.astype(np.float32), coef, intercept, cal,
                           {"C": best_c, "examples": len(examples)}, encoder=encoder)


def load_verifier(directory: str | Path, *,
                  sha256: str | None = None) -> SklearnVerifier | CrossEncoderVerifier:
    """Load a verifier artifact (hashes checked, the manifest's too when pinned; no pickle)."""
    kinds = frozenset(k.value for k in VerifierKind)
    artifact = load_artifact(directory, kinds, sha256=sha256)
    try:
        if artifact.kind == VerifierKind.SKLEARN.value:
            a = artifact.arrays
            tail = artifact.meta.get("query_tail", LEGACY_QUERY_TAIL)
            if isinstance(tail, bool) or not isinstance(tail, int) or tail < 1:
                raise ArtifactError(artifact.directory, f"query_tail must be a positive integer, got {tail!r}")
            return SklearnVerifier(a["mean"], a["scale"], a["coef"], float(a["intercept"][0]),
                                   CalibrationMap.from_meta(artifact.meta["calibration"]),
                                   dict(artifact.meta.get("metrics", {})),  # type: ignore[arg-type]
                                   query_tail=tail)
        from verifiers._cross_encoder import CrossEncoderVerifier

        return CrossEncoderVerifier.from_artifact(artifact)
    except (KeyError, ValueError, TypeError) as exc:
        raise ArtifactError(artifact.directory, f"inconsistent artifact contents ({exc!r})") from None

