"""Pure classification of provider failures into the error taxonomy (no I/O here).

``classify`` turns an HTTP error answer (status, headers, body) into the right
``ProviderError`` subclass; ``classify_transport`` does the same for an httpx exception;
``Secrets`` redacts every secret a provider knows from upstream text before it is kept in an
error or logged; ``token_count`` and ``logprob`` validate the numbers an untrusted upstream
sends. docs/errors.md has the table.
"""

from __future__ import annotations

import email.utils
import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, quote, quote_plus, unquote, urlsplit, urlunsplit

import httpx

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

REDACTED = "[REDACTED]"
DETAIL_CAP = 300  # characters of upstream text kept in an error
BODY_READ_CAP = 64 * 1024  # characters of an error body parsed and searched for wordings
MAX_TOKENS = 10**8  # a token count above this is not a real count
MIN_SECRET = 4  # shorter values (a header "1") are not secrets; redacting them mangles text
LOGPROB_SLACK = 1e-4  # float rounding can make a log-softmax a hair above 0: clamped to 0.0

# --- secrets ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Secrets:
    """Every secret string one provider knows (its API key, every header value, the base
    URL's userinfo and query values; 4 characters or more); ``redact`` replaces each
    occurrence (and its URL-encoded forms) by ``[REDACTED]`` and caps the text."""

    values: tuple[str, ...] = ()

    @classmethod
    def of(cls, *, api_key: str | None = None, headers: Iterable[str] = (),
           base_url: str | None = None) -> Secrets:
        found: set[str] = set()
        for value in (api_key, *headers, *(url_secrets(base_url) if base_url else ())):
            if value and len(value) >= MIN_SECRET:
                found.add(value)
                # "Bearer sk-..." also leaks as "sk-..." alone
                scheme, _, rest = value.partition(" ")
                if rest and scheme.lower() in {"bearer", "basic", "token"}:
                    found.add(rest)
        variants = {form for value in found
                    for form in (value, quote(value, safe=""), quote_plus(value, safe=""))}
        # longest first, so that a secret containing another is replaced whole
        return cls(tuple(sorted(variants, key=len, reverse=True)))

    def redact(self, text: str, cap: int | None = DETAIL_CAP) -> str:
        for value in self.values:
            if value in text:
                text = text.replace(value, REDACTED)
        if cap is not None and len(text) > cap:
            text = text[:cap] + "…"
        return text

    def __repr__(self) -> str:
        return f"Secrets({len(self.values)} values)"


NO_SECRETS = Secrets()


def url_secrets(url: str) -> tuple[str, ...]:
    """The secrets of a URL: its userinfo (user and password) and every query value."""
    parts = urlsplit(url)
    found = [unquote(parts.username or ""), unquote(parts.password or "")]
    found += [value for _, value in parse_qsl(parts.query, keep_blank_values=False)]
    found += [value for value in (parts.username, parts.password) if value]
    return tuple(value for value in found if value)


def bare_url(url: str) -> str:
    """``scheme://host:port/path``: no userinfo, query or fragment. ValueError on a bad port."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host + (f":{parts.port}" if parts.port is not None else "")
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def clean_url(url: str) -> str:
    """The URL for reprs and logs: no userinfo, every query value ``[REDACTED]``."""
    query = "&".join(f"{name}={REDACTED}" for name, _ in parse_qsl(urlsplit(url).query))
    return bare_url(url) + (f"?{query}" if query else "")


# --- reading an error answer ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ErrorBody:
    """What an error body says: the message and the provider's type / code, if any."""

    message: str
    type: str = ""
    code: str = ""


def parse_error_body(text: str) -> ErrorBody:
    """OpenAI ``{"error": {"message", "type", "code"}}``, Anthropic ``{"type": "error",
    "error": {"type", "message"}}``, vLLM ``{"object": "error", "message", ...}``, FastAPI
    ``{"detail": ...}``, or plain text."""
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        return ErrorBody(text.strip())
    if isinstance(data, dict):
        error = data.get("error", data)
        if isinstance(error, dict):
            message = error.get("message", error.get("detail", ""))
            if not isinstance(message, str):
                message = json.dumps(message)[:2 * DETAIL_CAP] if message else ""
            return ErrorBody(message or _compact(error), _text(error.get("type")),
                             _text(error.get("code")))
        if isinstance(error, str):
            return ErrorBody(error, _text(data.get("type")), _text(data.get("code")))
    return ErrorBody(_compact(data))


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def _compact(value: object) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)[:2 * DETAIL_CAP]


