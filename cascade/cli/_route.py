"""``cascade train-router`` and ``cascade calibrate-router``."""

from __future__ import annotations

import enum
import functools
import os
import time
from pathlib import Path
from typing import Annotated

import anyio
import numpy as np
import typer
from rich.table import Table

from cascade.tuning._route_calibrate import RouteCalibration, RouteTarget, calibrate_router
from cascade.cli._app import EXIT_BAD_INPUT, EXIT_RUN_FAILED, _fail, app, err, out, output_file, written
from cascade.tuning._unified_calibrate import train_unified
from cascade.errors import CascadeError
from cascade.policy import load_policy
from cascade.policy._writeback import with_router_thresholds
from cascade.routing import (
    KnnModel,
    MeanModel,
    MfModel,
    RouteCalibrationError,
    RouterEncoder,
    RouterModel,
    correctness_data,
    preference_data,
    router_embed,
    train_bert,
    train_knn,
    train_knn_mf,
    train_mf,
)
from cascade.routing._models import prior_label
from verifiers import ArtifactError, StaticEncoder, auroc, distil_static, load_static


class RouterChoice(str, enum.Enum):
    KNN = "knn"
    MF = "mf"
    KNN_MF = "knn-mf"  # the mean of a kNN's and an MF's P(ok), one artifact
    BERT = "bert"
    UNIFIED = "unified"  # the unified decision's artifact, for a routing.mode unified policy


class EncoderChoice(str, enum.Enum):
    MINILM = "minilm"
    STATIC = "static"


def _static(encoder: EncoderChoice, kind: RouterChoice, table: Path | None) -> StaticEncoder | None:
    if encoder is EncoderChoice.MINILM:
        if table is not None:
            raise _fail("--static-table goes with --encoder static", EXIT_BAD_INPUT)
        return None
    if kind in (RouterChoice.BERT, RouterChoice.UNIFIED):
        raise _fail("--encoder static is for knn and mf: a BERT router fine-tunes the MiniLM "
                    "transformer itself", EXIT_BAD_INPUT)
    if table is None:
        started = time.perf_counter()
        static = distil_static()
        out.print(f"distilled a static encoder from MiniLM in {time.perf_counter() - started:.0f} s",
                  highlight=False)
        return static
    try:
        return load_static(table)
    except ArtifactError as exc:
        raise _fail(str(exc), EXIT_BAD_INPUT) from None


def _train(kind: RouterChoice, data: Path, models: list[str] | None, pairwise: bool,
           epochs: int | None, k: int | None, static: StaticEncoder | None = None) -> RouterModel:
    if pairwise:
        if kind is not RouterChoice.MF:
            raise _fail("--pairwise trains MF routers only", EXIT_BAD_INPUT)
        return train_mf(preference_data(data), static=static, **({"epochs": epochs} if epochs else {}))
    labelled = correctness_data(data, models)
    match kind:
        case RouterChoice.KNN:
            return train_knn(labelled, k=k, static=static)
        case RouterChoice.MF:
            return train_mf(labelled, static=static, **({"epochs": epochs} if epochs else {}))
        case RouterChoice.KNN_MF:
            if epochs:
                raise _fail("--epochs: the MF half of knn-mf chooses its epochs by cross-validation "
                            "(with the other MF settings)", EXIT_BAD_INPUT)
            return train_knn_mf(labelled, knn_k=k, static=static)
        case RouterChoice.BERT:
            return train_bert(labelled, **({"epochs": epochs} if epochs else {}))
        case RouterChoice.UNIFIED:
            raise AssertionError(kind)  # train_unified_command handles it
    raise AssertionError(kind)  # unreachable: the enum is closed


def _held_out(model: RouterModel, test: Path) -> Table:
    data = correctness_data(test, list(model.models))
    x = router_embed(model)(list(data.texts))
    p = model.predict(list(data.texts), x)
    table = Table(title=f"held out: {test.name} ({len(data.texts)} queries)", title_justify="left")
    for column in ("model", "accuracy", "mean P(ok)", "AUROC"):
        table.add_column(column)
    for j, name in enumerate(model.models):
        labels = data.labels[:, j].astype(bool)
        score = auroc(p[:, j], labels) if 0 < labels.mean() < 1 else None
        table.add_row(name, f"{labels.mean():.3f}", f"{p[:, j].mean():.3f}",
                      "-" if score is None else f"{score:.3f}")
    return table


