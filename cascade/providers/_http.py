"""One pooled ``httpx.AsyncClient`` per base URL, the one POST every HTTP provider makes, and
the mapping of its failures onto our error tree (classification itself is pure:
``cascade.providers._errors``)."""

from __future__ import annotations

import json
import logging
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import httpx
from opentelemetry import propagate

from cascade.errors import ProviderConfigError, ProviderResponseError, ProviderUnreachableError
from cascade.providers._errors import (
    NO_SECRETS,
    Secrets,
    bare_url,
    classify,
    classify_transport,
)

CONNECT_TIMEOUT_S = 10.0  # a black-holed host is a typed connect timeout, not a hang
MAX_RESPONSE_BYTES = 32 * 2**20  # decoded; an untrusted upstream cannot fill our memory
Clock = Callable[[], float]


class _LogRedactor(logging.Filter):
    """Installed on the ``httpx`` logger (every request URL at INFO) and httpcore's (response
    headers at DEBUG): replaces the URL secrets (userinfo, query values) of every base URL a
    ``ClientPool`` serves and the secrets of every live HTTP provider."""

    def __init__(self) -> None:
        super().__init__("cascade-redact")
        self._lock = threading.Lock()
        self._secrets: dict[int, Secrets] = {}

    def register(self, key: int, secrets: Secrets) -> None:
        if secrets.values:
            with self._lock:
                self._secrets[key] = secrets

    def unregister(self, key: int) -> None:
        with self._lock:
            self._secrets.pop(key, None)

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._secrets:
            return True
        with self._lock:
            known = tuple(self._secrets.values())
        message = record.getMessage()
        redacted = message
        for secrets in known:
            redacted = secrets.redact(redacted, cap=None)
        if redacted != message:
            record.msg, record.args = redacted, ()
        return True


_REDACTOR = _LogRedactor()
for _name in ("httpx", "httpcore.connection", "httpcore.http11", "httpcore.http2",
              "httpcore.proxy"):
    logging.getLogger(_name).addFilter(_REDACTOR)


def register_secrets(owner: object, secrets: Secrets) -> None:
    """Scrub ``secrets`` from httpx's and httpcore's log records until ``owner`` is closed
    (``unregister_secrets``) or collected."""
    _REDACTOR.register(id(owner), secrets)
    weakref.finalize(owner, _REDACTOR.unregister, id(owner))


def unregister_secrets(owner: object) -> None:
    _REDACTOR.unregister(id(owner))


SHARD_CONNECTIONS = 8  # connections per httpcore pool (see ShardedTransport)