_CONTEXT_LENGTH_WORDINGS = (
    r"context_length_exceeded",  # OpenAI code
    r"maximum context length is",  # OpenAI, vLLM, llama-cpp-python server
    r"prompt is too long",  # Anthropic
    r"exceed context limit",  # Anthropic: input length and `max_tokens` exceed ...
    r"is longer than the maximum model length",  # vLLM
    r"exceeds? (the )?(available )?context (window|size)",  # llama.cpp server, in process
    r"exceed_context_size_error",  # llama.cpp server type
    r"too many tokens in the prompt",
)
_CONTEXT_LENGTH = re.compile("|".join(_CONTEXT_LENGTH_WORDINGS), re.IGNORECASE)
# a 400/403 is quota only with these precise wordings; a 429 also with ``billing`` or
# ``spend limit`` anywhere in its body
_QUOTA_PRECISE_WORDINGS = (
    r"insufficient_quota",  # OpenAI code / type
    r"exceeded your current quota",  # OpenAI
    r"credit balance is too low",  # Anthropic (a 400)
    r"reached your specified api usage limits",  # Anthropic spend limit
    r"billing_error",  # Anthropic type (402)
)
_QUOTA_PRECISE = re.compile("|".join(_QUOTA_PRECISE_WORDINGS), re.IGNORECASE)
_QUOTA_429 = re.compile(_QUOTA_PRECISE.pattern + r"|\bbilling\b|spend(ing)? limit|quota exceeded",
                        re.IGNORECASE)
_CONTENT_FILTER = re.compile(r"content_filter|content management policy|content_policy_violation",
                             re.IGNORECASE)

# Anthropic's error types -> the status that means the same (a 200 can carry one)
ANTHROPIC_ERROR_STATUS: Mapping[str, int] = {
    "invalid_request_error": 400, "authentication_error": 401, "billing_error": 402,
    "permission_error": 403, "not_found_error": 404, "request_too_large": 413,
    "rate_limit_error": 429, "api_error": 500, "timeout_error": 504, "overloaded_error": 529,
}


def is_context_length(text: str) -> bool:
    return _CONTEXT_LENGTH.search(text) is not None


def classify(deployment: str, status: int, headers: Mapping[str, str] | httpx.Headers,
             body_text: str, *, secrets: Secrets, now: float) -> ProviderError:
    """The error for an HTTP answer with an error status. ``now`` (Unix seconds) anchors an
    HTTP-date ``Retry-After``. Pure: no I/O, no clock."""
    body = parse_error_body(body_text[:BODY_READ_CAP])
    said = f"{body.message} {body.type} {body.code}"[:BODY_READ_CAP]
    detail = secrets.redact(body.message or httpx.codes.get_reason_phrase(status) or "(no body)")
    wait = retry_after_s(headers, now)
    if (status == 402 or (status == 429 and _QUOTA_429.search(said))
            or (status in {400, 403} and _QUOTA_PRECISE.search(said))):
        return QuotaExhaustedError(deployment, status, detail, retry_after_s=wait)
    match status:
        case 429:
            return RateLimitedError(deployment, status, detail, retry_after_s=wait)
        case 503 | 529:
            return OverloadedError(deployment, status, detail, retry_after_s=wait)
        case 401 | 403:
            return AuthenticationError(deployment, status, detail)
        case 408:
            return ProviderTimeoutError(deployment, f"HTTP 408: {detail}", phase="read",
                                        retry_after_s=wait)
    if 400 <= status < 600 and is_context_length(said):
        return ContextLengthExceededError(deployment, status, detail)
    if 500 <= status < 600:
        return ServerError(deployment, status, detail, retry_after_s=wait)
    if _CONTENT_FILTER.search(said):
        return ContentFilteredError(deployment, f"HTTP {status}: {detail}", status=status)
    if status in {400, 404, 413, 422}:
        return BadRequestError(deployment, status, detail)
    return ProviderHTTPError(deployment, status, detail)


# --- Retry-After ---------------------------------------------------------------------------------

_GO_DURATION = re.compile(r"^(?:(\d+(?:\.\d+)?)(h|ms|m|s))+$")
_GO_PART = re.compile(r"(\d+(?:\.\d+)?)(h|ms|m|s)")
_UNIT_S = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


