"""``cascade search-ensemble``: pick the cheap models to pair at tier 1, and the thresholds."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import anyio
import typer
from rich.table import Table

from cascade.tuning._ensemble_search import SearchResult, SearchTarget, describe, search_ensemble
from cascade.cli._app import EXIT_BAD_INPUT, EXIT_RUN_FAILED, _fail, app, out
from cascade.errors import CascadeError
from cascade.policy import load_policy
from verifiers import AnswerKind, CalibrationError, EstimatorError


def _report(result: SearchResult) -> None:
    answers, names = result.answers, result.names
    n = answers.correct.shape[0]
    accuracy, total = answers.correct.mean(axis=0), answers.cost.sum(axis=0)
    best = max(range(len(accuracy)), key=lambda j: (accuracy[j], -total[j]))
    out.print(f"{n} labelled queries; most accurate model {names[best]}: accuracy "
              f"{accuracy[best]:.4f} at ${total[best] / n:.6f} per query", highlight=False)
    table = Table(title_justify="left", expand=False)
    for column in ("", "tiers (cheapest first)", "thresholds", "accuracy", "cost", "escalation"):
        table.add_column(column, overflow="fold")
    for label, point in [("chosen", result.chosen), *(("alt", p) for p in result.alternatives)]:
        d = describe(point, names)
        ensemble = " + ".join(d["ensemble"])  # type: ignore[arg-type]
        tiers = " → ".join(str(t) for t in (ensemble, d["middle"], d["last"]) if t)
        table.add_row(label, tiers, ", ".join(t if isinstance(t, str) else f"{t:.4g}" for t in d["thresholds"]) or "-",  # type: ignore[attr-defined]
                      f"{point.accuracy:.4f} ({point.accuracy / accuracy[best]:.1%} of best)",
                      f"${point.cost / n:.6f} ({point.cost / total[best]:.1%})",
                      ", ".join(f"{e:.1%}" for e in point.escalation) or "-")
    out.print(table)
    d = describe(result.chosen, names)
    plan = " → ".join(str(t) for t in (" + ".join(d["ensemble"]), d["middle"], d["last"]) if t)  # type: ignore[arg-type]
    out.print(f"chosen: {plan}; expected accuracy {result.chosen.accuracy:.4f} "
              f"({result.chosen.accuracy / accuracy[best]:.1%} of {names[best]}) at "
              f"${result.chosen.cost / n:.6f} per query ({result.chosen.cost / total[best]:.1%} "
              f"of its cost)", highlight=False, soft_wrap=True)


@app.command("search-ensemble")
def search_ensemble_command(
    policy: Annotated[Path, typer.Option(help="a policy whose one-model tiers are the candidates")],
    data: Annotated[Path, typer.Option(help="labelled recorded answers of those models (train split)")],
    answer: Annotated[AnswerKind, typer.Option(help="how answers are compared")],
    target: Annotated[str, typer.Option(help="quality=0.99 (share of the best model's accuracy) "
                                        "| cost=0.3 (share of the most accurate model's cost)")],
    out_policy: Annotated[Path | None, typer.Option("--out", help="write the chosen plan as this "
                                                    "policy (agreement weights beside it)")] = None,
    pool: Annotated[int, typer.Option(help="ensembles are drawn from this many cheapest models")] = 6,
    size: Annotated[list[int] | None, typer.Option(help="ensemble sizes (repeatable)")] = None,
    middle: Annotated[bool, typer.Option(help="also try a middle tier judged by agreement")] = True,
) -> None:
    """Search which cheap models to run together at tier 1 (and an optional middle tier),
    with learned agreement weights and thresholds, for a quality or cost target."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        parsed = SearchTarget.parse(target)
        loaded = load_policy(policy)
        result = anyio.run(lambda: search_ensemble(loaded, policy, data, parsed, answer, out_policy,
                                                   pool=pool, sizes=tuple(size or (2, 3)), middles=middle))
    except CalibrationError as exc:
        raise _fail(str(exc), EXIT_RUN_FAILED) from None
    except (CascadeError, EstimatorError) as exc:
        raise _fail(str(exc), EXIT_BAD_INPUT) from None
    _report(result)
    if result.written is not None:
        out.print(f"wrote {result.written}", highlight=False)
