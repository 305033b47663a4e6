"""``cascade bench``: the offline replay benchmark. Its code is ``cascade.bench`` (the
``[bench]`` extra), imported only when the command runs."""

from __future__ import annotations

import enum
import importlib.util
import os
from pathlib import Path
from typing import Annotated

import typer

from cascade.cli._app import EXIT_BAD_INPUT, EXIT_RUN_FAILED, _fail, app, err
from cascade.errors import CascadeError

# Listed here so that --help needs no import of cascade.bench; tests/test_bench.py checks them
# against cascade.bench._methods.REGISTRY and cascade.bench._cli.ROUTERS.
METHODS = ("vote", "verifier", "agreement")
ROUTERS = ("knn", "mf", "knn-mf", "bert", "knn-static", "mf-static", "knn-mf-static", "rules", "causal_llm",
           "unified-knn", "unified-mf", "unified-knn-mf", "unified-knn-static",
           "unified-mf-static", "unified-knn-mf-static")
BENCH_NEEDS = ("matplotlib", "sklearn")  # the [bench] extra, checked before hours of work


class Split(str, enum.Enum):
    FILES = "files"
    HALVES = "halves"


class Answer(str, enum.Enum):
    """How answers compare for agreement cascades (verifiers.AnswerKind)."""

    NUMBER = "number"
    CHOICE = "choice"
    EXACT = "exact"
    CODE = "code"
    TEXT = "text"


@app.command()
def bench(
    suites: Annotated[list[str] | None, typer.Argument(
        help="built-in suites: arc, winogrande, mbpp, gsm8k, mot-date (default: all, unless "
        "--csv or --policy is given)")] = None,
    data: Annotated[Path | None, typer.Option(
        help="recorded-data folder of the built-in suites (default $CASCADE_BENCH_DATA, else "
        "../shared/data beside a source checkout; needed when installed)")] = None,
    csv: Annotated[Path | None, typer.Option(
        help="any RouterBench- or RouteLLM-format CSV to bench (its test rows); quality cells "
        "may be 0/1, True/False or graded scores in [0, 1]")] = None,
    train: Annotated[Path | None, typer.Option(help="its train CSV (default: halves of --csv)")] = None,
    policy: Annotated[Path | None, typer.Option(
        help="a policy of replay tiers (${DATA}, ${SPLIT} and ${FILE} are filled in)")] = None,
    split: Annotated[Split, typer.Option(help="how --policy is split")] = Split.HALVES,
    method: Annotated[list[str] | None, typer.Option(
        help=f"estimator cascades: {', '.join(METHODS)} (repeatable; default: every one that "
        "applies; none: single models and routers only)")] = None,
    router: Annotated[list[str] | None, typer.Option(
        help=f"router kinds: {', '.join(ROUTERS)} (repeatable; -static: on the static encoder "
        "distilled from MiniLM): routing only, and router + each cascade method")] = None,
    answer: Annotated[Answer | None, typer.Option(
        help="how answers compare for agreement (default: the suite's, or detected from the "
        "responses of a --csv file)")] = None,
    out: Annotated[Path | None, typer.Option(
        help="output folder (default $CASCADE_BENCH_OUT, else a new folder under "
        "~/.cache/cascade-bench/results; files tracked by git are never overwritten)")] = None,
    bootstrap: Annotated[int, typer.Option(help="bootstrap rounds for the AIQ intervals")] = 200,
    price: Annotated[list[str] | None, typer.Option(
        help="'MODEL=IN,OUT': USD per 1M input, output tokens of a --csv model, for a file that "
        "records no costs (repeatable; default: the bundled price list)")] = None,
    output_tokens: Annotated[int | None, typer.Option(
        min=0, help="output tokens billed per answer of a --csv file that records neither "
        "answers nor costs (default 1)")] = None,
) -> None:
    """Replay recorded answers through the engine: cost–quality curves, AIQ, APGR, CPT.
    Exits 1 when a method or router asked for by name ran on no suite (the notes say why)."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    absent = [name for name in BENCH_NEEDS if importlib.util.find_spec(name) is None]
    if absent:
        raise _fail(f"cascade bench needs {', '.join(absent)}: pip install 'cascade-engine[bench]'",
                    EXIT_BAD_INPUT)
    from cascade.bench import SplitRule, not_run
    from cascade.bench import bench as run_bench
    from cascade.bench._costs import Costing, parse_prices
    from verifiers import AnswerKind
    if train is not None and csv is None:
        raise _fail("--train needs --csv", EXIT_BAD_INPUT)
    try:
        costing = Costing(parse_prices(price or []), output_tokens)
        reports = run_bench(suites or [], data=data, out=out, csv=csv, train=train,
                            policy=policy, split=SplitRule(split.value), methods=method, rounds=bootstrap,
                            console=err, routers=router or [],
                            answer=None if answer is None else AnswerKind(answer.value),
                            costing=costing)
    except CascadeError as exc:
        raise _fail(str(exc).strip('"'), EXIT_BAD_INPUT) from None
    missing = not_run(reports, method, router or [])
    if missing:
        raise _fail(f"did not run on any suite: {', '.join(missing)} (see the notes above and in "
                    "bench.md)", EXIT_RUN_FAILED)