def retry_after_s(headers: Mapping[str, str] | httpx.Headers, now: float) -> float | None:
    """Seconds to wait before retrying, from (first found): ``retry-after-ms``,
    ``Retry-After`` (delta-seconds or HTTP-date, relative to ``now``), or OpenAI's
    ``x-ratelimit-reset-requests`` / ``-tokens`` for the limit whose remaining count is 0.
    None when absent or unreadable; never negative."""
    lower = {k.lower(): v for k, v in headers.items()}
    millis = _number(lower.get("retry-after-ms"))
    if millis is not None:
        return millis / 1000.0
    value = lower.get("retry-after")
    if value is not None:
        seconds = _number(value)
        if seconds is not None:
            return seconds
        try:
            when = email.utils.parsedate_to_datetime(value.strip())
        except (TypeError, ValueError, IndexError):
            when = None
        if when is not None and when.tzinfo is not None:
            return max(0.0, when.timestamp() - now)
    resets = [_go_duration(lower.get(f"x-ratelimit-reset-{kind}"))
              for kind in ("requests", "tokens")
              if (lower.get(f"x-ratelimit-remaining-{kind}") or "").strip() == "0"]
    known = [r for r in resets if r is not None]
    return max(known) if known else None


def _number(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        number = float(value.strip())
    except ValueError:
        return None
    if not math.isfinite(number) or number < 0:
        return None
    return number


def _go_duration(value: str | None) -> float | None:
    """OpenAI's reset headers: Go durations such as ``1s``, ``6m0s``, ``20ms``, ``1h2m3.5s``."""
    if value is None or not _GO_DURATION.match(value.strip()):
        return None
    return sum(float(n) * _UNIT_S[unit] for n, unit in _GO_PART.findall(value.strip()))


# --- transport -------------------------------------------------------------------------------------


def classify_transport(deployment: str, exc: BaseException, *, secrets: Secrets) -> ProviderError:
    """The error for an httpx exception (or a broken body): nothing from httpx escapes."""
    text = secrets.redact(str(exc) or type(exc).__name__)
    name = type(exc).__name__
    match exc:
        case httpx.ConnectTimeout():
            return ProviderTimeoutError(deployment, f"connect timed out ({name})", phase="connect")
        case httpx.ReadTimeout() | httpx.WriteTimeout() | httpx.PoolTimeout():
            return ProviderTimeoutError(deployment, f"timed out ({name})", phase="read")
        case httpx.TimeoutException():
            return ProviderTimeoutError(deployment, f"timed out ({name})", phase="read")
        case httpx.ConnectError() | httpx.UnsupportedProtocol() | httpx.ProxyError():
            return ProviderUnreachableError(deployment, f"cannot connect ({name}): {text}")
        case httpx.DecodingError():
            return ProviderResponseError(deployment, f"the response cannot be decoded: {text}")
        case httpx.TransportError():  # RemoteProtocolError, ReadError, WriteError, CloseError
            return ProviderConnectionError(deployment, f"connection broken ({name}): {text}")
        case httpx.TooManyRedirects():
            return ProviderResponseError(deployment, f"too many redirects: {text}")
        case httpx.InvalidURL():
            return ProviderUnreachableError(deployment, f"invalid URL: {text}")
    return ProviderConnectionError(deployment, f"HTTP failure ({name}): {text}")


# --- untrusted numbers --------------------------------------------------------------------------


def token_count(value: Any, field: str, deployment: str) -> int:
    """A usage count: a non-negative integer (an int-valued float is fine) up to 10**8."""
    match value:
        case bool():
            pass
        case int() if 0 <= value <= MAX_TOKENS:
            return value
        case float() if value.is_integer() and 0 <= value <= MAX_TOKENS:
            return int(value)
    raise ProviderResponseError(deployment, f"invalid {field}: {_shown(value)}")


def logprob(value: Any, deployment: str) -> float:
    """A token logprob: a finite float <= 0 (a rounding excess up to 1e-4 is clamped to 0)."""
    match value:
        case bool():
            pass
        case int() | float() if math.isfinite(value) and value <= LOGPROB_SLACK:
            return min(float(value), 0.0)
    raise ProviderResponseError(deployment, f"invalid logprob: {_shown(value)}")


def _shown(value: Any) -> str:
    shown = repr(value) if isinstance(value, (int, float, str, bool, type(None))) \
        else type(value).__name__
    return shown[:40]


__all__ = [
    "ANTHROPIC_ERROR_STATUS",
    "DETAIL_CAP",
    "MAX_TOKENS",
    "REDACTED",
    "ErrorBody",
    "Secrets",
    "bare_url",
    "classify",
    "classify_transport",
    "clean_url",
    "is_context_length",
    "logprob",
    "parse_error_body",
    "retry_after_s",
    "token_count",
    "url_secrets",
]
