"""OpenAI-compatible and Anthropic providers: request bodies, parsing, and the error taxonomy.

A mock transport is used for the error paths only; the OpenAI-compatible provider is tested
against a real llama.cpp server in test_openai_server.py."""

from __future__ import annotations

import json
import socket

import httpx
import pytest

from cascade import (
    Cascade,
    Decision,
    Message,
    ModelCall,
    OverloadedError,
    NoAnswerError,
    ProviderResponseError,
    ProviderTimeoutError,
    ProviderUnreachableError,
    parse_policy,
)
from cascade.errors import RateLimitedError, ServerError
from cascade.providers import AnthropicProvider, ClientPool, OpenAICompatibleProvider

pytestmark = pytest.mark.anyio

CALL = ModelCall("m", (Message("system", "be brief"), Message("user", "hi")), 16,
                 temperature=0.0, stop=("\n",), logprobs=True, top_logprobs=2, n=3)

OPENAI_BODY = {
    "model": "m-2024",
    "choices": [
        {"index": i, "finish_reason": "stop", "message": {"role": "assistant", "content": f"a{i}"},
         "logprobs": {"content": [
             {"token": "a", "logprob": -0.5, "top_logprobs": [{"token": "a", "logprob": -0.5},
                                                               {"token": "b", "logprob": -1.2}]},
             {"token": str(i), "logprob": -0.25, "top_logprobs": []}]}}
        for i in range(3)
    ],
    "usage": {"prompt_tokens": 12, "completion_tokens": 6, "total_tokens": 18},
}


def openai_with(handler) -> OpenAICompatibleProvider:  # type: ignore[no-untyped-def]
    pool = ClientPool(httpx.MockTransport(handler))
    return OpenAICompatibleProvider(pool.client("http://upstream.test/v1"),
                                    "http://upstream.test/v1", api_key="sk-secret")


async def test_openai_body_and_parsing() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=OPENAI_BODY)

    completion = await openai_with(handler).complete(CALL)
    [request] = seen
    assert request.url == "http://upstream.test/v1/chat/completions"
    assert request.headers["authorization"] == "Bearer sk-secret"
    body = json.loads(request.content)
    assert body == {"model": "m", "max_tokens": 16, "temperature": 0.0, "stop": ["\n"],
                    "logprobs": True, "top_logprobs": 2, "n": 3,
                    "messages": [{"role": "system", "content": "be brief"},
                                 {"role": "user", "content": "hi"}]}
    assert [c.text for c in completion.choices] == ["a0", "a1", "a2"]
    assert completion.choices[1].token_logprobs == (-0.5, -0.25)
    assert completion.choices[0].top_logprobs[0] == {"a": -0.5, "b": -1.2}  # type: ignore[index]
    assert (completion.input_tokens, completion.output_tokens) == (12, 6)
    assert completion.model == "m-2024" and not completion.usage_estimated


async def test_openai_without_usage_estimates_and_says_so() -> None:
    body = {"choices": [{"message": {"content": "four words here ok"}}]}
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=body)

    completion = await openai_with(handler).complete(
        ModelCall("m", (Message("user", "x" * 40),), 8, logprobs=True))
    sent = json.loads(seen[0].content)
    assert sent["logprobs"] is True and sent["top_logprobs"] == 1 and "n" not in sent
    assert completion.usage_estimated and completion.output_tokens == 5
    assert completion.choices[0].token_logprobs is None


@pytest.mark.parametrize(
    ("response", "error", "text"),
    [
        (httpx.Response(500, json={"error": {"message": "boom"}}), ServerError, "HTTP 500: boom"),
        (httpx.Response(429, text="slow down"), RateLimitedError, "HTTP 429: slow down"),
        (httpx.Response(200, text="<html>"), ProviderResponseError, "not JSON"),
        (httpx.Response(200, json={"choices": []}), ProviderResponseError, "no choices"),
        (httpx.Response(200, json={"nope": 1}), ProviderResponseError, "unexpected response shape"),
    ],
)
async def test_openai_failures_are_typed(response: httpx.Response, error: type, text: str) -> None:
    with pytest.raises(error) as info:
        await openai_with(lambda r: response).complete(CALL)
    assert type(info.value) is error
    assert text in str(info.value)
    assert "sk-secret" not in str(info.value)
    assert str(info.value).startswith("openai@upstream.test/v1")


