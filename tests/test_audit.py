"""Audit sampling: the Clopper–Pearson interval, no latency added to a sampled run, the
audit's cost counted and capped, the alert, and the estimate against the truth on replay data
with known labels."""

from __future__ import annotations

import ast
import csv
import logging
import random
import time
from pathlib import Path

import anyio
import pytest
from scripted import Fixed, Scripted

from cascade import Cascade, Tier, parse_policy
from cascade.errors import PolicyError
from cascade.policy import Price
from cascade.telemetry import AuditSampler, clopper_pearson
from verifiers import AnswerKind

pytestmark = pytest.mark.anyio


def test_clopper_pearson_matches_the_beta_quantiles() -> None:
    low, high = clopper_pearson(5, 100)
    assert low == pytest.approx(0.0164319, abs=1e-6) and high == pytest.approx(0.1128349, abs=1e-6)
    assert clopper_pearson(0, 10) == (0.0, pytest.approx(0.3084971, abs=1e-6))
    assert clopper_pearson(10, 10) == (pytest.approx(0.6915029, abs=1e-6), 1.0)
    assert clopper_pearson(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError, match="0 <= k <= n"):
        clopper_pearson(3, 2)


def cascade_with_audit(judge: Scripted, rate: float = 1.0, **kw: object) -> Cascade:
    cheap = Tier("small", "s", Scripted("Paris"), Fixed(0.9), 0.5)
    dear = Tier("large", "l", judge, Fixed(0.9), 0.5, price=Price(input_per_1m=1000.0))
    audit = AuditSampler(dear, 1, rate=rate, answer=AnswerKind.TEXT,
                         rng=random.Random(0), **kw)  # type: ignore[arg-type]
    return Cascade([cheap, dear], audit=audit, metrics=False)


async def test_a_sampled_run_is_not_slowed_and_the_audit_is_counted() -> None:
    engine = cascade_with_audit(Scripted("Lyon", delay=0.5), alpha=0.1)
    assert engine.audit is not None
    async with engine:
        for _ in range(4):
            started = time.perf_counter()
            result = await engine.run("Capital of France?")
            assert result.accepted and result.tier == 0
            assert time.perf_counter() - started < 0.25  # the judge takes 0.5 s
        with anyio.fail_after(5):
            while engine.audit.audited < 4:
                await anyio.sleep(0.05)
    estimate = engine.audit.estimate()
    assert (estimate.audited, estimate.false_accepts, estimate.rate) == (4, 4, 1.0)
    assert estimate.cost == pytest.approx(4 * 10 * 1000 / 1e6)  # the judge's price, 4 calls
    assert estimate.low > 0.1 and estimate.alerting  # 4/4 wrong: lower bound 0.40 > alpha


async def test_the_share_sampled_the_budget_and_the_queue(caplog: pytest.LogCaptureFixture) -> None:
    engine = cascade_with_audit(Scripted("Paris"), rate=0.25)
    assert engine.audit is not None
    for _ in range(400):
        await engine.run("Capital of France?")  # no background task: the queue keeps them
    queued = engine.audit._receive.statistics().current_buffer_used
    assert 70 <= queued <= 130  # ~ 25 % of 400
    await engine.audit.drain()
    assert engine.audit.audited == queued and engine.audit.false_accepts == 0
    capped = cascade_with_audit(Scripted("Paris"), budget_usd=0.02)  # two judge calls
    assert capped.audit is not None
    for _ in range(5):
        await capped.run("q")
    await capped.audit.drain()
    assert (capped.audit.audited, capped.audit.dropped) == (2, 3)
    full = cascade_with_audit(Scripted("Paris"), queue_size=2)
    assert full.audit is not None
    for _ in range(5):
        await full.run("q")
    assert full.audit.dropped == 3


def test_the_audit_block_in_the_policy() -> None:
    data = Path(__file__).parent / "fixtures" / "tiny_routerbench.csv"
    text = (f"tiers:\n"
            f"  - {{name: small, model: cheap-model, provider: {{kind: replay, data: '{data}'}}}}\n"
            f"  - {{name: large, model: dear-model, provider: {{kind: replay, data: '{data}'}}}}\n"
            f"telemetry: {{audit: {{rate: 0.1, answer: exact, alpha: 0.05, judge: JUDGE}}}}\n")
    engine = Cascade.from_policy(parse_policy(text.replace("JUDGE", "large")))
    assert engine.audit is not None and engine.audit.judge.name == "large"
    assert engine.audit.answer is AnswerKind.EXACT and engine.audit.alpha == 0.05
    with pytest.raises(PolicyError, match="audit.judge: 'small' is not a tier"):
        parse_policy(text.replace("JUDGE", "small"))


@pytest.mark.data
async def test_the_estimate_matches_the_truth_on_replay_data(shared_data: Path) -> None:
    """ARC: mistral-7b's answers accepted as they come, gpt-4 as the judge. Disagreement with
    the judge estimates the share of wrong accepted answers, up to the judge's own errors."""
    data = shared_data / "routerbench" / "arc_challenge_test.csv"
    policy = parse_policy(
        f"tiers:\n"
        f"  - {{name: cheap, model: mistralai/mistral-7b-chat, provider: {{kind: replay, "
        f"data: '{data}'}}}}\n"  # no estimator: every answer is accepted
        f"  - {{name: judge, model: gpt-4-1106-preview, provider: {{kind: replay, "
        f"data: '{data}'}}}}\n"
        f"telemetry: {{metrics: false, audit: {{rate: 1.0, answer: choice}}}}\n")
    with data.open(newline="", encoding="utf-8") as f:
        prompts = [ast.literal_eval(row["prompt"])[0] for row in csv.DictReader(f)]
    logging.getLogger("cascade.audit").setLevel(logging.ERROR)
    async with Cascade.from_policy(policy) as engine:
        assert engine.audit is not None
        for prompt in prompts:
            await engine.run(prompt)
        await engine.audit.drain()
    estimate = engine.audit.estimate()
    assert estimate.audited == len(prompts) and estimate.truth is not None
    assert abs(estimate.rate - estimate.truth) <= 0.05, estimate
    assert estimate.low - 0.05 <= estimate.truth <= estimate.high + 0.05
