"""``cascade calibrate`` and ``cascade train-verifier``."""

from __future__ import annotations

import enum
import json
import os
from pathlib import Path
from typing import Annotated

import anyio
import typer
from rich.table import Table

from cascade.tuning._calibrate import Calibration, Target, calibrate
from cascade.cli._app import (
    EXIT_BAD_INPUT, EXIT_RUN_FAILED, _fail, app, err, out, output_file, written,
)
from verifiers._calibrate import GOOD
from cascade.errors import CascadeError
from cascade.policy import Policy, RoutingMode, load_policy
from cascade.policy._writeback import with_cost_weight, with_thresholds
from cascade.tuning._unified_calibrate import UnifiedCalibration, UnifiedTargetError, calibrate_unified
from cascade.providers import ReplayTable, load_table
from verifiers import CalibrationError, EstimatorError, Example


def _report(result: Calibration) -> None:
    table = Table(title=f"estimators on the data (target {result.target.kind.value} "
                  f"{result.target.value:g})", title_justify="left")
    for column in ("tier", "estimator", "AUROC", "ECE", "accuracy", "mean cost", "coverage → accuracy @ threshold"):
        table.add_column(column)
    for tier in result.tiers:
        curve = ", ".join(f"{c:.0%}→{a:.3f}@{t:.3g}" for c, a, t in tier.coverage[:5])
        table.add_row(tier.name, tier.estimator or "-", "-" if tier.auroc is None else f"{tier.auroc:.3f}",
                      "-" if tier.ece is None else f"{tier.ece:.3f}", f"{tier.accuracy:.3f}",
                      f"${tier.cost:.6f}", curve or "-")
    out.print(table)
    chosen = ", ".join(f"{k}: {v:.4f}" for k, v in result.thresholds.items())
    out.print(f"thresholds {chosen}", highlight=False)
    out.print(f"expected on this data: accuracy {result.accuracy:.4f} "
              f"({result.accuracy / result.best_accuracy:.1%} of the best tier), mean cost "
              f"${result.cost:.6f} per query, escalation {', '.join(f'{e:.1%}' for e in result.escalation)}",
              highlight=False)
    for name, risk in zip(result.thresholds, result.risk):
        low, high = risk.accept_interval
        out.print(f"{name}: false accepts <= {risk.alpha:g} with probability >= {1 - risk.delta:g} "
                  f"(certified bound {risk.risk_bound:.4f}); accepts {risk.accept_rate:.1%} "
                  f"[{low:.1%}, {high:.1%}] of {risk.n} queries; a perfect estimator could "
                  f"accept {risk.best_accept_rate:.1%}; certifying anything needs >= "
                  f"{risk.min_examples} examples", highlight=False)
    for note in result.notes:
        err.print(f"[yellow]warning:[/] {note}", highlight=False)