async def test_openai_timeout_and_connect_errors_are_typed() -> None:
    def timeout(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    def refused(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    with pytest.raises(ProviderTimeoutError):
        await openai_with(timeout).complete(CALL)
    with pytest.raises(ProviderUnreachableError):
        await openai_with(refused).complete(CALL)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_unreachable_base_url_fails_the_check_and_escalates_in_a_run() -> None:
    port = closed_port()
    policy = parse_policy(f"""
tiers:
  - name: remote
    model: m
    provider: {{kind: openai, base_url: "http://127.0.0.1:{port}/v1"}}
""")
    async with Cascade.from_policy(policy) as engine:
        with pytest.raises(ProviderUnreachableError, match=f"openai@127.0.0.1:{port}/v1"):
            await engine.check()
        with pytest.raises(NoAnswerError) as info:
            await engine.run("hi")
    [attempt] = info.value.attempts
    assert attempt.decision is Decision.ERROR and "ProviderUnreachableError" in attempt.error


async def test_one_pooled_client_per_base_url() -> None:
    pool = ClientPool()
    assert pool.client("http://a/v1") is pool.client("http://a/v1")
    assert pool.client("http://a/v1") is not pool.client("http://b/v1")
    client = pool.client("http://a/v1")
    await pool.aclose()
    assert client.is_closed


async def test_policy_tiers_on_one_base_url_share_a_provider() -> None:
    policy = parse_policy("""
tiers:
  - {name: a, model: m1, provider: {kind: openai, base_url: "http://h:1/v1", api_key: k}}
  - {name: b, model: m2, provider: {kind: openai, base_url: "http://h:1/v1", api_key: k}}
  - {name: c, model: m3, provider: {kind: openai, base_url: "http://h:1/v1", api_key: other}}
""")
    engine = Cascade.from_policy(policy)
    a, b, c = (t.provider for t in engine.tiers)
    assert a is b and a is not c
    await engine.aclose()


ANTHROPIC_BODY = {
    "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x",
    "content": [{"type": "text", "text": "Paris"}, {"type": "text", "text": "."}],
    "stop_reason": "end_turn", "usage": {"input_tokens": 9, "output_tokens": 3},
}


async def test_anthropic_body_and_parsing() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=ANTHROPIC_BODY)

    pool = ClientPool(httpx.MockTransport(handler))
    provider = AnthropicProvider(pool.client("https://api.anthropic.test"),
                                 "https://api.anthropic.test", api_key="ak-secret")
    completion = await provider.complete(CALL)
    [request] = seen
    assert request.url == "https://api.anthropic.test/v1/messages"
    assert request.headers["x-api-key"] == "ak-secret"
    assert request.headers["anthropic-version"] == "2023-06-01"
    body = json.loads(request.content)
    assert body["system"] == "be brief" and body["stop_sequences"] == ["\n"]
    assert body["messages"] == [{"role": "user", "content": "hi"}]
    assert "n" not in body and "logprobs" not in body
    assert completion.text == "Paris." and completion.model == "claude-x"
    assert (completion.input_tokens, completion.output_tokens) == (9, 3)
    assert provider.deployment == "anthropic@api.anthropic.test"


async def test_anthropic_errors_are_typed() -> None:
    pool = ClientPool(httpx.MockTransport(lambda r: httpx.Response(
        529, json={"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})))
    provider = AnthropicProvider(pool.client("https://a.test"), "https://a.test", api_key="k")
    with pytest.raises(OverloadedError, match="HTTP 529: Overloaded"):
        await provider.complete(CALL)


async def test_anthropic_tier_in_a_policy_with_a_cascade() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=ANTHROPIC_BODY)

    policy = parse_policy("""
tiers:
  - name: claude
    model: claude-x
    provider: {kind: anthropic, api_key: "${ANTHROPIC_API_KEY}", base_url: "https://a.test"}
    price: {input_per_1m: 3, output_per_1m: 15}
""", env={"ANTHROPIC_API_KEY": "k"})
    async with Cascade.from_policy(policy, transport=httpx.MockTransport(handler)) as engine:
        result = await engine.run("capital of France?")
    assert result.answer == "Paris."
    assert result.cost == pytest.approx((9 * 3 + 3 * 15) / 1e6)
