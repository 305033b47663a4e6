"""One pooled ``httpx.AsyncClient`` per base URL, and the mapping of transport failures
onto our error tree."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import httpx

from cascade.errors import (
    ProviderHTTPError,
    ProviderResponseError,
    ProviderTimeoutError,
    ProviderUnreachableError,
)


class ClientPool:
    """Owns the HTTP clients of one ``Cascade``; ``aclose`` closes them all."""

    def __init__(self, transport: httpx.AsyncBaseTransport | None = None, *,
                 max_connections: int = 100) -> None:
        self._transport = transport
        self._max_connections = max_connections  # the deployment's bulkhead: never more in flight
        self._clients: dict[str, httpx.AsyncClient] = {}

    def client(self, base_url: str) -> httpx.AsyncClient:
        client = self._clients.get(base_url)
        if client is None:
            client = httpx.AsyncClient(
                base_url=base_url,
                transport=self._transport,
                timeout=httpx.Timeout(None),  # the engine's fail_after bounds each call
                limits=httpx.Limits(max_connections=self._max_connections,
                                    max_keepalive_connections=self._max_connections),
            )
            self._clients[base_url] = client
        return client

    async def aclose(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.aclose()


def deployment_name(kind: str, base_url: str) -> str:
    """``openai@host:port/path`` — the URL without credentials or query."""
    url = httpx.URL(base_url)
    port = f":{url.port}" if url.port else ""
    return f"{kind}@{url.host}{port}{url.path.rstrip('/')}"


async def post_json(client: httpx.AsyncClient, path: str, body: Mapping[str, Any],
                    headers: Mapping[str, str], deployment: str) -> Any:
    """POST JSON and return the decoded body; transport and HTTP failures become typed errors."""
    try:
        response = await client.post(path, json=body, headers=dict(headers))
    except httpx.TimeoutException as exc:
        raise ProviderTimeoutError(deployment, f"timed out ({type(exc).__name__})") from exc
    except (httpx.ConnectError, httpx.UnsupportedProtocol) as exc:
        raise ProviderUnreachableError(deployment, f"cannot connect: {exc}") from exc
    except httpx.TransportError as exc:
        raise ProviderUnreachableError(deployment, f"transport error: {exc!r}") from exc
    if response.status_code >= 400:
        raise ProviderHTTPError(deployment, response.status_code, _error_detail(response))
    try:
        return response.json()
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ProviderResponseError(deployment, "the response is not JSON") from exc


def _error_detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return response.text[:200] or response.reason_phrase
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict):
            return str(error.get("message", error))[:300]
        return str(error)[:300]
    return str(body)[:300]


async def probe(client: httpx.AsyncClient, path: str, deployment: str) -> None:
    """Reachability: any HTTP answer will do (even 401/404); a failed connection raises."""
    try:
        await client.get(path)
    except httpx.TimeoutException as exc:
        raise ProviderUnreachableError(deployment, "timed out connecting") from exc
    except httpx.TransportError as exc:
        raise ProviderUnreachableError(deployment, f"cannot connect: {exc}") from exc