@app.command("calibrate")
def calibrate_command(
    policy: Annotated[Path, typer.Option(help="the policy YAML to calibrate")],
    data: Annotated[Path, typer.Option(help="labelled recorded answers for the policy's models "
                                       "(RouterBench CSV, RouteLLM CSV or MoT JSON)")],
    target: Annotated[str, typer.Option(
        help="quality=0.99 | escalation=0.3 | risk=0.05[,delta=0.1]; a routing.mode unified "
        "policy: quality=Q | cost=C | escalation=E (its λ)")],
    out_file: Annotated[Path | None, typer.Option("--out", help="write the calibrated policy "
                                                  "to this file")] = None,
    in_place: Annotated[bool, typer.Option("--in-place", help="overwrite the policy file")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print the result as JSON")] = False,
    strict: Annotated[bool, typer.Option(help="exit 1 (and write nothing) when a risk target "
                                         "is met only by accepting (almost) nothing")] = False,
    min_accept: Annotated[float, typer.Option(help="a risk calibration accepting less than this "
                                              "share of queries at a tier is (almost) nothing")] = 0.05,
) -> None:
    """Choose per-tier thresholds on held-out labelled data; print AUROC, ECE, accuracy–coverage
    and, for a risk target, what the guarantee accepts and whether more data would help.

    On a routing.mode unified policy, choose its λ (routing.unified.cost_weight) instead: the
    decision is replayed on the data (held out from the artifact's fit) for each λ of the grid,
    and the largest λ reaching quality=Q × the best tier's quality, the smallest within cost=C ×
    the dearest tier's cost, or the smallest with at most escalation=E of queries calling more
    than one tier is written. A target no λ meets exits 1 and writes nothing."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    destination = output_file(policy, out_file, in_place)
    try:
        parsed = Target.parse(target)
        if not 0 <= min_accept <= 1:
            raise CalibrationError(f"--min-accept must be in [0, 1], not {min_accept}")
        loaded = load_policy(policy)
        if loaded.routing is not None and loaded.routing.mode is RoutingMode.UNIFIED:
            return _calibrate_lambda(policy, loaded, data, parsed, destination, as_json, strict)
        result = anyio.run(calibrate, loaded, data, parsed, policy.parent, min_accept)
    except CalibrationError as exc:
        raise _fail(str(exc), EXIT_RUN_FAILED) from None
    except (CascadeError, EstimatorError) as exc:
        raise _fail(str(exc), EXIT_BAD_INPUT) from None
    if as_json:
        print(json.dumps(result.to_dict(), indent=2))
        for note in result.notes:
            err.print(f"[yellow]warning:[/] {note}", highlight=False)
    else:
        _report(result)
    if strict and not result.feasible:
        raise _fail("--strict: the risk target is met only by accepting (almost) nothing; "
                    "nothing written", EXIT_RUN_FAILED)
    if destination is not None:
        text = with_thresholds(policy.read_text(encoding="utf-8"), result.thresholds,
                               source=str(policy), comments=result.comments())
        destination.write_text(text, encoding="utf-8")
    if as_json:  # stdout stays JSON
        err.print(f"wrote the thresholds into {destination}" if destination else
                  "nothing written (--out FILE or --in-place)", highlight=False)
    else:
        written(policy, destination, "the thresholds")


def _lambda_report(result: UnifiedCalibration, current: float) -> None:
    table = Table(title=f"the unified decision on {result.queries} queries, per λ (target "
                  f"{result.target.kind.value} {result.target.value:g})", title_justify="left")
    for column in ("λ", "mean cost", "quality", "of best", "calls", "escalation", ""):
        table.add_column(column, justify="left" if not column else "right")
    for p in result.points:
        mark = "chosen" if p.cost_weight == result.cost_weight else ""
        mark += (" " if mark else "") + ("policy's" if p.cost_weight == current else "")
        table.add_row(f"{p.cost_weight:.6g}", f"${p.cost:.6f}", f"{p.quality:.4f}",
                      f"{p.quality / max(result.best_quality, 1e-12):.1%}", f"{p.calls:.2f}",
                      f"{p.escalation:.1%}", mark)
    out.print(table)
    alone = ", ".join(f"{n} {q:.4f} at ${c:.6f}" for n, q, c in
                      zip(result.tiers, result.tier_quality, result.tier_cost))
    out.print(f"each tier alone: {alone}", highlight=False)
    chosen = result.chosen
    out.print(f"cost_weight {result.cost_weight:.6g}: quality {chosen.quality:.4f} "
              f"({chosen.quality / max(result.best_quality, 1e-12):.1%} of the best tier), mean cost "
              f"${chosen.cost:.6f} per query ({chosen.cost / max(result.dearest_cost, 1e-300):.1%} of "
              f"the dearest tier's), {chosen.calls:.2f} calls, escalation {chosen.escalation:.1%}",
              highlight=False)


def _calibrate_lambda(path: Path, policy: Policy, data: Path, target: Target,
                      destination: Path | None, as_json: bool, strict: bool) -> None:
    """``cascade calibrate`` on a ``routing.mode: unified`` policy: choose λ and write
    ``routing.unified.cost_weight``."""
    if strict:
        raise _fail("--strict is for risk targets, which a unified policy does not take", EXIT_BAD_INPUT)
    try:
        result = anyio.run(calibrate_unified, policy, data, target, path.parent)
    except UnifiedTargetError as exc:
        raise _fail(f"{exc}; nothing written", EXIT_RUN_FAILED) from None
    if as_json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        _lambda_report(result, policy.routing.unified.cost_weight)  # type: ignore[union-attr]
    for note in result.notes:
        err.print(f"[yellow]warning:[/] {note}", highlight=False)
    if destination is not None:
        text = with_cost_weight(path.read_text(encoding="utf-8"), result.cost_weight,
                                source=str(path), comment=result.comment(data.name))
        destination.write_text(text, encoding="utf-8")
    if as_json:
        err.print(f"wrote routing.unified.cost_weight into {destination}" if destination else
                  "nothing written (--out FILE or --in-place)", highlight=False)
    else:
        written(path, destination, "routing.unified.cost_weight")


class VerifierChoice(str, enum.Enum):
    SKLEARN = "sklearn"
    CROSS_ENCODER = "cross-encoder"


def examples_from(table: ReplayTable, model: str) -> list[Example]:
    """(query, answer, correct) for one model; rows without a correctness cell are skipped.
    The query is the whole recorded prompt, as the engine hands it to estimators (verifiers
    keep its end: the question; RouterBench's shared few-shot prefix is cut off)."""
    from cascade.errors import ReplayDataError  # (kept out of the shared import block)

    table.require_model(model)
    if not table.has_responses:
        raise ReplayDataError(table.path, "records no answers (quality columns only): a verifier "
                              "has nothing to learn from")
    out_: list[Example] = []
    for row in table.rows:
        record = table.record(row, model)
        if record.correct is not None:
            out_.append(Example(row.prompt, record.response or "", record.correct >= GOOD))
    return out_


@app.command("train-verifier")
def train_verifier(
    data: Annotated[Path, typer.Option(help="recorded answers with correctness labels")],
    model: Annotated[str, typer.Option(help="whose answers to learn from (a model column)")],
    out_dir: Annotated[Path, typer.Option("--out", help="artifact directory to write")],
    kind: Annotated[VerifierChoice, typer.Option(help="sklearn or cross-encoder")] = VerifierChoice.SKLEARN,
    epochs: Annotated[int, typer.Option(help="cross-encoder epochs")] = 2,
    seed: Annotated[int, typer.Option()] = 0,
) -> None:
    """Train a verifier that predicts "this answer is correct" and save it as a safe artifact."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from verifiers import train_cross_encoder, train_sklearn_verifier

    try:
        examples = examples_from(load_table(data), model)
        if kind is VerifierChoice.SKLEARN:
            verifier = train_sklearn_verifier(examples, seed=seed)
        else:
            verifier = train_cross_encoder(examples, epochs=epochs, seed=seed)
        folder = verifier.save(out_dir)
    except (CascadeError, EstimatorError) as exc:
        raise _fail(str(exc), EXIT_BAD_INPUT) from None
    positives = sum(e.correct for e in examples)
    out.print(f"trained {verifier.name} on {len(examples)} answers of {model} "
              f"({positives} correct); wrote {folder}", highlight=False)
