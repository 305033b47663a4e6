"""Every fault of the fault-injection upstream through the real ``OpenAICompatibleProvider``
over real HTTP on loopback: the exact error class, ``status``, ``retry_after_s``, how many
calls reached the server, and that nothing untyped escapes."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator

import anyio
import httpx
import pytest

from benchmarks.fault_upstream import Fault, FaultUpstream, RemoteUpstream, parse_fault
from cascade import Cascade, Decision, Message, ModelCall, parse_policy
from cascade.errors import (
    AuthenticationError,
    BadRequestError,
    ContentFilteredError,
    ContextLengthExceededError,
    OverloadedError,
    ProviderConfigError,
    ProviderConnectionError,
    ProviderError,
    ProviderHTTPError,
    ProviderResponseError,
    ProviderTimeoutError,
    QuotaExhaustedError,
    RateLimitedError,
    ServerError,
)
from cascade.providers import ClientPool, OpenAICompatibleProvider

pytestmark = pytest.mark.anyio

CALL = ModelCall("m", (Message("user", "hi"),), max_tokens=8)
KEY = "sk-fault-test-0123456789"


@pytest.fixture(scope="module")
def upstream() -> Iterator[RemoteUpstream]:
    with FaultUpstream.running() as up:
        yield up


@pytest.fixture
def up(upstream: RemoteUpstream) -> RemoteUpstream:
    upstream.reset()
    return upstream


@pytest.fixture
async def provider(up: RemoteUpstream) -> OpenAICompatibleProvider:  # type: ignore[misc]
    pool = ClientPool()
    yield OpenAICompatibleProvider(pool.client(up.base_url), up.base_url, api_key=KEY)
    await pool.aclose()


# fault -> (class, status, retry_after_s); status None: not an HTTP error
TABLE: dict[Fault, tuple[type[ProviderError], int | None, float | None]] = {
    Fault.RATE_LIMITED: (RateLimitedError, 429, 1.0),
    Fault.RATE_LIMITED_NO_RETRY_AFTER: (RateLimitedError, 429, None),
    Fault.RATE_LIMITED_MS: (RateLimitedError, 429, 1.5),
    Fault.QUOTA_EXHAUSTED: (QuotaExhaustedError, 429, None),
    Fault.OVERLOADED: (OverloadedError, 529, None),
    Fault.UNAVAILABLE: (OverloadedError, 503, 2.0),
    Fault.SERVER_ERROR: (ServerError, 500, None),
    Fault.MALFORMED_JSON: (ProviderResponseError, None, None),
    Fault.EMPTY_CHOICES: (ProviderResponseError, None, None),
    Fault.TRUNCATED: (ProviderConnectionError, None, None),
    Fault.RESET: (ProviderConnectionError, None, None),
    Fault.UNAUTHORIZED: (AuthenticationError, 401, None),
    Fault.BAD_REQUEST: (BadRequestError, 400, None),
    Fault.CONTEXT_OPENAI: (ContextLengthExceededError, 400, None),
    Fault.CONTEXT_ANTHROPIC: (ContextLengthExceededError, 400, None),
    Fault.CONTEXT_VLLM: (ContextLengthExceededError, 400, None),
    Fault.CONTEXT_LLAMACPP: (ContextLengthExceededError, 400, None),
    Fault.GZIP_GARBAGE: (ProviderResponseError, None, None),
    Fault.CONTENT_FILTERED: (ContentFilteredError, None, None),
    Fault.HUGE_TOKENS: (ProviderResponseError, None, None),
    Fault.NEGATIVE_TOKENS: (ProviderResponseError, None, None),
    Fault.ECHO_KEY: (BadRequestError, 400, None),
}


def test_the_table_covers_every_fault_that_fails() -> None:
    assert set(TABLE) | {Fault.OK, Fault.SLOW, Fault.HANG} == set(Fault)


@pytest.mark.parametrize("fault", list(TABLE), ids=str)
async def test_fault_gives_the_exact_error(fault: Fault, up: RemoteUpstream,
                                           provider: OpenAICompatibleProvider) -> None:
    expected, status, wait = TABLE[fault]
    up.script([fault.value])
    with pytest.raises(ProviderError) as info:
        await provider.complete(CALL)
    error = info.value
    assert type(error) is expected, repr(error)
    assert error.retry_after_s == wait
    assert error.deployment == provider.deployment
    if status is not None:
        assert isinstance(error, ProviderHTTPError) and error.status == status
    assert KEY not in str(error) and KEY not in repr(error)
    # one call reached the server, and the next call (same pool) is healthy again
    after = await provider.complete(CALL)
    assert after.text == "ok 2"
    stats = up.stats()
    assert stats["requests"] == 2 and stats["by_fault"] == {fault.value: 1, "ok": 1}


async def test_healthy_answer_and_usage(up: RemoteUpstream,
                                        provider: OpenAICompatibleProvider) -> None:
    first = await provider.complete(CALL)
    second = await provider.complete(ModelCall("m", (Message("user", "hi"),), 8, n=3,
                                               logprobs=True))
    assert first.text == "ok 1" and not first.usage_estimated
    assert (first.input_tokens, first.output_tokens) == (4, 2)
    assert [c.text for c in second.choices] == ["ok 2"] * 3
    assert second.choices[0].token_logprobs == (-0.1, -0.2)


async def test_hang_is_a_read_timeout_with_a_read_timeout_and_a_total_one_in_a_run(
        up: RemoteUpstream) -> None:
    up.script(["hang"])
    async with httpx.AsyncClient(base_url=up.base_url, timeout=0.3) as client:
        provider = OpenAICompatibleProvider(client, up.base_url)
        with pytest.raises(ProviderTimeoutError) as info:
            await provider.complete(CALL)
    assert info.value.phase == "read"
    # through the engine: the tier's timeout bounds the call, the next tier answers. The cheap
    # tier asks for the hang by header: were it scripted, a request that had not reached the
    # server when the tier's timeout fired (a loaded machine) would leave the hang to the next
    # tier's request, which has the 60 s default
    result = await _two_tier_run(up, timeout_s=1.0, cheap_headers='{"x-fault": "hang"}')
    first, _ = result.attempts
    assert first.decision is Decision.ERROR and (first.error or "").startswith(
        "ProviderTimeoutError")
    assert result.tier == 1 and result.answer == "ok 3"
    assert up.stats()["by_fault"] == {"hang": 2, "ok": 1}


async def test_slow_within_and_beyond_the_timeout(up: RemoteUpstream) -> None:
    async with httpx.AsyncClient(base_url=up.base_url, timeout=2.0) as client:
        provider = OpenAICompatibleProvider(client, up.base_url)
        up.script(["slow:0.2"])
        assert (await provider.complete(CALL)).text == "ok 1"
    async with httpx.AsyncClient(base_url=up.base_url, timeout=0.1) as client:
        provider = OpenAICompatibleProvider(client, up.base_url)
        up.script(["slow:1"])
        with pytest.raises(ProviderTimeoutError) as info:
            await provider.complete(CALL)
    assert info.value.phase == "read"


async def _two_tier_run(up: RemoteUpstream, *, timeout_s: float = 5.0,  # type: ignore[no-untyped-def]
                        cheap_headers: str = "{}"):
    policy = parse_policy(f"""
