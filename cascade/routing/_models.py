"""Learned router models at inference: each maps texts (and their embeddings) to an
(n, models) matrix of P(model's answer is acceptable). kNN and MF run in numpy; the BERT
classifier in torch. Artifacts are safetensors + JSON (``verifiers`` artifact format with a
sha256 manifest); nothing is ever unpickled.

kNN and MF are trained on the embeddings of one encoder, recorded in ``meta.json`` as
``encoder``: ``minilm`` (the transformer, shared per process; the meaning of an artifact
without the field) or ``static`` (``verifiers.StaticEncoder``, whose table and tokenizer are
saved inside the artifact, in ``static/``, so a router always embeds as it was trained).
"""

from __future__ import annotations

import dataclasses
import enum
import math
import numbers
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from cascade.errors import RouterArtifactError
from verifiers import ArtifactError
from verifiers._artifacts import Artifact, load_artifact, save_artifact
from verifiers._encoder import DIMENSIONS
from verifiers._static import StaticEncoder, load_static

ENCODER_DIR = "encoder"
STATIC_DIR = "static"


class RouterKind(str, enum.Enum):
    KNN = "knn"
    MF = "mf"
    BERT = "bert"
    KNN_MF = "knn-mf"  # the mean of a kNN's and an MF's P(ok), trained on the same queries


class KnnWeighting(str, enum.Enum):
    """How the k nearest training queries are weighted (chosen by cross-validation)."""

    UNIFORM = "uniform"  # each neighbour counts the same
    DISTANCE = "distance"  # 1 / Euclidean distance of the unit vectors (scikit-learn's "distance")
    SIMILARITY = "similarity"  # cosine similarity (artifacts written before the field)


def knn_weights(sims: np.ndarray, weighting: KnnWeighting) -> np.ndarray:
    """Neighbour weights from cosine similarities (any shape)."""
    match weighting:
        case KnnWeighting.UNIFORM:
            return np.ones_like(sims)
        case KnnWeighting.DISTANCE:
            return 1.0 / np.maximum(np.sqrt(np.maximum(2.0 - 2.0 * sims, 0.0)), 1e-6)
        case KnnWeighting.SIMILARITY:
            return np.clip(sims, 1e-6, None)
    raise AssertionError(weighting)  # unreachable: the enum is closed


def knn_shrink(num: np.ndarray, den: np.ndarray, mean: np.ndarray, prior: float) -> np.ndarray:
    """The kNN estimate shrunk toward each model's global mean quality: ``num`` (..., models) is
    the weighted sum of the neighbours' quality, ``den`` (..., 1) the sum of their weights,
    ``mean`` (models,) the training mean; ``prior`` m pseudo-neighbours of weight 1 sit at
    ``mean``: (num + m·mean) / (den + m). m = 0: the plain weighted mean; m = ∞: ``mean``."""
    if math.isinf(prior):
        return np.broadcast_to(mean, num.shape).astype(np.float64)
    return (num + prior * mean) / (den + prior)


def prior_label(prior: float) -> str:
    """m as written in notes and artifacts: a number, or ``inf``."""
    return "inf" if math.isinf(prior) else f"{prior:g}"


def knn_setting_problem(k: object, prior: object) -> str | None:
    """Why (k, prior m) cannot configure a kNN router, naming the field; None when they can."""
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
        return f"`k` must be a whole number of neighbours ≥ 1 (got {k!r})"
    if isinstance(prior, bool) or not isinstance(prior, numbers.Real) or math.isnan(prior) or prior < 0:
        return f"`prior` must be a number ≥ 0 or inf (got {prior!r})"
    return None


def _prior_from_meta(value: object) -> object:
    """``prior`` in meta.json: a number, or the string ``inf`` (JSON has no infinity);
    absent in artifacts written before the field: 0, the plain kNN mean they were trained as."""
    if value is None:
        return 0.0
    if value == "inf":
        return math.inf
    return float(value) if isinstance(value, int) and not isinstance(value, bool) else value  # else: checked


class RouterEncoder(str, enum.Enum):
    """The text encoder a kNN / MF router was trained with, and must be queried with."""

    MINILM = "minilm"
    STATIC = "static"


ARTIFACT_KINDS = frozenset(f"router-{k.value}" for k in RouterKind)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


