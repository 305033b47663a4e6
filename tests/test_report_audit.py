"""The audit in ``cascade report`` and in the monitor's snapshot file: audited answers, false
accepts, the estimate with its interval per tier and over every tier, and the audit alerts —
read from a real redis-server shared with the engine, and from the snapshot file."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import pytest

from cascade import Cascade
from cascade.telemetry import clopper_pearson

pytestmark = pytest.mark.anyio
FIXTURE = Path(__file__).parent / "fixtures" / "tiny_routerbench.csv"


def _report(*args: str) -> tuple[int, str]:
    from typer.testing import CliRunner

    from cascade.cli import app

    done = CliRunner().invoke(app, ["report", *args], terminal_width=220)
    return done.exit_code, done.output


def _policy(redis_url: str) -> str:
    tier = ("{{name: {}, model: {}, provider: {{kind: replay, data: '{}'}}, "
            "estimator: {{kind: agreement, answer: text}}, threshold: {}}}")
    return (f"feature: faq\ntiers:\n"
            f"  - {tier.format('small', 'cheap-model', FIXTURE, 0)}\n"
            f"  - {tier.format('large', 'dear-model', FIXTURE, 0.5)}\n"
            f"resilience: {{store: {{kind: redis, url: '{redis_url}', "
            f"prefix: 'test-report-audit:'}}}}\n"
            f"telemetry: {{metrics: false, audit: {{rate: 1.0, alpha: 0.05, answer: text}}}}\n"
            f"slo: {{false_accept: [{{tier: small, max: 0.1}}], snapshot: snap.json, "
            f"alerts: {{log: false, otel: false}}}}\n")


async def test_report_shows_the_audit_from_redis_and_the_snapshot(redis_server: str,
                                                                   tmp_path: Path) -> None:
    policy = tmp_path / "faq.yaml"
    policy.write_text(_policy(redis_server))
    async with Cascade.from_yaml(policy) as engine:
        assert engine.audit is not None
        for _ in range(3):  # cheap-model answers Lyon (the judge: Paris), then 4 (agreed)
            assert (await engine.run("Question: Capital of France?\nAnswer:")).tier == 0
            assert (await engine.run("Question: What is 2+2?\nAnswer:")).tier == 0
        with anyio.fail_after(10):
            while engine.audit.audited < 6:
                await anyio.sleep(0.02)
    low, high = clopper_pearson(3, 6)
    for args in (("--policy", str(policy)), ("--snapshot", str(tmp_path / "snap.json"))):
        code, output = await anyio.to_thread.run_sync(_report, *args, "--json")
        assert code == 0, output
        faq = json.loads(output)["features"]["faq"]
        small, large = faq["tiers"]
        assert small["audit"]["audited"] == 6 and small["audit"]["false_accepts"] == 3
        assert small["audit"]["rate"] == 0.5 and small["audit"]["limit"] == 0.1
        assert small["audit"]["low"] == pytest.approx(low)
        assert small["audit"]["high"] == pytest.approx(high)
        assert large["audit"] is None  # the judge is not audited
        assert faq["audit"]["audited"] == 6 and faq["audit"]["limit"] == 0.05
        assert faq["alerts"] == ["faq/*/audit", "faq/small/false_accept"]  # low 0.118 > both
    code, output = await anyio.to_thread.run_sync(_report, "--snapshot",
                                                  str(tmp_path / "snap.json"))
    assert code == 0, output
    assert f"50.0% [{100 * low:.1f}–{100 * high:.1f}%]" in output and "≤ 10%" in output
    assert "audit: 6 accepted answers re-asked of the judge, 3 false accepts" in output
    assert "calibrated alpha 5.0%" in output
    assert "alerts firing: faq/*/audit, faq/small/false_accept" in output