@app.command("train-router")
def train_router_command(
    kind: Annotated[RouterChoice, typer.Option(help="knn | mf | knn-mf (the mean of both) | bert | unified (the unified "
                                               "decision of a routing.mode unified --policy)")],
    data: Annotated[Path, typer.Option(help="per-model correctness (RouterBench or RouteLLM CSV), "
                                       "or preference JSON lines with --pairwise")],
    out_dir: Annotated[Path | None, typer.Option("--out", help="artifact directory to write "
                                                 "(unified: the JSON file; default the policy's "
                                                 "routing.unified.artifact)")] = None,
    models: Annotated[str | None, typer.Option(help="comma-separated model columns (default: all)")] = None,
    pairwise: Annotated[bool, typer.Option(help="data is {prompt, model_a, model_b, winner} lines")] = False,
    epochs: Annotated[int | None, typer.Option(help="MF / BERT training epochs")] = None,
    k: Annotated[int | None, typer.Option(
        help="kNN neighbours (default: k and the neighbour weighting chosen by 5-fold cross-validation)")] = None,
    test: Annotated[Path | None, typer.Option(help="held-out data to report AUROC per model on")] = None,
    encoder: Annotated[EncoderChoice | None, typer.Option(
        help="knn / mf: embed with the MiniLM transformer (~30 ms a query here; the default) or a "
        "static encoder distilled from it (< 1 ms; carried inside the artifact)")] = None,
    static_table: Annotated[Path | None, typer.Option(
        help="with --encoder static: a saved static encoder (verifiers.StaticEncoder.save) "
        "instead of distilling one now (about a minute)")] = None,
    policy: Annotated[Path | None, typer.Option(
        help="unified: the routing.mode unified policy whose tiers, router and unified.answer "
        "the fit uses")] = None,
    folds: Annotated[int, typer.Option(help="unified: folds of the cross-fitted router priors")] = 5,
) -> None:
    """Train a router from recorded data; the artifact is safetensors + JSON with sha256 hashes.

    --kind unified --policy P.yaml: fit the unified decision's artifact (JSON) for a
    routing.mode unified policy: each tier's recorded answers, costs and quality through the
    engine, priors cross-fitted with the policy's router kind; the policy's router artifact is
    reused when it exists, else trained on all the data and written where the policy names it."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    if kind is RouterChoice.UNIFIED:
        extra = [flag for flag, given in (("--models", models), ("--pairwise", pairwise), ("--epochs", epochs),
                                          ("--k", k), ("--test", test)) if given]
        if extra:
            raise _fail(f"{', '.join(extra)}: not for --kind unified (the policy's tiers and "
                        "router settings are used)", EXIT_BAD_INPUT)
        if policy is None:
            raise _fail("--kind unified needs --policy (a routing.mode unified policy)", EXIT_BAD_INPUT)
        return _train_unified(policy, data, out_dir, encoder, static_table, folds)
    if policy is not None:
        raise _fail("--policy goes with --kind unified", EXIT_BAD_INPUT)
    if out_dir is None:
        raise _fail("--out DIR: where to write the router artifact", EXIT_BAD_INPUT)
    started = time.perf_counter()
    chosen = [m.strip() for m in models.split(",")] if models else None
    try:
        static = _static(encoder or EncoderChoice.MINILM, kind, static_table)
        model = _train(kind, data, chosen, pairwise, epochs, k, static)
        folder = model.save(out_dir)
        report = _held_out(model, test) if test is not None else None
    except CascadeError as exc:
        raise _fail(str(exc), EXIT_BAD_INPUT) from None
    metrics = model.header.metrics  # type: ignore[attr-defined]
    out.print(f"{kind.value} router for {len(model.models)} models on {metrics.get('queries')} "
              f"queries ({metrics.get('dropped', 0)} rows without every label dropped); "
              f"{model.header.encoder.value} embeddings; cold start "  # type: ignore[attr-defined]
              f"below similarity {model.min_similarity:.3f}; trained in "
              f"{time.perf_counter() - started:.1f} s -> {folder}", highlight=False)
    settings = _settings_line(model)
    if settings:
        out.print(settings, highlight=False)
    if report is not None:
        out.print(report)


def _settings_line(model: RouterModel) -> str | None:
    """The router's settings and where they came from (cross-validation or the flags)."""
    metrics = model.header.metrics  # type: ignore[attr-defined]
    if isinstance(model, MeanModel):
        knn, mf = _settings_line(model.knn), _settings_line(model.mf)
        return None if knn is None or mf is None else f"{knn}; MF {mf.removeprefix('settings: ')}"
    if isinstance(model, KnnModel):
        what = f"k={model.k}, {model.weighting.value} weighting, prior m={prior_label(model.prior)}"
    elif isinstance(model, MfModel):
        what = (f"dim={metrics.get('dim')}, epochs={metrics.get('epochs')}, "
                f"weight_decay={metrics.get('weight_decay')}")
    else:
        return None
    score = metrics.get("cv_score")
    how = (f" (those not given as options chosen by 5-fold cross-validation on the data, "
           f"{metrics.get('cv')} {score:.4f})" if isinstance(score, float) else " (as given)")
    return f"settings: {what}{how}"


