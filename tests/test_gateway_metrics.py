"""``GET /metrics``: ``cascade serve`` (a real process) serves the engine's OpenTelemetry
metrics in Prometheus' text format; open, key-protected or off as the gateway config says."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from gateway_server import KEY, running, subprocess_gateway
from prometheus_client.parser import text_string_to_metric_families
from stream_upstream import StreamUpstream

from cascade.server import GatewayConfig, MetricsAccess, load_gateway_config

pytestmark = pytest.mark.anyio


@pytest.fixture
async def upstream() -> AsyncIterator[StreamUpstream]:
    async with StreamUpstream() as up:
        yield up


def policies(directory: Path, url: str) -> Path:
    """``chat``: two tiers, the first never accepted (every run escalates once)."""
    directory.mkdir(exist_ok=True)
    def tier(name: str, extra: str = "") -> str:
        return (f"  - {{name: {name}, model: {name}-m, timeout_s: 10, provider: {{kind: openai, "
                f"base_url: '{url}'}}{extra}}}\n")

    (directory / "chat.yaml").write_text("tiers:\n" + tier("small", ", estimator: {kind: "
                                         "agreement, answer: exact}, threshold: never")
                                         + tier("big"))
    return directory


def samples(page: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """sample name -> [(labels, value)], parsed with prometheus_client's own parser."""
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(page):
        for s in family.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return out


def total(found: dict[str, list[tuple[dict[str, str], float]]], name: str,
          **labels: str) -> float:
    return sum(v for got, v in found.get(name, []) if all(got.get(k) == w
                                                           for k, w in labels.items()))


async def ask(h: httpx.AsyncClient, url: str, content: str) -> int:
    r = await h.post(f"{url}/chat/completions", headers={"authorization": f"Bearer {KEY}"},
                     json={"model": "chat", "messages": [{"role": "user", "content": content}]})
    return r.status_code


async def test_metrics_count_the_runs_through_the_gateway(upstream: StreamUpstream,
                                                          tmp_path: Path) -> None:
    with subprocess_gateway(policies(tmp_path / "p", upstream.base_url)) as (url, _):
        base = url.removesuffix("/v1")
        async with httpx.AsyncClient(timeout=30, trust_env=False) as h:
            before = samples((await h.get(f"{base}/metrics")).text)
            assert [await ask(h, url, "hello") for _ in range(3)] == [200, 200, 200]
            assert await ask(h, url, "fail") == 502  # both tiers answer 500
            scrape = await h.get(f"{base}/metrics")  # open by default: no key
    assert scrape.status_code == 200
    assert scrape.headers["content-type"].startswith("text/plain; version=0.0.4")
    found = samples(scrape.text)
    assert total(before, "cascade_runs_total") == 0
    assert total(found, "cascade_runs_total", cascade_feature="chat",
                 cascade_tier_name="big", cascade_accepted="true") == 3
    assert total(found, "cascade_runs_total", cascade_feature="chat",
                 error_type="NoAnswerError") == 1
    assert total(found, "cascade_escalations_total", cascade_tier_from="small",
                 cascade_tier_to="big") == 3
    assert total(found, "cascade_attempts_total", cascade_tier_name="small",
                 cascade_decision="escalate") == 3
    assert total(found, "cascade_run_duration_seconds_count", cascade_feature="chat") == 3
    tokens = total(found, "gen_ai_client_token_usage_sum", gen_ai_request_model="big-m",
                   gen_ai_token_type="input")
    assert tokens == 3 * 7  # the upstream counts 7 prompt tokens a call
    [info] = [labels for labels, _ in found["target_info"]]
    assert info["service_name"] == "cascade-gateway" and info["service_instance_id"]


@pytest.mark.parametrize(("access", "no_key", "with_key"), [
    (MetricsAccess.OPEN, 200, 200), (MetricsAccess.KEY, 401, 200), (MetricsAccess.OFF, 404, 404)])
async def test_metrics_access_follows_the_config(upstream: StreamUpstream, tmp_path: Path,
                                                 access: MetricsAccess, no_key: int,
                                                 with_key: int) -> None:
    config = GatewayConfig(metrics=access)
    with running(policies(tmp_path / "p", upstream.base_url), config) as url:
        base = url.removesuffix("/v1")
        async with httpx.AsyncClient(timeout=30, trust_env=False) as h:
            anonymous = await h.get(f"{base}/metrics")
            wrong = await h.get(f"{base}/metrics", headers={"authorization": "Bearer sk-no"})
            keyed = await h.get(f"{base}/metrics", headers={"authorization": f"Bearer {KEY}"})
    assert (anonymous.status_code, keyed.status_code) == (no_key, with_key)
    assert wrong.status_code == (401 if access is MetricsAccess.KEY else no_key)
    if no_key != 200:
        assert set(anonymous.json()["error"]) == {"message", "type", "param", "code"}


def test_metrics_key_without_keys_is_refused(tmp_path: Path) -> None:
    from cascade.server import ApiKeys, GatewayConfigError

    file = tmp_path / "gateway.yaml"
    file.write_text("auth: false\nmetrics: key\n")
    config = load_gateway_config(file)
    assert config.metrics is MetricsAccess.KEY
    with pytest.raises(GatewayConfigError, match="metrics: key needs API keys"):
        ApiKeys.build(config, {})
    file.write_text("metrics: off\n")  # YAML 1.1 reads it as false
    assert load_gateway_config(file).metrics is MetricsAccess.OFF
    file.write_text("metrics: sometimes\n")
    with pytest.raises(GatewayConfigError, match="metrics"):
        load_gateway_config(file)
