"""Issue 19 §2, untrusted upstream responses: absurd token counts, a gzip header on garbage, an
error body that echoes the API key, and a base_url with ``?key=`` or ``user:pass@`` — each a
typed error that falls back, and no secret in any message, repr, deployment name or log."""

from __future__ import annotations

import base64
import logging
import math
from collections.abc import Iterator

import httpx
import pytest

from benchmarks.fault_upstream import FaultUpstream, RemoteUpstream
from cascade import Cascade, Decision, Message, ModelCall, parse_policy
from cascade.errors import (
    BadRequestError,
    ContentFilteredError,
    NoAnswerError,
    ProviderResponseError,
    ServerError,
)
from cascade.providers import AnthropicProvider, ClientPool, OpenAICompatibleProvider
from cascade.providers._openai import parse_chat_completion

pytestmark = pytest.mark.anyio

KEY = "sk-untrusted-9f8e7d6c5b4a"
CALL = ModelCall("m", (Message("user", "hi"),), max_tokens=8, logprobs=True)


@pytest.fixture(scope="module")
def upstream() -> Iterator[RemoteUpstream]:
    with FaultUpstream.running() as up:
        yield up


@pytest.fixture
def up(upstream: RemoteUpstream) -> RemoteUpstream:
    upstream.reset()
    return upstream


def two_tiers(base_url: str, *, first_url: str | None = None) -> str:
    return f"""
resilience: {{retry: {{max_attempts: 1}}}}  # each fault falls back, no retry
tiers:
  - name: cheap
    model: small
    price: {{input_per_1m: 1.0, output_per_1m: 1.0}}
    provider: {{kind: openai, base_url: "{first_url or base_url}", api_key: "{KEY}"}}
  - name: dear
    model: big
    price: {{input_per_1m: 10.0, output_per_1m: 10.0}}
    provider: {{kind: openai, base_url: "{base_url}", api_key: "{KEY}"}}
"""


# --- token counts ----------------------------------------------------------------------------


@pytest.mark.parametrize("fault", ["huge_tokens", "negative_tokens"])
async def test_absurd_token_counts_fall_back_and_the_cost_stays_sane(
        fault: str, up: RemoteUpstream) -> None:
    up.script([fault])
    async with Cascade.from_policy(parse_policy(two_tiers(up.base_url))) as engine:
        result = await engine.run("hi")
    first, _ = result.attempts
    assert first.decision is Decision.ERROR
    assert (first.error or "").startswith("ProviderResponseError")
    assert "invalid usage.prompt_tokens" in (first.error or "")
    assert result.answer == "ok 2" and result.tier == 1
    assert math.isfinite(result.cost) and result.cost > 0
    assert first.cost == 0.0


@pytest.mark.parametrize(
    ("usage", "ok"),
    [({"prompt_tokens": 12.0, "completion_tokens": 3}, True),
     ({"prompt_tokens": float("inf"), "completion_tokens": 3}, False),
     ({"prompt_tokens": -1e8, "completion_tokens": 3}, False),
     ({"prompt_tokens": "12", "completion_tokens": 3}, False),
     ({"prompt_tokens": float("nan"), "completion_tokens": 3}, False),
     ({"prompt_tokens": True, "completion_tokens": 3}, False),
     ({"prompt_tokens": 12, "completion_tokens": 10**9}, False),
     ("lots", False)],
)
def test_usage_validation(usage: object, ok: bool) -> None:
    body = {"choices": [{"message": {"content": "x"}, "finish_reason": "stop"}], "usage": usage}
    if ok:
        completion = parse_chat_completion(body, CALL, "d")
        assert (completion.input_tokens, completion.output_tokens) == (12, 3)
        assert isinstance(completion.input_tokens, int)
    else:
        with pytest.raises(ProviderResponseError):
            parse_chat_completion(body, CALL, "d")


@pytest.mark.parametrize("value", [0.5, float("nan"), float("-inf"), "-0.1", None])
def test_bad_logprobs_make_the_response_invalid(value: object) -> None:
    body = {"choices": [{"message": {"content": "x"}, "logprobs": {"content": [
        {"token": "x", "logprob": value, "top_logprobs": []}]}}]}
    with pytest.raises(ProviderResponseError, match="invalid logprob"):
        parse_chat_completion(body, CALL, "d")


@pytest.mark.parametrize("body", [[], "text", 3, None, {"choices": "no"}, {"choices": [1]},
                                  {"choices": [{"message": {"content": 5}}]},
                                  {"choices": [{"message": {"content": "x"}}], "usage": [1]}])
