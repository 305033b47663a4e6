"""``cascade bench``: the offline replay benchmark. Its code lives in ``benchmarks/`` (a
source checkout), imported only when the command runs."""

from __future__ import annotations

import enum
import os
from pathlib import Path
from typing import Annotated

import typer

from cascade.cli._app import EXIT_BAD_INPUT, _fail, app, err
from cascade.errors import CascadeError


class Split(str, enum.Enum):
    FILES = "files"
    HALVES = "halves"


@app.command()
def bench(
    suites: Annotated[list[str] | None, typer.Argument(
        help="built-in suites: arc, winogrande, mbpp, gsm8k, mot-date (default: all)")] = None,
    data: Annotated[Path | None, typer.Option(
        help="recorded-data folder (default $CASCADE_BENCH_DATA, else ../shared/data)")] = None,
    csv: Annotated[Path | None, typer.Option(help="any RouterBench-format CSV to bench (test)")] = None,
    train: Annotated[Path | None, typer.Option(help="its train CSV (default: halves of --csv)")] = None,
    policy: Annotated[Path | None, typer.Option(
        help="a policy of replay tiers (${DATA}, ${SPLIT} and ${FILE} are filled in)")] = None,
    split: Annotated[Split, typer.Option(help="how --policy is split")] = Split.HALVES,
    method: Annotated[list[str] | None, typer.Option(
        help="estimator cascades to include: vote, verifier (repeatable; default: all; none: singles only)")] = None,
    router: Annotated[list[str] | None, typer.Option(
        help="router kinds to include: knn, mf, bert, knn-static, mf-static (repeatable; -static: "
        "on the static encoder distilled from MiniLM): routing only, and router + each cascade "
        "method")] = None,
    out: Annotated[Path | None, typer.Option(help="output folder (default benchmarks/results)")] = None,
    bootstrap: Annotated[int, typer.Option(help="bootstrap rounds for the AIQ intervals")] = 200,
) -> None:
    """Replay recorded answers through the engine: cost–quality curves, AIQ, APGR, CPT."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        from benchmarks.cli import DEFAULT_OUT
        from benchmarks.cli import bench as run_bench
        from benchmarks.replay import SplitRule
    except ImportError as exc:
        raise _fail(f"cascade bench runs from a source checkout of cascade ({exc})",
                    EXIT_BAD_INPUT) from None
    if train is not None and csv is None:
        raise _fail("--train needs --csv", EXIT_BAD_INPUT)
    try:
        run_bench(suites or [], data=data, out=out or DEFAULT_OUT, csv=csv, train=train,
                  policy=policy, split=SplitRule(split.value), methods=method, rounds=bootstrap,
                  console=err, routers=router or [])
    except (CascadeError, KeyError, ValueError) as exc:
        raise _fail(str(exc).strip('"'), EXIT_BAD_INPUT) from None
