"""The gateway as ``cascade serve`` processes: graceful shutdown with requests in flight, and
two processes sharing a per-key budget through one real redis-server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import httpx
import openai
import pytest
from gateway_server import KEY, subprocess_gateway
from openai import AsyncOpenAI
from stream_upstream import StreamUpstream

pytestmark = pytest.mark.anyio


@pytest.fixture
async def upstream() -> AsyncIterator[StreamUpstream]:
    async with StreamUpstream() as up:
        yield up


def one_tier(directory: Path, url: str, extra: str = "") -> Path:
    directory.mkdir(exist_ok=True)
    (directory / "chat.yaml").write_text(
        extra + f"tiers:\n  - {{name: only, model: m, timeout_s: 10, provider: "
        f"{{kind: openai, base_url: '{url}'}}}}\n")
    return directory


def ask(url: str, key: str = KEY) -> AsyncOpenAI:
    return AsyncOpenAI(base_url=url, api_key=key, max_retries=0, timeout=30)


async def test_sigterm_lets_requests_in_flight_finish(upstream: StreamUpstream,
                                                      tmp_path: Path) -> None:
    policies = one_tier(tmp_path / "p", upstream.base_url)
    answers: list[str] = []
    with subprocess_gateway(policies) as (url, process):
        async with ask(url) as client:
            async def one(i: int) -> None:
                reply = await client.chat.completions.create(
                    model="chat", messages=[{"role": "user", "content": "slow 1.5"}])
                answers.append(reply.choices[0].message.content or "")

            async with anyio.create_task_group() as group:
                for i in range(4):
                    group.start_soon(one, i)
                while sum(upstream.requests.values()) < 4:  # all four are in flight
                    await anyio.sleep(0.02)
                process.send_signal(signal.SIGTERM)
                await anyio.sleep(0.3)
                with pytest.raises(openai.APIConnectionError):  # no new requests
                    async with ask(url) as late:
                        await late.models.list()
            code = await anyio.to_thread.run_sync(lambda: process.wait(timeout=20))
    assert answers == ["echo: slow 1.5 and a few more words"] * 4
    assert code in (0, -signal.SIGTERM)  # uvicorn re-raises the signal once it has finished


async def test_two_processes_share_a_per_key_budget(upstream: StreamUpstream, tmp_path: Path,
                                                    redis_server: str) -> None:
    prefix = f"gw{time.monotonic_ns()}:"
    policies = one_tier(tmp_path / "p", upstream.base_url, (
        f"resilience: {{store: {{kind: redis, url: '{redis_server}', prefix: '{prefix}'}}}}\n"
        "budgets:\n  - {name: per-key, scope: caller, period: hour, requests: 3}\n"))
    with subprocess_gateway(policies) as (first, _), subprocess_gateway(policies) as (second, _):
        statuses: list[int] = []
        async with httpx.AsyncClient(timeout=30) as h:
            for i in range(6):  # alternate between the two processes
                url = (first, second)[i % 2]
                r = await h.post(f"{url}/chat/completions",
                                 headers={"authorization": f"Bearer {KEY}"},
                                 json={"model": "chat", "messages": [{"role": "user",
                                                                      "content": "hi"}]})
                statuses.append(r.status_code)
            ready = [await h.get(u.removesuffix("/v1") + "/readyz") for u in (first, second)]
    assert statuses == [200, 200, 200, 429, 429, 429]
    assert upstream.requests["hi"] == 3
    assert all(r.status_code == 200 for r in ready)


def test_serve_refuses_to_start_without_keys(tmp_path: Path) -> None:
    policies = one_tier(tmp_path / "p", "http://127.0.0.1:9/v1")
    result = subprocess.run(
        [sys.executable, "-c", "from cascade.cli import main; main()", "serve",
         "--policies", str(policies), "--port", "0"], capture_output=True, text=True,
        env={**os.environ, "CASCADE_API_KEYS": "",
             "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}, timeout=60, check=False)
    assert result.returncode == 2 and "no API keys" in result.stderr


def test_hash_key_prints_the_sha256() -> None:
    from typer.testing import CliRunner

    from cascade.cli import app

    out = CliRunner().invoke(app, ["serve", "--hash-key", "k"])
    assert out.exit_code == 0
    assert out.stdout.strip() == "8254c329a92850f6d539dd376f4816ee2764517da5e0235514af433164480d7a"
    assert CliRunner().invoke(app, ["serve"]).exit_code == 2


@pytest.mark.models
async def test_gateway_over_a_real_llama_cpp_server(llama_server: str, tmp_path: Path) -> None:
    """Plain and live-streamed answers from SmolLM2 behind llama.cpp's own server (which sends
    no usage when streaming: estimated)."""
    from gateway_server import running

    from cascade.server import GatewayConfig, ModelRule

    policies = tmp_path / "p"
    policies.mkdir()
    (policies / "smol.yaml").write_text(
        "tiers:\n  - {name: smol, model: smol, max_tokens: 12, timeout_s: 60, system_prompt: "
        f"'Answer in one short sentence.', provider: {{kind: openai, base_url: '{llama_server}'}}}}\n")
    config = GatewayConfig(models={"smol": ModelRule(live=True)})
    with running(policies, config) as url:
        async with ask(url) as client:
            reply = await client.chat.completions.create(
                model="smol", messages=[{"role": "user", "content": "What is the capital of France?"}])
            stream = await client.chat.completions.create(
                model="smol", stream=True, stream_options={"include_usage": True},
                messages=[{"role": "user", "content": "What is the capital of France?"}])
            chunks = [chunk async for chunk in stream]
    assert reply.choices[0].message.content and reply.usage is not None
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.strip() and chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    assert sum(1 for c in chunks if c.choices and c.choices[0].delta.content) > 2  # token by token


@pytest.mark.parametrize(("rules", "default", "match"), [
    ({"nope": {"live": True}}, None, "'nope' is not one of"),
    ({"judged": {"live": True}}, None, "judged.live: tier 'only' has an estimator"),
    ({"chat": {"on_unjudgeable": {"action": "tier", "tier": "absent"}}}, None,
     "no tier 'absent'"),
    ({}, "absent", "default_model 'absent'"),
])
async def test_gateway_config_that_names_the_wrong_models_is_refused(
        tmp_path: Path, rules: dict[str, dict], default: str | None, match: str) -> None:
    from cascade.errors import ConfigError
    from cascade.server import ModelRule, load_models

    policies = one_tier(tmp_path / "p", "http://127.0.0.1:9/v1")
    (policies / "judged.yaml").write_text(
        "tiers:\n  - {name: only, model: m, provider: {kind: openai, base_url: "
        "'http://127.0.0.1:9/v1'}, estimator: {kind: self_rating}, threshold: 0.5}\n")
    with pytest.raises(ConfigError, match=match):
        load_models(policies, default, {k: ModelRule.model_validate(v) for k, v in rules.items()})


def test_serve_exits_2_on_a_broken_policy(tmp_path: Path) -> None:
    policies = tmp_path / "p"
    policies.mkdir()
    (policies / "bad.yaml").write_text("tiers: []\n")
    from typer.testing import CliRunner

    from cascade.cli import app

    out = CliRunner().invoke(app, ["serve", "--policies", str(policies)],
                             env={"CASCADE_API_KEYS": "a=b"})
    assert out.exit_code == 2 and "tiers" in out.output


def test_serve_runs_on_uvloop_and_httptools(caplog: pytest.LogCaptureFixture) -> None:
    """The server extra's fast event loop and HTTP parser are what ``cascade serve`` asks
    uvicorn for (not left to uvicorn's auto-detection)."""
    from cascade.server._run import fast_io

    assert fast_io() == {"loop": "uvloop", "http": "httptools"}
    assert not caplog.records
