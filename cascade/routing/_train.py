"""Training routers from recorded data (``cascade train-router``). CPU-bound; call it from a
thread or a script, never on the event loop. Two kinds of data:

- per-model correctness (any RouterBench-format CSV, or a RouteLLM response CSV): an (n, models)
  0/1 matrix, with each model's mean recorded cost when the data has costs;
- pairwise preferences (JSON lines ``{"prompt", "model_a", "model_b", "winner"}`` with winner
  ``model_a`` | ``model_b`` | ``tie``, as in Chatbot Arena): MF only.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cascade.errors import ReplayDataError, RoutingDataError
from cascade.providers import load_table
from cascade.routing._cv import FOLDS, KNN_KS, KNN_PRIORS, choose_knn, fold_rows, score
from cascade.routing._models import (
    BertModel,
    Header,
    KnnModel,
    KnnWeighting,
    MeanModel,
    MfModel,
    NeighbourIndex,
    RouterEncoder,
    knn_setting_problem,
)
from verifiers import conversation_text
from verifiers._encoder import fine_tune, load_minilm
from verifiers._static import StaticEncoder
from verifiers._trained import QUERY_TAIL

ROUTER_MAX_CHARS = QUERY_TAIL  # the conversation's end routers (and the verifier) see: the question, not a shared few-shot prefix
COLD_START_QUANTILE = 0.01


def router_text(prompt: str, max_chars: int = ROUTER_MAX_CHARS) -> str:
    """A recorded single-turn prompt as the engine's routers see it at run time."""
    return conversation_text([("user", prompt)], max_chars)


@dataclass(frozen=True, slots=True)
class CorrectnessData:
    source: str
    texts: tuple[str, ...]
    models: tuple[str, ...]
    labels: np.ndarray  # (n, models) float32 quality in [0, 1] (0/1 correctness or graded)
    costs: np.ndarray | None  # (n, models) recorded cost per call, when the data has costs
    dropped: int = 0  # rows without a label for some model


@dataclass(frozen=True, slots=True)
class Preference:
    text: str
    a: int  # model indices
    b: int
    outcome: float  # 1: a wins, 0: b wins, 0.5: tie


@dataclass(frozen=True, slots=True)
class PreferenceData:
    source: str
    models: tuple[str, ...]
    pairs: tuple[Preference, ...]


def correctness_data(path: str | Path, models: Sequence[str] | None = None,
                     max_chars: int = ROUTER_MAX_CHARS) -> CorrectnessData:
    """Rows with a label for every chosen model; missing model columns and empty prompts are
    ``RoutingDataError``s naming the file (and row)."""
    try:
        table = load_table(path)
    except ReplayDataError as exc:
        raise RoutingDataError(path, str(exc)) from None
    if not table.models or not table.has_labels_per_model:
        raise RoutingDataError(path, "routers need one labelled answer per model per query "
                               "(a RouterBench or RouteLLM CSV)")
    chosen = tuple(models) if models else table.models
    missing = [m for m in chosen if m not in table.models]
    if missing:
        raise RoutingDataError(path, f"model column(s) {', '.join(missing)} not in the data "
                               f"(models: {', '.join(table.models)})")
    if len(chosen) < 2:
        raise RoutingDataError(path, "a router needs at least two models")
    texts, labels, costs, dropped = [], [], [], 0
    for number, row in enumerate(table.rows, start=1):
        records = [table.record(row, m) for m in chosen]
        if any(r.correct is None for r in records):
            dropped += 1
            continue
        if not row.prompt.strip():
            raise RoutingDataError(path, "empty query", row=number)
        texts.append(router_text(row.prompt, max_chars))
        labels.append([float(r.correct) for r in records])  # type: ignore[arg-type]
        costs.append([r.cost if r.cost is not None else np.nan for r in records])
    if not texts:
        raise RoutingDataError(path, "no row has a label for every chosen model")
    cost = np.array(costs, dtype=np.float64)
    return CorrectnessData(str(path), tuple(texts), chosen, np.array(labels, dtype=np.float32),
                           None if np.isnan(cost).any() else cost, dropped)