def _train_unified(policy: Path, data: Path, out_file: Path | None, encoder: EncoderChoice | None,
                   static_table: Path | None, folds: int) -> None:
    started = time.perf_counter()
    if static_table is not None and encoder is not EncoderChoice.STATIC:
        raise _fail("--static-table goes with --encoder static", EXIT_BAD_INPUT)

    def static() -> StaticEncoder:
        return _static(EncoderChoice.STATIC, RouterChoice.KNN, static_table)  # type: ignore[return-value]

    try:
        loaded = load_policy(policy)
        fit = anyio.run(functools.partial(
            train_unified, loaded, data, policy.parent, out=out_file,
            encoder=None if encoder is None else RouterEncoder(encoder.value), static=static,
            folds=folds, progress=lambda text: err.print(f"{text} ...", highlight=False)))
    except CascadeError as exc:
        raise _fail(str(exc), EXIT_BAD_INPUT) from None
    router = "trained on all the data and written to" if fit.router_trained else "reused from"
    out.print(f"router ({fit.router}) {router} {fit.router_artifact}", highlight=False)
    table = Table(title=f"unified fit on {data.name}: {fit.queries} queries ({fit.dropped} rows without "
                  f"every tier's label dropped), priors cross-fitted over {fit.folds} folds",
                  title_justify="left")
    for column in ("tier", "model", "quality", "mean cost", "AUROC of prior"):
        table.add_column(column)
    for j, name in enumerate(fit.tiers):
        score = fit.prior_auroc[j]
        table.add_row(name, fit.models[j], f"{fit.quality[j]:.4f}", f"${fit.cost[j]:.6f}",
                      "-" if score is None else f"{score:.3f}")
    out.print(table)
    out.print(f"unified decision (max {fit.max_calls} calls) fitted; done in {time.perf_counter() - started:.1f} s "
              f"-> {fit.artifact}; next: cascade calibrate --policy {policy} --data HELD_OUT "
              "--target quality=Q|cost=C", highlight=False)
    for note in fit.notes:
        err.print(f"[yellow]note:[/] {note}", highlight=False)


def _report(result: RouteCalibration, tiers: list[str]) -> None:
    table = Table(title=f"router calibration on {result.queries} queries "
                  f"(target {result.target.kind.value} {','.join(f'{v:g}' for v in result.target.values)})",
                  title_justify="left")
    for column in ("tier", "threshold", "share starting here", "AUROC of P(ok)"):
        table.add_column(column)
    for j, name in enumerate(tiers):
        score = result.auroc[j] if result.auroc else None
        table.add_row(name, f"{result.thresholds[j]:.4f}", f"{result.shares[j]:.1%}",
                      "-" if score is None else f"{score:.3f}")
    out.print(table)
    if result.accuracy is not None and result.cost is not None:
        out.print(f"routing only, on this data: accuracy {result.accuracy:.4f}, mean cost "
                  f"${result.cost:.6f} per query", highlight=False)


@app.command("calibrate-router")
def calibrate_router_command(
    policy: Annotated[Path, typer.Option(help="the policy YAML whose router to calibrate")],
    data: Annotated[Path, typer.Option(help="recorded queries (labelled, for quality / cost)")],
    target: Annotated[str, typer.Option(help="shares=0.5,0.3,0.2 | quality=0.95 | cost=0.3")],
    out_file: Annotated[Path | None, typer.Option("--out", help="write the calibrated policy "
                                                  "to this file")] = None,
    in_place: Annotated[bool, typer.Option("--in-place", help="overwrite the policy file")] = False,
) -> None:
    """Choose the router's thresholds: a share of requests per tier (no labels needed), or a
    quality / cost target on labelled data."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    destination = output_file(policy, out_file, in_place)
    try:
        parsed = RouteTarget.parse(target)
        loaded = load_policy(policy)
        result = anyio.run(calibrate_router, loaded, data, parsed, policy.parent)
    except RouteCalibrationError as exc:
        raise _fail(str(exc), EXIT_RUN_FAILED) from None
    except CascadeError as exc:
        raise _fail(str(exc), EXIT_BAD_INPUT) from None
    _report(result, [t.name for t in loaded.tiers])
    if destination is not None:
        text = with_router_thresholds(policy.read_text(encoding="utf-8"),
                                      tuple(float(np.float64(t)) for t in result.thresholds),
                                      source=str(policy))
        destination.write_text(text, encoding="utf-8")
    written(policy, destination, "routing.router.threshold")