class ShardedTransport(httpx.AsyncBaseTransport):
    """``max_connections`` connections as several httpcore pools of at most
    ``SHARD_CONNECTIONS`` each; a request goes to the pool with the fewest requests under way.

    Why: httpcore's pool spends time per request that grows with its number of connections
    and waiting requests. Measured here against a loopback server (one client, concurrency =
    connections): 619 requests/s at 1, 633 at 8, 180 at 32, 62 at 64; the same 64 in flight
    over 8 pools of 8: 533 requests/s (``benchmarks/http_pool.py``). This is what made 1000
    concurrent runs on one upstream collapse. The shards share nothing but the process."""

    def __init__(self, max_connections: int, *, shard: int = SHARD_CONNECTIONS) -> None:
        count = max(1, -(-max_connections // shard))
        size = -(-max_connections // count)
        limits = httpx.Limits(max_connections=size, max_keepalive_connections=size)
        self._shards = [httpx.AsyncHTTPTransport(limits=limits, retries=0) for _ in range(count)]
        self._busy = [0] * count

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        index = min(range(len(self._shards)), key=self._busy.__getitem__)
        self._busy[index] += 1
        response = None
        try:
            response = await self._shards[index].handle_async_request(request)
        finally:
            if response is None:  # failed or cancelled: no body will give the shard back
                self._busy[index] -= 1
        return httpx.Response(response.status_code, headers=response.headers,
                              stream=_Released(response.stream, self._busy, index),  # type: ignore[arg-type]
                              extensions=response.extensions, request=request)

    async def aclose(self) -> None:
        for shard in self._shards:
            await shard.aclose()


class _Released(httpx.AsyncByteStream):
    """A response body that gives its shard back when it is read to the end or closed."""

    def __init__(self, stream: httpx.AsyncByteStream, busy: list[int], index: int) -> None:
        self._stream, self._busy, self._index, self._done = stream, busy, index, False

    async def __aiter__(self):  # type: ignore[no-untyped-def]
        async for chunk in self._stream:
            yield chunk

    async def aclose(self) -> None:
        try:
            await self._stream.aclose()
        finally:
            if not self._done:
                self._done = True
                self._busy[self._index] -= 1


class ClientPool:
    """Owns the HTTP clients of one ``Cascade``; ``aclose`` closes them all.

    The client's own base URL carries neither credentials nor a query: userinfo becomes HTTP
    basic auth and query parameters become the client's ``params``; httpx's and httpcore's
    log records are scrubbed of both. No retries in httpx (the engine owns retries); no read
    timeout (the engine's deadline bounds each call); a connect timeout of 10 s.
    """

    def __init__(self, transport: httpx.AsyncBaseTransport | None = None, *,
                 max_connections: int = 100) -> None:
        self._transport = transport
        self._max_connections = max_connections  # the deployment's bulkhead: never more in flight
        self._clients: dict[tuple[str, int], httpx.AsyncClient] = {}

    def client(self, base_url: str, *, max_connections: int | None = None) -> httpx.AsyncClient:
        """The pooled client of ``base_url`` with at most ``max_connections`` connections (all
        kept alive; default: the pool's, sized to the bulkhead); one client per (URL, size)."""
        if max_connections is None:
            max_connections = self._max_connections
        if max_connections < 1:
            raise ProviderConfigError(f"max_connections must be at least 1, not {max_connections}")
        key = (base_url, max_connections)
        client = self._clients.get(key)
        if client is None:
            client = self._clients[key] = self._new(base_url, max_connections)
            register_secrets(client, Secrets.of(base_url=base_url))
        return client

    def _new(self, base_url: str, max_connections: int) -> httpx.AsyncClient:
        parts = urlsplit(base_url)
        auth = None
        if parts.username is not None or parts.password is not None:
            auth = httpx.BasicAuth(unquote(parts.username or ""), unquote(parts.password or ""))
        try:
            bare = bare_url(base_url)
        except ValueError:  # the message would show the URL: say what is wrong, not where
            raise ProviderConfigError("invalid base_url: the port is not a number") from None
        transport = self._transport
        if transport is None and max_connections > SHARD_CONNECTIONS:
            transport = ShardedTransport(max_connections)
        return httpx.AsyncClient(
            base_url=bare,
            params=parse_qsl(parts.query, keep_blank_values=True),
            auth=auth,
            transport=transport,
            timeout=httpx.Timeout(None, connect=CONNECT_TIMEOUT_S),
            limits=httpx.Limits(max_connections=max_connections,
                                max_keepalive_connections=max_connections),
            event_hooks={"request": [_send_trace_context]},
        )

    async def aclose(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            unregister_secrets(client)
            await client.aclose()


def server_address(base_url: str) -> tuple[str, int | None]:
    """The host and port an upstream is reached at (span attributes ``server.address`` /
    ``server.port``): never credentials, path or query."""
    url = httpx.URL(base_url)
    return url.host, url.port


async def _send_trace_context(request: httpx.Request) -> None:
    """W3C ``traceparent`` (the application's configured propagator) on every upstream call,
    so a provider's or gateway's spans join the run's trace; nothing without an active span."""
    propagate.inject(request.headers)


def deployment_name(kind: str, base_url: str) -> str:
    """``openai@host:port/path`` — the URL without credentials or query."""
    url = httpx.URL(base_url)
    port = f":{url.port}" if url.port else ""
    return f"{kind}@{url.host}{port}{url.path.rstrip('/')}"


def check_headers(headers: Mapping[str, str]) -> None:
    """Header values httpx can send (ASCII, one line); else a ``ProviderConfigError`` that
    names the header, never its value."""
    for name, value in headers.items():
        try:
            name.encode("ascii")
            value.encode("ascii")
        except UnicodeEncodeError:
            raise ProviderConfigError(f"header {name!r} has a non-ASCII name or value") from None
        if any(c in value or c in name for c in "\r\n\0"):
            raise ProviderConfigError(f"header {name!r} contains a line break or NUL")


def _closed(client: httpx.AsyncClient, deployment: str) -> None:
    if client.is_closed:
        raise ProviderUnreachableError(deployment, "the HTTP client is closed (the Cascade "
                                                   "was closed)")


async def post_json(client: httpx.AsyncClient, path: str, body: Mapping[str, Any],
                    headers: Mapping[str, str], deployment: str, *,
                    secrets: Secrets = NO_SECRETS, clock: Clock = time.time) -> Any:
    """POST JSON and return the decoded body. Every failure is a typed ``ProviderError``:
    transport and decoding failures by ``classify_transport``, error statuses by
    ``classify`` (upstream text redacted and capped), a body that is not JSON or is larger
    than 32 MiB by ``ProviderResponseError``."""
    _closed(client, deployment)
    try:
        async with client.stream("POST", path, json=body, headers=dict(headers)) as response:
            raw = await _read_capped(response, deployment)
    except httpx.HTTPError as exc:
        raise classify_transport(deployment, exc, secrets=secrets) from exc
    except httpx.InvalidURL as exc:
        raise classify_transport(deployment, exc, secrets=secrets) from exc
    if not 200 <= response.status_code < 300:
        raise classify(deployment, response.status_code, response.headers,
                       raw.decode("utf-8", "replace"), secrets=secrets, now=clock())
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError
        raise ProviderResponseError(deployment, "the response is not JSON") from exc


async def _read_capped(response: httpx.Response, deployment: str) -> bytes:
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_RESPONSE_BYTES:
        raise ProviderResponseError(deployment, f"the response declares {declared} bytes "
                                                f"(limit {MAX_RESPONSE_BYTES})")
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > MAX_RESPONSE_BYTES:
            raise ProviderResponseError(deployment, f"the response is larger than "
                                                    f"{MAX_RESPONSE_BYTES} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def probe(client: httpx.AsyncClient, path: str, deployment: str, *,
                secrets: Secrets = NO_SECRETS) -> None:
    """Reachability: any HTTP answer will do (even 401/404); a failed connection raises a
    typed error (``ProviderUnreachableError``, ``ProviderTimeoutError``...)."""
    _closed(client, deployment)
    try:
        async with client.stream("GET", path):
            pass
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        raise classify_transport(deployment, exc, secrets=secrets) from exc