@dataclass(frozen=True, slots=True)
class NeighbourIndex:
    """Normalised training-query embeddings; cosine similarity by one matrix product."""

    embeddings: np.ndarray  # (n, d) float32, rows of unit length

    def top(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        sims = queries @ self.embeddings.T
        k = min(k, sims.shape[1])
        part = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        order = np.take_along_axis(sims, part, axis=1).argsort(axis=1)[:, ::-1]
        index = np.take_along_axis(part, order, axis=1)
        return np.take_along_axis(sims, index, axis=1), index

    def nearest(self, queries: np.ndarray) -> np.ndarray:
        return (queries @ self.embeddings.T).max(axis=1)

    def leave_one_out_nearest(self) -> np.ndarray:
        """Each training query's similarity to its nearest other training query."""
        out = np.empty(self.embeddings.shape[0], dtype=np.float32)
        for start in range(0, out.size, 1024):
            sims = self.embeddings[start:start + 1024] @ self.embeddings.T
            rows = np.arange(sims.shape[0])
            sims[rows, rows + start] = -np.inf
            out[start:start + 1024] = sims.max(axis=1)
        return out


class RouterModel(Protocol):
    kind: RouterKind
    models: tuple[str, ...]
    index: NeighbourIndex  # training queries, for cold-start detection
    min_similarity: float  # below this similarity to every training query: cold start
    expected_cost: tuple[float | None, ...]  # mean recorded cost per call, per model
    static: StaticEncoder | None  # the encoder it must be queried with; None: MiniLM

    def predict(self, texts: Sequence[str], embeddings: np.ndarray) -> np.ndarray: ...

    def save(self, directory: str | Path) -> Path: ...


@dataclass(frozen=True, slots=True)
class Header:
    """What every router artifact records besides its weights."""

    models: tuple[str, ...]
    min_similarity: float
    expected_cost: tuple[float | None, ...]
    metrics: dict[str, object] = field(default_factory=dict)
    encoder: RouterEncoder = RouterEncoder.MINILM

    def meta(self, **extra: object) -> dict[str, object]:
        return {"models": list(self.models), "min_similarity": self.min_similarity,
                "expected_cost": list(self.expected_cost), "metrics": self.metrics,
                "encoder": self.encoder.value, **extra}


def _check_encoder(header: Header, index: NeighbourIndex, static: StaticEncoder | None) -> None:
    """The recorded encoder, the static table and the index's width agree (else a router
    could be queried with embeddings from another encoder than it was trained on)."""
    if (header.encoder is RouterEncoder.STATIC) != (static is not None):
        raise RouterArtifactError(f"a router recorded as trained with the {header.encoder.value} "
                                  f"encoder {'needs' if static is None else 'cannot carry'} a static table")
    width = DIMENSIONS if static is None else static.dimensions
    if index.embeddings.shape[1] != width:
        raise RouterArtifactError(f"training embeddings are {index.embeddings.shape[1]}-dimensional; "
                                  f"the {header.encoder.value} encoder gives {width}")


def _save_static(static: StaticEncoder | None, directory: str | Path) -> None:
    if static is not None:
        static.save(Path(directory) / STATIC_DIR)


@dataclass(frozen=True, slots=True)
class KnnModel:
    """Expected quality of each model = weighted mean of its quality on the k nearest training
    queries (with 0/1 labels: the weighted share it got right), shrunk toward its mean quality
    over all training queries by ``prior`` pseudo-neighbours (``knn_shrink``; 0: no shrinking)."""

    header: Header
    index: NeighbourIndex
    labels: np.ndarray  # (n, models) quality in [0, 1]
    k: int = 10
    kind: RouterKind = RouterKind.KNN
    static: StaticEncoder | None = None  # trained on static embeddings (header.encoder static)
    weighting: KnnWeighting = KnnWeighting.SIMILARITY
    prior: float = 0.0  # m, chosen by cross-validation (``_cv.choose_knn``); math.inf: global means only

    def __post_init__(self) -> None:
        _check_encoder(self.header, self.index, self.static)
        problem = knn_setting_problem(self.k, self.prior)
        if problem is not None:
            raise RouterArtifactError(f"kNN router: {problem}")

    models = property(lambda self: self.header.models)
    min_similarity = property(lambda self: self.header.min_similarity)
    expected_cost = property(lambda self: self.header.expected_cost)

    def predict(self, texts: Sequence[str], embeddings: np.ndarray) -> np.ndarray:
        mean = self.labels.mean(axis=0, dtype=np.float64)
        if math.isinf(self.prior):  # the neighbours do not count: skip the search
            return np.broadcast_to(mean, (embeddings.shape[0], mean.size)).copy()
        sims, index = self.index.top(embeddings, self.k)
        weights = knn_weights(sims, self.weighting)[:, :, None]
        return knn_shrink((self.labels[index] * weights).sum(axis=1), weights.sum(axis=1), mean, self.prior)

    def parts(self) -> tuple[dict[str, object], dict[str, np.ndarray]]:
        """Its settings for ``meta.json`` and its arrays (also what a ``MeanModel`` saves)."""
        graded = bool(np.any((self.labels != 0) & (self.labels != 1)))
        prior = prior_label(self.prior) if math.isinf(self.prior) else self.prior
        return ({"k": self.k, "weighting": self.weighting.value, "prior": prior},
                {"embeddings": self.index.embeddings.astype(np.float16),
                 "labels": self.labels.astype(np.float32 if graded else np.uint8)})

    def save(self, directory: str | Path) -> Path:
        _save_static(self.static, directory)
        settings, arrays = self.parts()
        return save_artifact(directory, "router-knn", self.header.meta(**settings), arrays)


@dataclass(frozen=True, slots=True)
class MfModel:
    """RouteLLM's matrix factorisation, generalised to N models:
    score(m, q) = w · (normalise(P[m]) ⊙ W q) + b[m];  P(m ok | q) = sigmoid(score)."""

    header: Header
    index: NeighbourIndex
    model_embeddings: np.ndarray  # (models, dim)
    projection: np.ndarray  # (dim, embedding width: 384 for MiniLM)
    classifier: np.ndarray  # (dim,)
    bias: np.ndarray  # (models,)
    kind: RouterKind = RouterKind.MF
    static: StaticEncoder | None = None  # trained on static embeddings (header.encoder static)

    def __post_init__(self) -> None:
        _check_encoder(self.header, self.index, self.static)

    models = property(lambda self: self.header.models)
    min_similarity = property(lambda self: self.header.min_similarity)
    expected_cost = property(lambda self: self.header.expected_cost)

    def scores(self, embeddings: np.ndarray) -> np.ndarray:
        p = self.model_embeddings / np.linalg.norm(self.model_embeddings, axis=1, keepdims=True)
        projected = embeddings @ self.projection.T  # (n, dim)
        return (projected[:, None, :] * p[None, :, :]) @ self.classifier + self.bias[None, :]

    def predict(self, texts: Sequence[str], embeddings: np.ndarray) -> np.ndarray:
        return _sigmoid(self.scores(embeddings))

    def arrays(self) -> dict[str, np.ndarray]:
        """What its artifact holds (also what a ``MeanModel`` saves)."""
        return {"embeddings": self.index.embeddings.astype(np.float16),
                "model_embeddings": self.model_embeddings.astype(np.float32),
                "projection": self.projection.astype(np.float32),
                "classifier": self.classifier.astype(np.float32), "bias": self.bias.astype(np.float32)}

    def save(self, directory: str | Path) -> Path:
        _save_static(self.static, directory)
        return save_artifact(directory, "router-mf", self.header.meta(), self.arrays())


@dataclass(frozen=True, slots=True)
class MeanModel:
    """The mean of a kNN and an MF router's P(ok), both trained on the same queries with the
    same encoder (one index, one header). The two err differently — kNN's neighbourhood means
    are cautious, MF's logistic scores sharp and often over-confident — so their mean is
    better calibrated than either (cross-fitted log loss on train, docs/benchmarks.md)."""

    knn: KnnModel
    mf: MfModel
    kind: RouterKind = RouterKind.KNN_MF

    def __post_init__(self) -> None:
        if self.knn.models != self.mf.models:
            raise RouterArtifactError(f"kNN + MF router: the parts route different models "
                                      f"({', '.join(self.knn.models)} / {', '.join(self.mf.models)})")
        if self.knn.header.encoder is not self.mf.header.encoder:
            raise RouterArtifactError("kNN + MF router: the parts were trained with different encoders")
        if self.knn.index.embeddings.shape != self.mf.index.embeddings.shape:
            raise RouterArtifactError("kNN + MF router: the parts were trained on different queries")

    header = property(lambda self: self.knn.header)
    index = property(lambda self: self.knn.index)
    models = property(lambda self: self.knn.models)
    min_similarity = property(lambda self: self.knn.min_similarity)
    expected_cost = property(lambda self: self.knn.expected_cost)
    static = property(lambda self: self.knn.static)

    def predict(self, texts: Sequence[str], embeddings: np.ndarray) -> np.ndarray:
        return (self.knn.predict(texts, embeddings) + self.mf.predict(texts, embeddings)) / 2.0  # type: ignore[no-any-return]

    def save(self, directory: str | Path) -> Path:
        _save_static(self.static, directory)
        settings, arrays = self.knn.parts()
        return save_artifact(directory, "router-knn-mf",
                             self.header.meta(**settings, mf_metrics=self.mf.header.metrics),
                             {**arrays, **self.mf.arrays()})


@dataclass(slots=True)
class BertModel:
    """The MiniLM encoder fine-tuned with one logistic head per model (multi-label)."""

    header: Header
    index: NeighbourIndex
    tokenizer: Any
    encoder: Any  # transformers BertModel
    head: Any  # torch.nn.Linear(384, models)
    max_length: int = 256
    kind: RouterKind = RouterKind.BERT
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    models = property(lambda self: self.header.models)
    min_similarity = property(lambda self: self.header.min_similarity)
    expected_cost = property(lambda self: self.header.expected_cost)
    static = property(lambda self: None)  # BERT embeds with its own fine-tuned transformer

    def logits(self, texts: Sequence[str]) -> Any:
        batch = self.tokenizer([t or " " for t in texts], padding=True, truncation=True,
                               max_length=self.max_length, return_tensors="pt")
        hidden = self.encoder(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return self.head(pooled)

    def predict(self, texts: Sequence[str], embeddings: np.ndarray, batch_size: int = 32) -> np.ndarray:
        import torch

        out = []
        with self._lock, torch.inference_mode():
            self.encoder.eval()
            for i in range(0, len(texts), batch_size):
                out.append(torch.sigmoid(self.logits(texts[i:i + batch_size])).numpy())
        return np.concatenate(out) if out else np.zeros((0, len(self.models)))

    def save(self, directory: str | Path) -> Path:
        folder = Path(directory)
        self.encoder.save_pretrained(str(folder / ENCODER_DIR), safe_serialization=True)
        self.tokenizer.save_pretrained(str(folder / ENCODER_DIR))
        return save_artifact(folder, "router-bert", self.header.meta(max_length=self.max_length), {
            "embeddings": self.index.embeddings.astype(np.float16),
            "head.weight": self.head.weight.detach().numpy(), "head.bias": self.head.bias.detach().numpy()})


def _header(artifact: Artifact) -> Header:
    meta = artifact.meta
    models = meta.get("models")
    if not isinstance(models, list) or not models or not all(isinstance(m, str) for m in models):
        raise RouterArtifactError(f"{artifact.directory}/meta.json: `models` is not a list of names")
    costs = meta.get("expected_cost") or [None] * len(models)
    if not isinstance(costs, list) or len(costs) != len(models):
        raise RouterArtifactError(f"{artifact.directory}/meta.json: `expected_cost` does not match `models`")
    try:  # artifacts from before the field were all trained on MiniLM
        encoder = RouterEncoder(meta.get("encoder", RouterEncoder.MINILM.value))
    except ValueError:
        raise RouterArtifactError(f"{artifact.directory}/meta.json: unknown `encoder` "
                                  f"{meta.get('encoder')!r} (minilm or static)") from None
    return Header(tuple(models), float(meta.get("min_similarity", -1.0)),  # type: ignore[arg-type]
                  tuple(None if c is None else float(c) for c in costs),
                  dict(meta.get("metrics") or {}), encoder)  # type: ignore[arg-type]


def _static(artifact: Artifact, header: Header) -> StaticEncoder | None:
    """The static table saved inside the router artifact (checked against its own manifest)."""
    if header.encoder is not RouterEncoder.STATIC:
        return None
    try:
        return load_static(artifact.directory / STATIC_DIR)
    except ArtifactError as exc:
        raise RouterArtifactError(f"{artifact.directory}: the router's static encoder: {exc}") from None


def _array(artifact: Artifact, name: str, shape: tuple[int | None, ...]) -> np.ndarray:
    value = artifact.arrays.get(name)
    if value is None:
        raise RouterArtifactError(f"{artifact.directory}: the weights hold no {name!r}")
    if value.ndim != len(shape) or any(s is not None and s != v for s, v in zip(shape, value.shape)):
        raise RouterArtifactError(f"{artifact.directory}: {name!r} has shape {value.shape}, "
                                  f"expected {tuple('*' if s is None else s for s in shape)}")
    return value


def load_router_model(directory: str | Path, *, sha256: str | None = None) -> RouterModel:
    """Load a ``cascade train-router`` artifact after checking every file's hash (and the
    manifest's, when pinned)."""
    try:
        artifact = load_artifact(directory, ARTIFACT_KINDS, sha256=sha256)
    except ArtifactError as exc:
        raise RouterArtifactError(str(exc)) from None
    header = _header(artifact)
    kind = RouterKind(artifact.kind.removeprefix("router-"))
    if kind is RouterKind.BERT and header.encoder is not RouterEncoder.MINILM:
        raise RouterArtifactError(f"{directory}: a BERT router is always the MiniLM transformer, "
                                  f"not {header.encoder.value!r}")
    static = _static(artifact, header)
    width = DIMENSIONS if static is None else static.dimensions
    index = NeighbourIndex(_array(artifact, "embeddings", (None, width)).astype(np.float32))
    match kind:  # the shapes checked here are what the models' own checks need
        case RouterKind.KNN:
            return _load_knn(artifact, header, index, static)
        case RouterKind.MF:
            return _load_mf(artifact, header, index, static)
        case RouterKind.KNN_MF:
            metrics = artifact.meta.get("mf_metrics")
            if not isinstance(metrics, dict):
                raise RouterArtifactError(f"{directory}/meta.json: `mf_metrics` is not a mapping")
            return MeanModel(_load_knn(artifact, header, index, static),
                             _load_mf(artifact, dataclasses.replace(header, metrics=dict(metrics)), index, static))
        case RouterKind.BERT:
            return _load_bert(artifact, header, index)
    raise RouterArtifactError(f"{directory}: unknown router kind {artifact.kind!r}")  # unreachable


def _load_knn(artifact: Artifact, header: Header, index: NeighbourIndex,
              static: StaticEncoder | None) -> KnnModel:
    directory = artifact.directory
    labels = _array(artifact, "labels", (index.embeddings.shape[0], len(header.models))).astype(np.float32)
    try:
        weighting = KnnWeighting(artifact.meta.get("weighting", KnnWeighting.SIMILARITY.value))
    except ValueError:
        raise RouterArtifactError(f"{directory}/meta.json: unknown kNN `weighting` "
                                  f"{artifact.meta.get('weighting')!r}") from None
    k, prior = artifact.meta.get("k", 10), _prior_from_meta(artifact.meta.get("prior"))
    problem = knn_setting_problem(k, prior)
    if problem is not None:
        raise RouterArtifactError(f"{directory}/meta.json: {problem}")
    return KnnModel(header, index, labels, k, static=static,  # type: ignore[arg-type]
                    weighting=weighting, prior=prior)  # type: ignore[arg-type]


def _load_mf(artifact: Artifact, header: Header, index: NeighbourIndex,
             static: StaticEncoder | None) -> MfModel:
    width = index.embeddings.shape[1]
    p = _array(artifact, "model_embeddings", (len(header.models), None))
    return MfModel(header, index, p, _array(artifact, "projection", (p.shape[1], width)),
                   _array(artifact, "classifier", (p.shape[1],)), _array(artifact, "bias", (len(header.models),)),
                   static=static)


def _load_bert(artifact: Artifact, header: Header, index: NeighbourIndex) -> BertModel:
    import torch

    from verifiers._encoder import load_pretrained

    folder = artifact.directory / ENCODER_DIR
    tokenizer, encoder = load_pretrained(folder, use_safetensors=True)
    encoder.eval()
    weight = _array(artifact, "head.weight", (len(header.models), encoder.config.hidden_size))
    head = torch.nn.Linear(encoder.config.hidden_size, len(header.models))
    with torch.no_grad():
        head.weight.copy_(torch.from_numpy(weight))
        head.bias.copy_(torch.from_numpy(_array(artifact, "head.bias", (len(header.models),))))
    return BertModel(header, index, tokenizer, encoder, head,
                     int(artifact.meta.get("max_length", 256)))  # type: ignore[arg-type]
