"""The OpenAI-compatible provider against a real server on loopback: llama-cpp-python's
server hosting SmolLM2, started and stopped by the fixture."""

from __future__ import annotations

import json
import math

import httpx
import pytest

from cascade import Cascade, Message, ModelCall, parse_policy
from cascade.errors import BadRequestError, ContextLengthExceededError
from cascade.providers import ClientPool, OpenAICompatibleProvider

pytestmark = [pytest.mark.anyio, pytest.mark.models]

SYSTEM = Message("system", "Answer in one short sentence.")


async def test_logprobs_and_usage_from_a_real_response(llama_server: str) -> None:
    pool = ClientPool()
    provider = OpenAICompatibleProvider(pool.client(llama_server), llama_server)
    try:
        call = ModelCall("smollm2", (SYSTEM, Message("user", "What is the capital of France?")),
                         max_tokens=16, logprobs=True, top_logprobs=3)
        completion = await provider.complete(call)
    finally:
        await pool.aclose()
    choice = completion.choices[0]
    assert "Paris" in choice.text
    assert choice.token_logprobs is not None and len(choice.token_logprobs) >= 3
    assert all(lp <= 0 and math.isfinite(lp) for lp in choice.token_logprobs)
    assert choice.top_logprobs is not None and all(len(t) >= 1 for t in choice.top_logprobs)
    # the chosen (greedy) token is the most likely of its top alternatives
    assert max(choice.top_logprobs[0].values()) == pytest.approx(choice.token_logprobs[0], abs=1e-3)
    assert completion.input_tokens > 10 and completion.output_tokens == len(choice.token_logprobs)
    assert not completion.usage_estimated


async def test_a_cascade_over_http_tiers(llama_server: str) -> None:
    policy = parse_policy(f"""
tiers:
  - name: strict
    model: smollm2
    provider: {{kind: openai, base_url: "{llama_server}", supports_n: false}}
    system_prompt: Answer in one short sentence.
    max_tokens: 24
    price: {{input_per_1m: 1.0, output_per_1m: 2.0}}
    estimator: {{kind: logprob, statistic: min}}
    threshold: 0.999
  - name: lenient
    model: smollm2
    provider: {{kind: openai, base_url: "{llama_server}", supports_n: false}}
    system_prompt: Answer in one short sentence.
    max_tokens: 24
    price: {{input_per_1m: 10.0, output_per_1m: 20.0}}
    estimator: {{kind: logprob, statistic: mean}}
    threshold: 0.0
""")
    async with Cascade.from_policy(policy) as engine:
        await engine.check()
        result = await engine.run("What is the capital of France?")
    first, second = result.attempts
    assert first.decision.value == "escalate" and 0 < (first.confidence or 0) < 0.999
    assert second.decision.value == "accept" and result.tier == 1 and result.accepted
    assert first.deployment == second.deployment == "openai@127.0.0.1:" + llama_server.split(":")[-1]
    expected = (first.input_tokens * 1 + first.output_tokens * 2
                + second.input_tokens * 10 + second.output_tokens * 20) / 1e6
    assert result.cost == pytest.approx(expected)
    assert result.escalations == 1 and "Paris" in result.answer


async def test_n_is_sent_and_a_short_reply_is_topped_up(llama_server: str) -> None:
    """llama.cpp's server drops `n` and returns one choice; sample(k) tops up with calls."""
    from cascade import Tier
    from cascade._calls import sampler
    from cascade._request import make_request

    sent: list[dict[str, object]] = []
    choices: list[int] = []

    class Recording(httpx.AsyncHTTPTransport):
        """The real loopback transport, recording each request body and the choices returned."""

        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            sent.append(json.loads(request.content))
            response = await super().handle_async_request(request)
            await response.aread()
            choices.append(len(json.loads(response.content)["choices"]))
            return response

    pool = ClientPool(Recording())
    provider = OpenAICompatibleProvider(pool.client(llama_server), llama_server, supports_n=True)
    tier = Tier("t", "smollm2", provider, max_tokens=8, sample_temperature=0.9)
    try:
        sampled = await sampler(tier, make_request("Name a colour.", "x"))(3)
    finally:
        await pool.aclose()
    assert len(sampled.candidates) == 3
    assert sampled.usage.calls == 3  # one call with n=3 answered with 1 choice, then 2 more
    assert sent[0]["n"] == 3 and choices[0] == 1  # n was sent; the server dropped it
    assert len(sent) == 3 and all("n" not in body for body in sent[1:])
    assert sorted(body["seed"] for body in sent[1:]) == [2, 3]  # the top-ups draw fresh seeds


async def test_server_error_is_typed(llama_server: str) -> None:
    wrong = llama_server + "/nope"
    pool = ClientPool()
    provider = OpenAICompatibleProvider(pool.client(wrong), wrong)
    try:
        with pytest.raises(BadRequestError) as info:
            await provider.complete(ModelCall("smollm2", (Message("user", "hi"),), max_tokens=4))
    finally:
        await pool.aclose()
    assert info.value.status == 404 and type(info.value) is BadRequestError


async def test_a_prompt_over_the_window_is_context_length_exceeded(llama_server: str) -> None:
    """llama-cpp-python's server answers 400 in OpenAI's wording (n_ctx 2048 here)."""
    pool = ClientPool()
    provider = OpenAICompatibleProvider(pool.client(llama_server), llama_server)
    try:
        with pytest.raises(ContextLengthExceededError) as info:
            await provider.complete(ModelCall("smollm2", (Message("user", "word " * 3000),),
                                              max_tokens=4))
    finally:
        await pool.aclose()
    assert info.value.status == 400 and "context" in info.value.detail


async def test_anthropic_provider_over_real_http(llama_server: str) -> None:
    import socket

    from anthropic_double import API_KEY, serve

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with serve(llama_server, port) as base_url:
        policy = parse_policy(f"""
tiers:
  - name: claude
    model: claude-loopback
    provider: {{kind: anthropic, base_url: "{base_url}", api_key: "${{KEY}}"}}
    system_prompt: Answer in one short sentence.
    max_tokens: 24
    price: {{input_per_1m: 3, output_per_1m: 15}}
""", env={"KEY": API_KEY})
        async with Cascade.from_policy(policy) as engine:
            await engine.check()
            result = await engine.run("What is the capital of France?")
        bad = parse_policy(f"""
tiers:
  - {{name: c, model: m, provider: {{kind: anthropic, base_url: "{base_url}", api_key: wrong}}}}
""")
        async with Cascade.from_policy(bad) as engine:
            with pytest.raises(Exception) as info:
                await engine.run("hi")
    assert "Paris" in result.answer and result.accepted
    attempt = result.attempts[0]
    assert attempt.input_tokens > 10 and attempt.output_tokens > 2
    assert result.cost == pytest.approx((attempt.input_tokens * 3 + attempt.output_tokens * 15) / 1e6)
    assert attempt.deployment == f"anthropic@127.0.0.1:{port}"
    failed = info.value.attempts[0]  # type: ignore[attr-defined]
    assert "HTTP 401: invalid x-api-key" in failed.error