def test_odd_bodies_are_response_errors(body: object) -> None:
    with pytest.raises(ProviderResponseError):
        parse_chat_completion(body, CALL, "d")


# --- gzip garbage, in a single tier and in an ensemble -----------------------------------------


async def test_gzip_garbage_in_an_ensemble_does_not_kill_the_run(up: RemoteUpstream) -> None:
    policy = parse_policy(f"""
resilience: {{retry: {{max_attempts: 1}}}}  # each fault falls back, no retry
tiers:
  - name: pair
    models:
      - model: a
        provider: {{kind: openai, base_url: "{up.base_url}", headers: {{x-fault: gzip_garbage}}}}
      - b
    provider: {{kind: openai, base_url: "{up.base_url}"}}
    estimator: {{kind: agreement, answer: exact, min_members: 1}}
    threshold: 0.0
  - name: dear
    model: big
    provider: {{kind: openai, base_url: "{up.base_url}"}}
""")
    async with Cascade.from_policy(policy) as engine:
        result = await engine.run("hi")
    pair = result.attempts[0]
    errors = [m.error for m in pair.members if m.error is not None]
    assert len(errors) == 1 and errors[0].startswith("ProviderResponseError")
    assert "cannot be decoded" in errors[0]
    assert result.answer.startswith("ok ")
    assert up.stats()["by_fault"]["gzip_garbage"] == 1


# --- secrets ---------------------------------------------------------------------------------


