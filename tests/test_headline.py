"""A published figure under test: docs/benchmarks.md's MoT DATE self-consistency cascade
(`cascade bench mot-date --method vote`), reproduced end to end through the engine on the
recorded data — the chain and thresholds chosen on train, every setting run on test — so a
regression in the vote estimator, its early stopping, the sweep or the metrics shows up in CI.
Published (benchmarks/results/bench-mot-date-vote.json): AIQ 0.8243, random AIQ 0.7973,
99 % of gpt-4 SC@3's accuracy at 35.3 % of its cost, best point 0.892 at $1.5527."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cascade.bench._bench import run_suite
from cascade.bench._methods import methods_for
from cascade.bench._suites import SUITES

pytestmark = [pytest.mark.anyio, pytest.mark.data]
PUBLISHED = Path(__file__).resolve().parent.parent / "benchmarks" / "results" / "bench-mot-date-vote.json"


async def test_mot_date_vote_cascade_reproduces_the_published_aiq(shared_data: Path) -> None:
    suite = SUITES["mot-date"]
    report = await run_suite(suite, shared_data, methods_for(suite, ["vote"]), bootstrap_rounds=0)
    vote = report.metrics["cascade: vote"]
    # the numbers printed in docs/benchmarks.md, to their printed precision
    assert report.queries == 185 and report.c_max == pytest.approx(3.9391)
    assert vote["aiq"] == pytest.approx(0.8243, abs=5e-5)
    assert report.metrics["random"]["aiq"] == pytest.approx(0.7973, abs=5e-5)
    assert vote["cost_to_99"] == pytest.approx(0.353, abs=5e-4)
    assert vote["cpt50"] == pytest.approx(0.025, abs=5e-4) and vote["cpt80"] == pytest.approx(0.223, abs=5e-4)
    # and every operating point the published run measured, setting by setting
    published = json.loads(PUBLISHED.read_text())["suites"]["mot-date"]["methods"]["cascade: vote"]
    ours = [[None if t is None or t == float("inf") else t for t in s["thresholds"]] for s in vote["settings"]]
    assert ours == [s["thresholds"] for s in published["settings"]]
    assert [x for p in vote["points"] for x in p] == pytest.approx(
        [x for p in published["points"] for x in p], rel=1e-9)