def preference_data(path: str | Path, max_chars: int = ROUTER_MAX_CHARS) -> PreferenceData:
    outcomes = {"model_a": 1.0, "model_b": 0.0, "tie": 0.5}
    models: dict[str, int] = {}
    pairs = []
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise RoutingDataError(path, f"cannot read: {exc.strerror}") from None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            prompt, a, b, winner = item["prompt"], item["model_a"], item["model_b"], item["winner"]
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise RoutingDataError(path, f"not a preference record ({exc!r}); expected "
                                   '{"prompt", "model_a", "model_b", "winner"}', row=number) from None
        if not isinstance(prompt, str) or not prompt.strip():
            raise RoutingDataError(path, "empty query", row=number)
        if winner not in outcomes or not isinstance(a, str) or not isinstance(b, str) or a == b:
            raise RoutingDataError(path, f"winner must be model_a, model_b or tie, between two "
                                   f"different models (got {winner!r})", row=number)
        pairs.append(Preference(router_text(prompt, max_chars), models.setdefault(a, len(models)),
                                models.setdefault(b, len(models)), outcomes[winner]))
    if not pairs:
        raise RoutingDataError(path, "no preference records")
    return PreferenceData(str(path), tuple(models), tuple(pairs))


def _embed(texts: Sequence[str], static: StaticEncoder | None = None) -> np.ndarray:
    """The training queries' embeddings: the static encoder's when given, else MiniLM's."""
    if static is not None:
        return static.encode(list(texts))
    from verifiers import shared_encoder

    return shared_encoder().encode(list(texts))


def _index(texts: Sequence[str], embeddings: np.ndarray | None,
           static: StaticEncoder | None) -> NeighbourIndex:
    """Precomputed ``embeddings`` must come from the encoder the router is trained with."""
    if embeddings is None:
        return NeighbourIndex(_embed(texts, static))
    width = 384 if static is None else static.dimensions
    if embeddings.shape != (len(texts), width):
        raise ValueError(f"embeddings of shape {embeddings.shape}; the "
                         f"{'static' if static is not None else 'MiniLM'} encoder gives ({len(texts)}, {width})")
    return NeighbourIndex(np.asarray(embeddings, dtype=np.float32))


def _header(index: NeighbourIndex, models: Sequence[str], costs: np.ndarray | None,
            quantile: float, static: StaticEncoder | None = None, **metrics: object) -> Header:
    loo = index.leave_one_out_nearest() if index.embeddings.shape[0] > 1 else np.array([-1.0])
    expected = [None] * len(models) if costs is None else [float(c) for c in costs.mean(axis=0)]
    encoder = RouterEncoder.MINILM if static is None else RouterEncoder.STATIC
    return Header(tuple(models), float(np.quantile(loo, quantile)), tuple(expected),
                  {"queries": int(index.embeddings.shape[0]), "cold_start_quantile": quantile, **metrics},
                  encoder)


def _check_labels(data: CorrectnessData) -> None:
    if data.labels.min() == data.labels.max():
        raise RoutingDataError(data.source, "every label is the same: nothing to learn")


def train_knn(data: CorrectnessData, *, k: int | None = None, weighting: KnnWeighting | None = None,
              quantile: float = COLD_START_QUANTILE, embeddings: np.ndarray | None = None,
              static: StaticEncoder | None = None, prior: float | None = None) -> KnnModel:
    """``k`` / ``weighting`` / ``prior`` (m, the pull toward each model's mean quality) None:
    chosen by 5-fold cross-validation on ``data`` over the ones left None (``_cv.choose_knn``;
    the choice and its score are recorded in the artifact's metrics). ``static``: train on
    (and ship) a static encoder's embeddings instead of MiniLM's."""
    _check_labels(data)
    problem = knn_setting_problem(1 if k is None else k, 0.0 if prior is None else prior)
    if problem is not None:
        raise RoutingDataError(data.source, problem)
    index = _index(data.texts, embeddings, static)
    metrics: dict[str, object] = {"dropped": data.dropped}
    if k is None or weighting is None or prior is None:
        choice = choose_knn(index.embeddings, data.labels, data.costs,
                            ks=KNN_KS if k is None else (k,),
                            weightings=tuple(KnnWeighting) if weighting is None else (weighting,),
                            priors=KNN_PRIORS if prior is None else (prior,))
        k = choice.k if k is None else k  # a given setting stands (a tiny train set can clip CV's k)
        weighting = choice.weighting if weighting is None else weighting
        prior = choice.prior if prior is None else prior
        metrics.update(cv_score=choice.score, cv="aiq" if data.costs is not None else "-mse")
        if not math.isnan(choice.score_without_prior):
            metrics["cv_score_without_prior"] = choice.score_without_prior
    return KnnModel(_header(index, data.models, data.costs, quantile, static, **metrics),
                    index, data.labels, k, static=static, weighting=weighting, prior=prior)


@dataclass(frozen=True, slots=True)
class MfSettings:
    dim: int = 32
    epochs: int = 300
    weight_decay: float = 1e-4
    lr: float = 3e-3


def mf_options(mf: MfSettings | None) -> dict[str, float | int]:
    """``train_mf`` keyword arguments fixing these settings (none: chosen by cross-validation)."""
    return {} if mf is None else {"dim": mf.dim, "epochs": mf.epochs, "weight_decay": mf.weight_decay}