async def test_an_echoed_key_is_redacted_everywhere(up: RemoteUpstream,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    up.script(["echo_key"])
    async with Cascade.from_policy(parse_policy(two_tiers(up.base_url))) as engine:
        result = await engine.run("hi")
    first = result.attempts[0]
    assert (first.error or "").startswith("BadRequestError") and "[REDACTED]" in (first.error or "")
    assert KEY not in repr(result) and KEY not in str(result.attempts)
    assert all(KEY not in record.getMessage() for record in caplog.records)

    pool = ClientPool()
    provider = OpenAICompatibleProvider(pool.client(up.base_url), up.base_url, api_key=KEY)
    up.script(["echo_key"])
    with pytest.raises(BadRequestError) as info:
        await provider.complete(CALL)
    await pool.aclose()
    for text in (str(info.value), repr(info.value), info.value.detail, repr(provider)):
        assert KEY not in text
    assert info.value.detail == "Invalid header: Authorization: [REDACTED]"


async def test_anthropic_redacts_an_echoed_key_and_classifies_an_error_in_a_200() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.headers.get("x-probe") == "200":
            return httpx.Response(200, json={"type": "error", "error": {
                "type": "api_error", "message": f"internal: {KEY}"}})
        return httpx.Response(400, json={"type": "error", "error": {
            "type": "invalid_request_error", "message": f"bad x-api-key {KEY} " + "z" * 900}})

    pool = ClientPool(httpx.MockTransport(handler))
    provider = AnthropicProvider(pool.client("https://a.test"), "https://a.test", api_key=KEY)
    with pytest.raises(BadRequestError) as info:
        await provider.complete(CALL)
    assert KEY not in str(info.value) and "[REDACTED]" in info.value.detail
    assert len(info.value.detail) <= 301
    provider._headers["x-probe"] = "200"
    with pytest.raises(ServerError) as server:
        await provider.complete(CALL)
    assert KEY not in repr(server.value)
    await pool.aclose()


URL_KEY = "qk-77665544332211"


async def test_query_key_and_userinfo_never_show(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(500, text=f"upstream saw {request.url} and "
                                        f"{request.headers.get('authorization')}")

    base_url = f"https://bob:pw-{URL_KEY}@llm.test:8443/v1?key={URL_KEY}&api-version=2024-06-01"
    policy = parse_policy(f"""
resilience: {{retry: {{max_attempts: 1}}}}  # each fault falls back, no retry
tiers:
  - name: only
    model: m
    provider: {{kind: openai, base_url: "{base_url}"}}
""")
    engine = Cascade.from_policy(policy, transport=httpx.MockTransport(handler))
    try:
        [tier] = engine.tiers
        with pytest.raises(NoAnswerError) as info:
            await engine.run("hi")
        result_error = info.value.attempts[0].error
    finally:
        await engine.aclose()
    # the request really carried the query and the basic auth
    [request] = seen
    assert request.url.params["key"] == URL_KEY and request.url.params["api-version"] == "2024-06-01"
    assert request.url.path == "/v1/chat/completions" and request.url.userinfo == b""
    assert request.headers["authorization"] == "Basic " + base64.b64encode(
        f"bob:pw-{URL_KEY}".encode()).decode()
    # ... and it shows nowhere
    shown = [repr(policy), str(policy), tier.provider.deployment, repr(tier.provider),
             str(result_error)]
    shown += [record.getMessage() for record in caplog.records]
    assert any("HTTP Request" in record.getMessage() for record in caplog.records)
    for text in shown:
        assert URL_KEY not in text, text
        assert "pw-" not in text, text
    assert tier.provider.deployment == "openai@llm.test:8443/v1"
    assert "key=[REDACTED]" in repr(policy)


async def test_a_query_key_reaches_a_real_server_and_not_its_log(
        up: RemoteUpstream, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    pool = ClientPool()
    url = f"{up.base_url}?key={URL_KEY}"
    provider = OpenAICompatibleProvider(pool.client(url), url)
    completion = await provider.complete(CALL)
    await pool.aclose()
    assert completion.text == "ok 1"
    messages = [record.getMessage() for record in caplog.records if record.name == "httpx"]
    assert messages and all(URL_KEY not in m for m in messages)
    assert any("key=[REDACTED]" in m for m in messages)


def test_content_filtered_choices_are_dropped_and_all_filtered_is_typed() -> None:
    kept = {"message": {"content": "fine"}, "finish_reason": "stop"}
    cut = {"message": {"content": None}, "finish_reason": "content_filter"}
    completion = parse_chat_completion({"choices": [cut, kept]}, CALL, "d")
    assert [c.text for c in completion.choices] == ["fine"]
    with pytest.raises(ContentFilteredError) as info:
        parse_chat_completion({"choices": [cut, cut]}, CALL, "d")
    assert info.value.status is None
    # a filtered finish with text is still an answer (the filter cut it short)
    partial = {"message": {"content": "half an ans"}, "finish_reason": "content_filter"}
    assert parse_chat_completion({"choices": [partial]}, CALL, "d").text == "half an ans"


def test_an_error_object_in_a_200_is_typed_and_redacted() -> None:
    from cascade.providers._errors import Secrets

    with pytest.raises(ProviderResponseError) as info:
        parse_chat_completion({"error": {"message": f"key {KEY} revoked"}}, CALL, "d",
                              secrets=Secrets.of(api_key=KEY))
    assert KEY not in str(info.value) and "[REDACTED]" in str(info.value)


async def test_unsendable_headers_are_config_errors_and_a_closed_pool_is_typed() -> None:
    from cascade.errors import ProviderConfigError, ProviderUnreachableError

    pool = ClientPool()
    client = pool.client("http://127.0.0.1:9/v1")
    with pytest.raises(ProviderConfigError, match="non-ASCII") as info:
        OpenAICompatibleProvider(client, "http://127.0.0.1:9/v1", api_key="sk-clé-secrète")
    assert "secrète" not in str(info.value)
    with pytest.raises(ProviderConfigError, match="line break"):
        OpenAICompatibleProvider(client, "http://127.0.0.1:9/v1",
                                 headers={"x-extra": "a\r\nInjected: yes"})
    with pytest.raises(ProviderConfigError, match="non-ASCII"):
        AnthropicProvider(client, "http://127.0.0.1:9", api_key="\udcff-key")
    provider = OpenAICompatibleProvider(client, "http://127.0.0.1:9/v1")
    await pool.aclose()
    with pytest.raises(ProviderUnreachableError, match="closed"):
        await provider.complete(CALL)
    with pytest.raises(ProviderUnreachableError, match="closed"):
        await provider.check()


async def test_an_echoed_key_in_a_self_rating_call_stays_out_of_the_warning_log(
        up: RemoteUpstream, caplog: pytest.LogCaptureFixture) -> None:
    """The answer comes back, the rater's call gets a 400 echoing the key: the estimator's
    failure is logged at WARNING, redacted."""
    caplog.set_level(logging.DEBUG)
    up.script(["ok", "echo_key"])
    policy = parse_policy(f"""
resilience: {{retry: {{max_attempts: 1}}}}  # each fault falls back, no retry
tiers:
  - name: cheap
    model: small
    provider: {{kind: openai, base_url: "{up.base_url}", api_key: "{KEY}"}}
    estimator: {{kind: self_rating}}
    threshold: 0.5
  - name: dear
    model: big
    provider: {{kind: openai, base_url: "{up.base_url}", api_key: "{KEY}"}}
""")
    async with Cascade.from_policy(policy) as engine:
        result = await engine.run("hi")
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert any("BadRequestError" in w and "[REDACTED]" in w for w in warnings), warnings
    assert all(KEY not in r.getMessage() for r in caplog.records)
    assert KEY not in repr(result)
    assert up.stats()["by_fault"]["echo_key"] == 1
