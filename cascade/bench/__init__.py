"""The offline replay benchmark behind ``cascade bench`` (install with the ``[bench]`` extra):
the real engine on recorded answers, settings chosen on a train split and measured on a test
split; single models, random mixing, the oracle and its frontier, estimator cascades and
routers; AIQ, APGR, CPT with bootstrap intervals; markdown, JSON and PNG reports.

Runs on the built-in suites over ``../shared/data`` or on any RouterBench-format CSV
(``csv_suite``). Nothing on the request path imports this package."""

from cascade.bench._bench import EstimatorMethod, SuiteReport, run_suite
from cascade.bench._cli import METHODS, ROUTERS, BenchError, bench, csv_suite, default_out, not_run
from cascade.bench._costs import Costing, CostingError
from cascade.bench._metrics import Gap, aiq, apgr, bootstrap, cost_to_reach, cpt, hull, paired_margin
from cascade.bench._replay import Curve, Outcomes, Side, SplitRule, Suite, open_side, oracle, oracle_frontier
from cascade.bench._report import markdown, plot, write_json
from cascade.bench._suites import SUITES

__all__ = [
    "METHODS",
    "ROUTERS",
    "SUITES",
    "BenchError",
    "Costing",
    "CostingError",
    "Curve",
    "EstimatorMethod",
    "Gap",
    "Outcomes",
    "Side",
    "SplitRule",
    "Suite",
    "SuiteReport",
    "aiq",
    "apgr",
    "bench",
    "bootstrap",
    "cost_to_reach",
    "cpt",
    "csv_suite",
    "default_out",
    "hull",
    "markdown",
    "not_run",
    "open_side",
    "oracle",
    "oracle_frontier",
    "paired_margin",
    "plot",
    "run_suite",
    "write_json",
]