resilience: {{retry: {{max_attempts: 1}}}}  # no retries: each fault falls back to the next tier
tiers:
  - name: cheap
    model: small
    timeout_s: {timeout_s}
    provider: {{kind: openai, base_url: "{up.base_url}", api_key: "{KEY}", headers: {cheap_headers}}}
  - name: dear
    model: big
    provider: {{kind: openai, base_url: "{up.base_url}", api_key: "{KEY}"}}
""")
    async with Cascade.from_policy(policy) as engine:
        return await engine.run("hi")


@pytest.mark.parametrize("fault", [Fault.RATE_LIMITED, Fault.RESET, Fault.GZIP_GARBAGE,
                                   Fault.HUGE_TOKENS, Fault.CONTEXT_ANTHROPIC, Fault.ECHO_KEY],
                         ids=str)
async def test_a_fault_in_a_run_falls_back_to_the_next_tier(fault: Fault,
                                                            up: RemoteUpstream) -> None:
    up.script([fault.value])
    result = await _two_tier_run(up)
    first, _ = result.attempts
    assert first.decision is Decision.ERROR
    assert (first.error or "").startswith(TABLE[fault][0].__name__)
    assert KEY not in (first.error or "")
    assert result.answer == "ok 2" and result.tier == 1


async def test_models_endpoint_faults_reach_check(up: RemoteUpstream,
                                                  provider: OpenAICompatibleProvider) -> None:
    await provider.check()
    up.script([], models=["reset"])
    with pytest.raises(ProviderConnectionError):
        await provider.check()
    await provider.check()
    assert up.stats()["models_requests"] == 3


async def test_a_seeded_mix_is_reproducible_and_everything_is_typed(up: RemoteUpstream) -> None:
    mix = {"rate_limited": 0.2, "server_error": 0.1, "reset": 0.05, "malformed_json": 0.05,
           "truncated": 0.05, "gzip_garbage": 0.05}
    outcomes: list[str] = []
    for _ in range(2):
        up.reset()
        up.set_mix(mix, seed=7)
        pool = ClientPool()
        provider = OpenAICompatibleProvider(pool.client(up.base_url, max_connections=20),
                                            up.base_url)
        kinds: list[str] = []

        async def one(provider: OpenAICompatibleProvider = provider,
                      kinds: list[str] = kinds) -> None:
            try:
                await provider.complete(CALL)
                kinds.append("ok")
            except ProviderError as exc:  # anything else fails the test
                kinds.append(type(exc).__name__)

        async with anyio.create_task_group() as group:
            for _ in range(120):
                group.start_soon(one)
        await pool.aclose()
        stats = up.stats()
        assert stats["requests"] == 120 and len(kinds) == 120
        assert kinds.count("ok") == stats["by_fault"]["ok"]
        assert kinds.count("RateLimitedError") == stats["by_fault"]["rate_limited"]
        outcomes.append(json.dumps(stats["by_fault"], sort_keys=True))
    assert outcomes[0] == outcomes[1]  # same seed, same faults
    assert 10 <= json.loads(outcomes[0])["rate_limited"] <= 40  # 20 % of 120


def test_control_rejects_unknown_faults(up: RemoteUpstream) -> None:
    bad = (["no_such_fault"], {"mix": {"rate_limited": 0.8, "hang": 0.5}}, {"bogus": 1},
           {"mix": {"rate_limited": "lots"}}, {"mix": [1]}, {"seed": "x"}, {"slow_s": -1},
           ["slow:-2"], [3], "text")
    for body in bad:
        request = urllib.request.Request(up.base_url.removesuffix("/v1") + "/_faults",
                                         data=json.dumps(body).encode(), method="POST")
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(request, timeout=5)
        assert info.value.code == 400
    assert up.stats()["scripted_left"] == 0
    up.script(["ok"])  # the server still answers control requests
    assert up.stats()["scripted_left"] == 1
    with pytest.raises(ValueError, match="unknown fault"):
        parse_fault("nope")
    assert parse_fault("slow:0.25") == (Fault.SLOW, 0.25)


async def test_in_process_server_as_an_async_context_manager() -> None:
    async with FaultUpstream() as server:
        server.script(["unavailable"])
        async with httpx.AsyncClient(base_url=server.base_url) as client:
            provider = OpenAICompatibleProvider(client, server.base_url)
            with pytest.raises(OverloadedError) as info:
                await provider.complete(CALL)
            assert info.value.retry_after_s == 2.0
            assert (await provider.complete(CALL)).text == "ok 2"
            # a hanging request does not keep the server from stopping
            server.script(["hang"])
            with anyio.move_on_after(0.2):
                await provider.complete(CALL)
        assert server.stats()["by_fault"] == {"unavailable": 1, "ok": 1, "hang": 1}


async def test_the_pool_size_bounds_the_connections(up: RemoteUpstream) -> None:
    pool = ClientPool()
    with pytest.raises(ProviderConfigError):
        pool.client(up.base_url, max_connections=0)
    provider = OpenAICompatibleProvider(pool.client(up.base_url, max_connections=3), up.base_url)
    up.script(["slow:0.2"] * 9)
    started = anyio.current_time()
    async with anyio.create_task_group() as group:
        for _ in range(9):
            group.start_soon(provider.complete, CALL)
    elapsed = anyio.current_time() - started
    await pool.aclose()
    assert elapsed >= 0.6  # 9 slow answers through 3 connections: 3 rounds of 0.2 s
    assert up.stats()["by_fault"] == {"slow": 9}


async def test_a_black_holed_host_is_a_typed_connect_timeout(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A listener whose accept queue is full drops new SYNs: the connection never opens. The
    pool's connect timeout (10 s, shortened here) turns that into a typed error."""
    import socket

    from cascade.providers import _http

    monkeypatch.setattr(_http, "CONNECT_TIMEOUT_S", 0.3)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        fillers = [socket.socket() for _ in range(3)]
        for filler in fillers:
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.1", port))
        await anyio.sleep(0.1)
        pool = ClientPool()
        url = f"http://127.0.0.1:{port}/v1"
        provider = OpenAICompatibleProvider(pool.client(url), url)
        try:
            with pytest.raises(ProviderTimeoutError) as info:
                await provider.complete(CALL)
        finally:
            await pool.aclose()
            for filler in fillers:
                filler.close()
    assert info.value.phase == "connect"


def test_fault_state_is_pure_and_keeps_the_order() -> None:
    from benchmarks.fault_upstream import FaultState

    state = FaultState()
    state.control({"script": ["rate_limited", "slow:0.3"], "mix": {"slow:0.1": 1.0}, "seed": 3})
    assert state.choose("reset") == (Fault.RESET, None)  # the header wins, the script waits
    assert state.choose(None) == (Fault.RATE_LIMITED, None)
    assert state.choose(None) == (Fault.SLOW, 0.3)
    assert state.choose(None) == (Fault.SLOW, 0.1)  # then the mix
    assert state.choose(None, models=True) == (Fault.OK, None)  # the mix is for completions
    for slow_s in (float("nan"), -1.0, float("inf")):
        with pytest.raises(ValueError):
            state.control({"script": ["ok"], "slow_s": slow_s})
    assert not state.script and state.slow_s == 0.5  # a rejected control changed nothing
