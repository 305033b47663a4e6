"""Agreement across models as a confidence signal.

An answer that independent models also give is more likely right than one they contradict
(agreement-based cascading: Kolawole et al. 2024, arXiv 2407.02348; semantic-agreement
cascades: arXiv 2509.21837). The evidence is every other answer the run has already paid for
(``EstimateContext.peers``): the other members of an ensemble tier and, when ``earlier``, the
answers of cheaper tiers.

- Agreement is decided by the same answer normalisation as self-consistency (``_normalise``):
  equal numbers, choice letters, exact strings, or code (re-printed from its syntax tree with
  identifiers renamed); free text by MiniLM cosine similarity ≥ ``similarity``.
- Without learned weights, confidence = the weighted share of the answers (the candidate's own
  included) that agree with the candidate; ``weights`` per model default to 1.
- With an ``AgreementModel`` (``fit_agreement``), confidence is a probability: a logistic
  regression on the agreement pattern (which model gave the candidate; which models agree and
  which disagree), isotonic-calibrated on out-of-fold scores.
- Fewer answers than ``min_members`` (members failed or timed out): confidence 0.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

import anyio
import numpy as np

from verifiers._calibrate import good
from verifiers._artifacts import ArtifactError, load_artifact, save_artifact
from verifiers._normalise import AnswerKind, Embed, normalise
from verifiers._trained import Calibration, CalibrationMap, TrainingDataError
from verifiers._types import Capability, Estimate, EstimateContext, MissingInputError, Peer

AGREE, DISAGREE, UNKNOWN = 1, 0, -1
ARTIFACT_KIND = "agreement"


def agreement_matrix(texts: Sequence[str | None], kind: AnswerKind, *, embed: Embed | None = None,
                     similarity: float = 0.85) -> np.ndarray:
    """Pairwise agreement of answers (n × n int8): 1 agree, 0 disagree, -1 where either has no
    extractable answer (or no text). Free text with an encoder: cosine similarity ≥
    ``similarity``; every other kind: equal normalised forms."""
    n = len(texts)
    keys = [None if t is None else normalise(t, kind) for t in texts]
    present = [i for i, k in enumerate(keys) if k is not None]
    out = np.full((n, n), UNKNOWN, dtype=np.int8)
    if not present:
        return out
    if kind is AnswerKind.TEXT and embed is not None:
        vectors = np.asarray(embed([texts[i] or "" for i in present]), dtype=float)
        vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        same = (vectors @ vectors.T) >= similarity
    else:
        same = np.array([[keys[i] == keys[j] for j in present] for i in present])
    index = np.array(present)
    out[np.ix_(index, index)] = same.astype(np.int8)
    return out


def consensus(matrix: np.ndarray, weights: Sequence[float]) -> int:
    """The answer an ensemble returns: the one with the largest total weight of answers
    agreeing with it (itself included); ties go to the larger own weight, then the earlier
    member. No extractable answer anywhere: the first member."""
    w = np.asarray(weights, dtype=float)
    support = ((matrix == AGREE) * w[None, :]).sum(axis=1)
    answered = [i for i in range(len(w)) if matrix[i, i] == AGREE]
    if not answered:
        return 0
    return max(answered, key=lambda i: (support[i], w[i], -i))


# --- learned weights ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AgreementRow:
    """One labelled case: which model gave the candidate, whether each other answer agreed with
    it (None: that model gave no answer), and whether the candidate was correct."""

    source: str
    agree: Mapping[str, bool | None]
    correct: bool


@dataclass(frozen=True, slots=True)
class AgreementModel:
    """P(candidate correct | agreement pattern): logistic regression on [candidate's source
    one-hot, agrees per source, disagrees per source], then an isotonic map. Models outside
    ``sources`` are ignored."""

    sources: tuple[str, ...]
    coef: np.ndarray  # 3 × len(sources)
    intercept: float
    calibration: CalibrationMap
    kind: AnswerKind

    def features(self, source: str, agree: Mapping[str, bool | None]) -> np.ndarray:
        m = len(self.sources)
        x = np.zeros(3 * m)
        position = {s: i for i, s in enumerate(self.sources)}
        if source in position:
            x[position[source]] = 1.0
        for other, value in agree.items():
            j = position.get(other)
            if j is not None and value is not None:
                x[(m if value else 2 * m) + j] = 1.0
        return x

    def predict_features(self, x: np.ndarray) -> np.ndarray:
        return np.clip(self.calibration(x @ self.coef + self.intercept), 0.0, 1.0)

    def predict(self, source: str, agree: Mapping[str, bool | None]) -> float:
        return float(self.predict_features(self.features(source, agree)[None, :])[0])

    def save(self, directory: str | Path) -> Path:
        meta = {"sources": list(self.sources), "intercept": self.intercept, "kind": self.kind.value,
                "calibration": self.calibration.to_meta()}
        return save_artifact(directory, ARTIFACT_KIND, meta, {"coef": self.coef.astype(np.float64)})


def load_agreement(directory: str | Path, *, sha256: str | None = None) -> AgreementModel:
    art = load_artifact(directory, frozenset({ARTIFACT_KIND}), sha256=sha256)
    try:
        sources = tuple(str(s) for s in art.meta["sources"])  # type: ignore[union-attr]
        coef = np.asarray(art.arrays["coef"], dtype=float)
        model = AgreementModel(sources, coef, float(art.meta["intercept"]),  # type: ignore[arg-type]
                               CalibrationMap.from_meta(art.meta["calibration"]),
                               AnswerKind(art.meta["kind"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise ArtifactError(art.directory / "meta.json", f"not an agreement model ({exc!r})") from None
    if coef.shape != (3 * len(sources),):
        raise ArtifactError(art.directory, f"coef has shape {coef.shape}, expected {(3 * len(sources),)}")
    return model


def fit_agreement(rows: Sequence[AgreementRow], sources: Sequence[str], kind: AnswerKind, *,
                  folds: int = 5, c: float = 1.0, seed: int = 0) -> tuple[AgreementModel, np.ndarray]:
    """Learn the weights; returns the model (fitted on every row) and the calibrated
    out-of-fold confidence of each row (what the model would say on rows it did not see)."""
    probe = AgreementModel(tuple(sources), np.zeros(3 * len(sources)), 0.0,
                           CalibrationMap(Calibration.PLATT), kind)
    x = np.stack([probe.features(r.source, r.agree) for r in rows]) if rows else np.zeros((0, 3 * len(sources)))
    return fit_features(x, good([float(r.correct) for r in rows]).astype(int), sources, kind,
                        folds=folds, c=c, seed=seed)


def fit_features(x: np.ndarray, y: np.ndarray, sources: Sequence[str], kind: AnswerKind, *,
                 folds: int = 5, c: float = 1.0, seed: int = 0) -> tuple[AgreementModel, np.ndarray]:
    """``fit_agreement`` on ready features (rows of ``AgreementModel.features``)."""
    from sklearn.linear_model import LogisticRegression

    if len(y) < 2 * folds or y.min() == y.max():
        raise TrainingDataError(f"agreement weights need both right and wrong candidates and at "
                                f"least {2 * folds} rows; got {len(y)} rows, {int(y.sum())} right")
    order = np.random.default_rng(seed).permutation(len(y))
    fold_of = np.empty(len(y), dtype=int)
    fold_of[order] = np.arange(len(y)) % folds
    scores = np.zeros(len(y))
    for f in range(folds):
        fit, held = fold_of != f, fold_of == f
        if y[fit].min() == y[fit].max():
            scores[held] = 0.0 if y[fit].max() == 0 else 1.0
            continue
        lr = LogisticRegression(C=c, max_iter=2000).fit(x[fit], y[fit])
        scores[held] = lr.decision_function(x[held])
    calibration = CalibrationMap.fit(Calibration.ISOTONIC, scores, y)
    lr = LogisticRegression(C=c, max_iter=2000).fit(x, y)
    model = AgreementModel(tuple(sources), lr.coef_[0].astype(float), float(lr.intercept_[0]),
                           calibration, kind)
    return model, np.clip(calibration(scores), 0.0, 1.0)


# --- the estimator ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AgreementEstimator:
    """Confidence that the candidate is right from how many other answers agree with it."""

    kind: AnswerKind = AnswerKind.EXACT
    min_members: int = 2  # answers needed, the candidate's own included
    earlier: bool = True  # count answers of cheaper tiers too
    weights: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))
    model: AgreementModel | None = None
    similarity: float = 0.85
    embed: Embed | None = field(default=None, compare=False, hash=False)
    run_tests: bool = False  # code: compare by the request's shared tests (metadata "tests")
    tests_timeout_s: float = 5.0

    def __post_init__(self) -> None:
        if self.run_tests and self.kind is not AnswerKind.CODE:
            raise ValueError("run_tests compares code answers: it needs answer kind 'code'")
        if self.run_tests:  # refuse now, not at the first request, where bwrap is unusable
            from verifiers._sandbox import require_sandbox

            require_sandbox()
        if self.min_members < 1:
            raise ValueError("min_members must be at least 1")
        if any(not (w >= 0 and math.isfinite(w)) for w in self.weights.values()):
            raise ValueError("agreement weights must be finite and non-negative")
        if self.model is not None and self.model.kind is not self.kind:
            raise ValueError(f"the agreement model was learned with answer kind "
                             f"{self.model.kind.value!r}, not {self.kind.value!r}")

    @property
    def name(self) -> str:
        return f"agreement-{self.kind.value}" + ("-learned" if self.model is not None else "")

    @property
    def requires(self) -> frozenset[Capability]:
        return frozenset()

    def weight(self, source: str) -> float:
        """A model's weight in the consensus and in the unlearned share (default 1)."""
        return float(self.weights.get(source, 1.0))

    def tests(self, metadata: Mapping[str, str]) -> tuple[str, ...]:
        """The shared tests of a request (metadata ``tests``: a JSON list of statements)."""
        if not self.run_tests or "tests" not in metadata:
            return ()
        import json

        try:
            value = json.loads(metadata["tests"])
        except json.JSONDecodeError:
            raise MissingInputError("metadata 'tests' is not a JSON list of strings") from None
        if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
            raise MissingInputError("metadata 'tests' is not a JSON list of strings")
        return tuple(value)

    def matrix(self, texts: Sequence[str | None], tests: Sequence[str] = ()) -> np.ndarray:
        """Pairwise agreement; with ``tests``, by running them (sandboxed; callers without an
        event loop only: the engine uses ``matrix_async``)."""
        if tests:
            from verifiers._code_tests import agreement_by_tests

            return agreement_by_tests(texts, tests, timeout_s=self.tests_timeout_s)
        return agreement_matrix(texts, self.kind, embed=self.embed, similarity=self.similarity)

    async def matrix_async(self, texts: Sequence[str | None], tests: Sequence[str] = ()) -> np.ndarray:
        """``matrix`` for an engine: test runs are awaited (cancelling kills their sandboxes);
        embedding runs in a worker thread that a cancelled run abandons."""
        if tests:
            from verifiers._code_tests import agreement_by_tests_async

            return await agreement_by_tests_async(texts, tests, timeout_s=self.tests_timeout_s)
        if self.kind is AnswerKind.TEXT and self.embed is not None:
            return await anyio.to_thread.run_sync(lambda: self.matrix(texts), abandon_on_cancel=True)
        return self.matrix(texts)

    def pick(self, texts: Sequence[str | None], sources: Sequence[str], tests: Sequence[str] = ()) -> int:
        """The ensemble's answer among its members' (``consensus`` with this estimator's weights)."""
        return consensus(self.matrix(texts, tests), [self.weight(s) for s in sources])

    async def choose(self, texts: Sequence[str | None], sources: Sequence[str],
                     metadata: Mapping[str, str] = MappingProxyType({})) -> int:
        """``pick`` for an engine (``matrix_async``: cancellable)."""
        matrix = await self.matrix_async(texts, self.tests(metadata))
        return consensus(matrix, [self.weight(s) for s in sources])

    def _evidence(self, peers: Sequence[Peer]) -> tuple[list[Peer], tuple[float, dict[str, object]] | None]:
        """The peers counted, and the verdict when there are too few answers to compare."""
        used = [p for p in peers if self.earlier or not p.earlier]
        answered = [p for p in used if p.text is not None]
        if 1 + len(answered) < self.min_members:
            return used, (0.0, {"reason": f"{1 + len(answered)} answer(s), fewer than min_members "
                                f"{self.min_members}", "members": 1 + len(answered)})
        return used, None

    def judge(self, candidate: str, source: str, peers: Sequence[Peer],
              tests: Sequence[str] = ()) -> tuple[float, dict[str, object]]:
        """Pure apart from test runs (CPU work): the confidence and who agreed."""
        used, early = self._evidence(peers)
        if early is not None:
            return early
        return self.judge_row(source, used, self.matrix([candidate, *(p.text for p in used)], tests)[0])

    def judge_row(self, source: str, used: Sequence[Peer], row: np.ndarray) -> tuple[float, dict[str, object]]:
        """Pure: the confidence from the candidate's row of the agreement matrix."""
        members = 1 + sum(p.text is not None for p in used)
        if row[0] != AGREE:
            return 0.0, {"reason": "no answer could be extracted from the candidate",
                         "members": members}
        agree = {p.source: (None if row[j + 1] == UNKNOWN else bool(row[j + 1]))
                 for j, p in enumerate(used)}
        label = [f"{p.tier}/{p.source}" if p.tier else p.source for p in used]
        details: dict[str, object] = {
            "members": members,
            "agreed": [label[j] for j in range(len(used)) if row[j + 1] == AGREE],
            "disagreed": [label[j] for j in range(len(used)) if row[j + 1] == DISAGREE],
            "no_answer": [label[j] for j in range(len(used)) if row[j + 1] == UNKNOWN],
        }
        if self.model is not None:
            return self.model.predict(source, agree), details
        weights = [self.weight(source)] + [self.weight(p.source) for p in used]
        counted = [1] + [int(row[j + 1] != UNKNOWN) for j in range(len(used))]
        agreeing = [1] + [int(row[j + 1] == AGREE) for j in range(len(used))]
        total = math.fsum(w * c for w, c in zip(weights, counted))
        share = math.fsum(w * a for w, a in zip(weights, agreeing)) / total if total > 0 else 0.0
        return min(1.0, share), details

    async def estimate(self, ctx: EstimateContext) -> Estimate:
        tests = self.tests(ctx.metadata)
        used, early = self._evidence(ctx.peers)
        if early is None:
            matrix = await self.matrix_async([ctx.candidate.text, *(p.text for p in used)], tests)
            confidence, details = self.judge_row(ctx.candidate.model, used, matrix[0])
        else:
            confidence, details = early
        return Estimate(confidence, details={**details, "kind": self.kind.value,
                                             "compared_by": "tests" if tests else "answers"})