MF_DIMS = (16, 64)
MF_WEIGHT_DECAYS = (1e-4, 1e-2)
MF_EPOCHS = (100, 200, 400)  # snapshots of one training run per (dim, weight decay)


@dataclass(frozen=True, slots=True)
class MfChoice:
    settings: MfSettings
    score: float
    scores: dict[str, float]


def _mf_parameters(q, m: int, dim: int, seed: int):  # type: ignore[no-untyped-def]
    import torch

    torch.manual_seed(seed)
    return (torch.nn.Parameter(torch.randn(m, dim) * 0.1),
            torch.nn.Parameter(torch.randn(dim, q.shape[1]) / q.shape[1] ** 0.5),
            torch.nn.Parameter(torch.randn(dim) * 0.1), torch.nn.Parameter(torch.zeros(m)))


def _mf_scores(q, params):  # type: ignore[no-untyped-def]
    import torch

    p, w_proj, w_cls, bias = params
    return ((q @ w_proj.T)[:, None, :] * torch.nn.functional.normalize(p, dim=1)[None]) @ w_cls + bias


def _mf_run(q, m: int, objective, settings: MfSettings, seed: int,  # type: ignore[no-untyped-def]
            snapshots: Sequence[int] = (), held=None):
    """Full-batch AdamW; returns (parameters, final loss, held-out sigmoid scores per snapshot)."""
    import torch

    params = _mf_parameters(q, m, settings.dim, seed)
    optimiser = torch.optim.AdamW(list(params), lr=settings.lr, weight_decay=settings.weight_decay)
    seen: dict[int, np.ndarray] = {}
    loss = torch.zeros(())
    for epoch in range(1, settings.epochs + 1):
        optimiser.zero_grad()
        loss = objective(_mf_scores(q, params))
        loss.backward()
        optimiser.step()
        if epoch in snapshots:
            with torch.no_grad():
                seen[epoch] = torch.sigmoid(_mf_scores(held, params)).numpy().astype(np.float64)
    return params, float(loss.detach()), seen


def choose_mf(embeddings: np.ndarray, labels: np.ndarray, cost: np.ndarray | None, *,
              dims: Sequence[int] = MF_DIMS, weight_decays: Sequence[float] = MF_WEIGHT_DECAYS,
              epochs: Sequence[int] = MF_EPOCHS, folds: int = FOLDS, seed: int = 0) -> MfChoice:
    """MF's (dimension, weight decay, epochs) by cross-validation (``_cv``'s folds and score);
    epochs are snapshots of one run per fold, so the grid costs dims × decays × folds runs."""
    import torch

    n = labels.shape[0]
    held = fold_rows(n, folds, seed)
    grid = [(d, wd) for d in dims for wd in weight_decays]
    oof = {(d, wd, e): np.zeros(labels.shape) for d, wd in grid for e in epochs}
    loss_fn = torch.nn.BCEWithLogitsLoss()
    for rows in held:
        fit = np.setdiff1d(np.arange(n), rows)
        q, target = torch.from_numpy(embeddings[fit].astype(np.float32)), torch.from_numpy(labels[fit].astype(np.float32))
        held_q = torch.from_numpy(embeddings[rows].astype(np.float32))
        for d, wd in grid:
            _, _, seen = _mf_run(q, labels.shape[1], lambda s: loss_fn(s, target),  # noqa: B023
                                 MfSettings(d, max(epochs), wd), seed, epochs, held_q)
            for e, p in seen.items():
                oof[(d, wd, e)][rows] = p
    scores = {v: score(p, labels, cost) for v, p in oof.items()}
    best = max(scores, key=lambda v: (round(scores[v], 12), -v[0], v[1], -v[2]))  # ties: smaller, more regularised, shorter
    return MfChoice(MfSettings(best[0], best[2], best[1]), scores[best],
                    {f"dim={d}, weight_decay={wd:g}, epochs={e}": s for (d, wd, e), s in scores.items()})


def train_mf(data: CorrectnessData | PreferenceData, *, dim: int | None = None, epochs: int | None = None,
             lr: float = 3e-3, weight_decay: float | None = None, seed: int = 0,
             quantile: float = COLD_START_QUANTILE, embeddings: np.ndarray | None = None,
             static: StaticEncoder | None = None) -> MfModel:
    """Full-batch AdamW: BCE on per-model quality (0/1 or graded: soft targets), or on
    sigmoid(s_a - s_b) for preferences. On quality data, settings left None are chosen by
    5-fold cross-validation (``choose_mf``); preferences use 32 dimensions, 300 epochs and
    weight decay 1e-4. ``static``: train on (and ship) a static encoder's embeddings."""
    import torch

    texts = data.texts if isinstance(data, CorrectnessData) else tuple(p.text for p in data.pairs)
    if isinstance(data, CorrectnessData):
        _check_labels(data)
    q = torch.from_numpy(_index(texts, embeddings, static).embeddings)
    settings, metrics = MfSettings(), {}
    if isinstance(data, CorrectnessData) and None in (dim, epochs, weight_decay):
        choice = choose_mf(q.numpy(), data.labels, data.costs,
                           dims=MF_DIMS if dim is None else (dim,),
                           weight_decays=MF_WEIGHT_DECAYS if weight_decay is None else (weight_decay,),
                           epochs=MF_EPOCHS if epochs is None else (epochs,), seed=seed)
        settings = choice.settings
        metrics = {"cv_score": choice.score, "cv": "aiq" if data.costs is not None else "-mse"}
    settings = MfSettings(dim or settings.dim, epochs or settings.epochs,
                          settings.weight_decay if weight_decay is None else weight_decay, lr)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    if isinstance(data, CorrectnessData):
        target = torch.from_numpy(data.labels)
        objective = lambda s: loss_fn(s, target)  # noqa: E731
    else:
        rows = torch.arange(len(data.pairs))
        a = torch.tensor([x.a for x in data.pairs])
        b = torch.tensor([x.b for x in data.pairs])
        won = torch.tensor([x.outcome for x in data.pairs], dtype=torch.float32)
        objective = lambda s: loss_fn(s[rows, a] - s[rows, b], won)  # noqa: E731
    (p, w_proj, w_cls, bias), loss, _ = _mf_run(q, len(data.models), objective, settings, seed)
    index = NeighbourIndex(q.numpy().astype(np.float32))
    costs = data.costs if isinstance(data, CorrectnessData) else None
    header = _header(index, data.models, costs, quantile, static, final_loss=loss, epochs=settings.epochs,
                     dim=settings.dim, weight_decay=settings.weight_decay, **metrics,
                     objective="correctness" if isinstance(data, CorrectnessData) else "preference")
    return MfModel(header, index, p.detach().numpy(), w_proj.detach().numpy(),
                   w_cls.detach().numpy(), bias.detach().numpy(), static=static)


def train_knn_mf(data: CorrectnessData, *, knn_k: int | None = None, weighting: KnnWeighting | None = None,
                 prior: float | None = None, mf: MfSettings | None = None,
                 quantile: float = COLD_START_QUANTILE, embeddings: np.ndarray | None = None,
                 static: StaticEncoder | None = None) -> MeanModel:
    """A kNN and an MF router on the same queries and embeddings, answering with the mean of
    their P(ok) (``MeanModel``); settings left None are chosen by cross-validation for each
    part, as ``train_knn`` and ``train_mf`` do."""
    index = _index(data.texts, embeddings, static)
    knn = train_knn(data, k=knn_k, weighting=weighting, prior=prior, quantile=quantile,
                    embeddings=index.embeddings, static=static)
    return MeanModel(knn, train_mf(data, quantile=quantile, embeddings=index.embeddings, static=static,
                                   **mf_options(mf)))  # type: ignore[arg-type]


def train_bert(data: CorrectnessData, *, epochs: int = 2, batch_size: int = 16, lr: float = 3e-5,
               max_length: int = 256, seed: int = 0, quantile: float = COLD_START_QUANTILE,
               base: Path | None = None, embeddings: np.ndarray | None = None,
               limit_steps: int | None = None) -> BertModel:
    """Fine-tune MiniLM with one logistic head per model (multi-label BCE)."""
    import torch

    _check_labels(data)
    torch.manual_seed(seed)
    tokenizer, encoder = load_minilm(base)
    head = torch.nn.Linear(encoder.config.hidden_size, len(data.models))
    with torch.no_grad():  # start each head at its model's base rate
        head.bias.copy_(torch.logit(torch.from_numpy(data.labels.mean(axis=0)).clamp(0.02, 0.98)))
    index = _index(data.texts, embeddings, None)
    model = BertModel(_header(index, data.models, data.costs, quantile), index, tokenizer,
                      encoder, head, max_length)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    steps, loss = fine_tune(
        (encoder, head), np.arange(len(data.texts)),
        lambda chosen: loss_fn(model.logits([data.texts[i] for i in chosen]),
                               torch.from_numpy(data.labels[chosen])),
        epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, limit_steps=limit_steps)
    model.header.metrics.update({"epochs": epochs, "steps": steps, "final_loss": loss})
    return model
