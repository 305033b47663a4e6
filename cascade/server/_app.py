"""The OpenAI-compatible gateway: a Starlette app over one ``Cascade`` per policy.

``POST /v1/chat/completions`` (plain or ``stream: true`` as server-sent events),
``GET /v1/models``, ``GET /healthz``, ``GET /readyz``. Every error is OpenAI's error object
with its status; bad input is a 4xx, never a 500."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from cascade._stream import Delta, Done
from cascade.engine import Cascade
from cascade.errors import (
    BadRequestError,
    BudgetDeniedError,
    BudgetExceededError,
    CascadeError,
    ConfigError,
    DeadlineExceededError,
    PromptTooLongError,
    RequestError,
)
from cascade.server._config import (
    ApiKeys,
    GatewayConfig,
    MetricsAccess,
    RefuseRule,
    TierRule,
    environment,
)
from cascade.server._forward import forward
from cascade.server._metrics import PROMETHEUS_CONTENT_TYPE, render_metrics, shutdown_meter_provider
from cascade.server._models import Served, load_models
from cascade.server._schema import (
    ChatRequest,
    GatewayRequestError,
    chat_chunk,
    chat_completion,
    completion_id,
    error_body,
    parse_chat_request,
    usage_of,
)
from cascade.state import FailoverStore

__all__ = ["Gateway", "create_app"]

log = logging.getLogger("cascade.server")
READY_TIMEOUT_S = 2.0


def error_response(exc: CascadeError) -> JSONResponse:
    """The status and OpenAI error object for a failed request."""
    match exc:
        case GatewayRequestError():
            status, type_, param, code = exc.status, exc.type, exc.param, exc.code
        case PromptTooLongError():
            status, type_, param, code = 400, "invalid_request_error", "messages", \
                "context_length_exceeded"
        case RequestError():
            status, type_, param, code = 400, "invalid_request_error", None, None
        case BadRequestError():  # an upstream refused a request sent to it unverified
            status, type_, param, code = 400, "invalid_request_error", None, "upstream_bad_request"
        case BudgetExceededError() | BudgetDeniedError():
            status, type_, param, code = 429, "insufficient_quota", None, "budget_exceeded"
        case DeadlineExceededError():
            status, type_, param, code = 504, "timeout", None, "deadline_exceeded"
        case ConfigError():
            status, type_, param, code = 500, "server_error", None, "configuration"
        case _:  # NoAnswerError, provider errors: the upstreams failed
            status, type_, param, code = 502, "upstream_error", None, "no_answer"
    return JSONResponse(error_body(str(exc), type_, param=param, code=code), status_code=status)


@dataclass(slots=True)
class Gateway:
    """What the app serves: the models, the keys, the limits."""

    config: GatewayConfig
    keys: ApiKeys
    served: Served | None = None
    policies: Path | None = None
    started: float = field(default_factory=time.time)

    def caller(self, request: Request) -> str | None:
        """The key's id; ``GatewayRequestError`` 401 without a valid key."""
        if not self.config.auth:
            return None
        header = request.headers.get("authorization", "")
        scheme, _, key = header.partition(" ")
        ident = self.keys.identify(key.strip()) if scheme.lower() == "bearer" and key else None
        if ident is None:
            raise GatewayRequestError(
                "Incorrect API key provided." if header else "You didn't provide an API key. "
                "Send it as `Authorization: Bearer KEY`.", status=401, code="invalid_api_key")
        return ident

    def metrics_reader(self, request: Request) -> None:
        """``GET /metrics``: 404 when off, 401 without a valid key when key-protected."""
        match self.config.metrics:
            case MetricsAccess.OFF:
                raise GatewayRequestError("GET /metrics is off (gateway config `metrics: off`)",
                                          status=404, code="not_found")
            case MetricsAccess.KEY:
                header = request.headers.get("authorization", "")
                scheme, _, key = header.partition(" ")
                if not (scheme.lower() == "bearer" and key
                        and self.keys.identify(key.strip()) is not None):
                    raise GatewayRequestError("GET /metrics needs a valid API key "
                                              "(`Authorization: Bearer KEY`)", status=401,
                                              code="invalid_api_key")
            case MetricsAccess.OPEN:
                pass

    async def body(self, request: Request) -> Any:
        limit = self.config.max_body_bytes
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise GatewayRequestError(f"the request body is larger than {limit} bytes",
                                      status=413, code="request_too_large")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise GatewayRequestError(f"the request body is larger than {limit} bytes",
                                          status=413, code="request_too_large")
            chunks.append(chunk)
        try:
            return json.loads(b"".join(chunks))
        except (ValueError, RecursionError):
            raise GatewayRequestError("the request body is not valid JSON") from None

    def models(self) -> Served:
        if self.served is None:
            raise GatewayRequestError("the gateway is starting", status=503, type_="server_error")
        return self.served


def _metadata(gateway: Gateway, chat: ChatRequest, caller: str | None) -> dict[str, str]:
    meta = {k: v for k, v in chat.metadata.items() if k != gateway.config.caller_key}
    if caller is not None:
        meta[gateway.config.caller_key] = caller
    return meta


def _unjudgeable(gateway: Gateway, chat: ChatRequest) -> TierRule:
    """The model's rule for a request the estimators cannot judge: refuse (400 naming the
    field), or the tier to send it to unverified."""
    first = chat.unjudgeable[0]
    param = first.split(" ")[0]
    match gateway.config.rule(chat.model).on_unjudgeable:
        case TierRule() as rule:
            if chat.stream:
                raise GatewayRequestError(
                    f"`{first}` is sent unverified to tier {rule.tier!r}, which is not "
                    "available with stream: true", param="stream", code="unsupported_parameter")
            return rule
        case RefuseRule():
            raise GatewayRequestError(
                f"`{first}` cannot be judged by the cascade's estimators; the model "
                f"{chat.model!r} refuses it (on_unjudgeable: refuse). Send such requests to "
                "the provider directly.", param=param, code="unsupported_parameter")


async def _forwarded(cascade: Cascade, rule: TierRule, chat: ChatRequest, body: dict[str, Any],
                     meta: Mapping[str, str]) -> Response:
    sent = await forward(cascade, rule.tier, body, chat.messages, meta, chat.max_tokens)
    data = dict(sent.data)
    data["model"] = chat.model
    data["cascade"] = {"tier": sent.tier.name, "tier_index": cascade.tiers.index(sent.tier),
                       "model": sent.tier.model, "accepted": False, "verified": False,
                       "confidence": None, "stop_reason": "unjudgeable", "escalations": 0,
                       "cost_usd": sent.cost, "latency_s": sent.latency_s, "trace_id": None}
    return JSONResponse(data)


async def chat_completions(request: Request) -> Response:
    gateway: Gateway = request.app.state.gateway
    try:
        caller = gateway.caller(request)
        body = await gateway.body(request)
        chat = parse_chat_request(body)
        cascade = await gateway.models().get(chat.model)
        meta = _metadata(gateway, chat, caller)
        if chat.unjudgeable:
            return await _forwarded(cascade, _unjudgeable(gateway, chat), chat, body, meta)
        if chat.stream:
            return _EventStream(cascade, chat, meta, live=gateway.config.rule(chat.model).live)
        result = await cascade.run(list(chat.messages), metadata=meta, max_tokens=chat.max_tokens,
                                   temperature=chat.temperature, stop=chat.stop)
    except CascadeError as exc:
        return error_response(exc)
    return JSONResponse(chat_completion(result, chat.model))


class _EventStream:
    """``stream: true``: errors before the first delta get their HTTP status; after it, an
    error event (OpenAI's error object) ends the stream. A client that disconnects stops the
    run (and the upstream stream)."""

    def __init__(self, cascade: Cascade, chat: ChatRequest, metadata: Mapping[str, str], *,
                 live: bool) -> None:
        self.cascade, self.chat, self.metadata, self.live = cascade, chat, metadata, live
        self.id, self.created = completion_id(), int(time.time())

    def _event(self, data: Mapping[str, Any]) -> bytes:
        return b"data: " + json.dumps(data, separators=(",", ":")).encode() + b"\n\n"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async with anyio.create_task_group() as group:
            async def gone() -> None:
                while (await receive())["type"] != "http.disconnect":
                    pass
                group.cancel_scope.cancel()
            group.start_soon(gone)
            await self._run(send)
            group.cancel_scope.cancel()

    async def _run(self, send: Send) -> None:
        chat = self.chat
        started = False
        try:
            async with self.cascade.stream(
                    list(chat.messages), metadata=self.metadata, max_tokens=chat.max_tokens,
                    temperature=chat.temperature, stop=chat.stop, live=self.live) as stream:
                async for item in stream:
                    if not started:
                        await self._start(send)
                        started = True
                    await self._item(send, item)
        except CascadeError as exc:
            if not started:
                response = error_response(exc)
                await send({"type": "http.response.start", "status": response.status_code,
                            "headers": response.raw_headers})
                await send({"type": "http.response.body", "body": response.body})
                return
            error = json.loads(error_response(exc).body)
            await send({"type": "http.response.body", "body": self._event(error),
                        "more_body": True})
        await send({"type": "http.response.body", "body": b"data: [DONE]\n\n"})

    async def _start(self, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"content-type", b"text/event-stream; charset=utf-8"),
            (b"cache-control", b"no-cache"), (b"x-accel-buffering", b"no")]})
        first = chat_chunk(self.id, self.created, self.chat.model, content="", role=True)
        await send({"type": "http.response.body", "body": self._event(first), "more_body": True})

    async def _item(self, send: Send, item: Delta | Done) -> None:
        chat = self.chat
        match item:
            case Delta(text=text):
                data = chat_chunk(self.id, self.created, chat.model, content=text)
            case Done(result=result):
                data = chat_chunk(self.id, self.created, chat.model, result=result)
                if chat.include_usage:
                    await send({"type": "http.response.body", "more_body": True,
                                "body": self._event(data)})
                    data = chat_chunk(self.id, self.created, chat.model, choices=False,
                                      usage=usage_of(result))
        await send({"type": "http.response.body", "body": self._event(data), "more_body": True})


def _model(gateway: Gateway, name: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": int(gateway.started), "owned_by": "cascade"}


async def list_models(request: Request) -> Response:
    gateway: Gateway = request.app.state.gateway
    try:
        gateway.caller(request)
        served = gateway.models()
    except CascadeError as exc:
        return error_response(exc)
    return JSONResponse({"object": "list", "data": [_model(gateway, n) for n in served.names]})


async def retrieve_model(request: Request) -> Response:
    """``GET /v1/models/{model}``: a policy, or a ``router-<kind>-<threshold>`` name the
    default policy can serve (built, as a request would); else 404 ``model_not_found``."""
    gateway: Gateway = request.app.state.gateway
    name = request.path_params["model"]
    try:
        gateway.caller(request)
        await gateway.models().get(name)
    except CascadeError as exc:
        return error_response(exc)
    return JSONResponse(_model(gateway, name))


async def metrics_page(request: Request) -> Response:
    """The process's metrics in Prometheus' text format (docs/gateway.md)."""
    gateway: Gateway = request.app.state.gateway
    try:
        gateway.metrics_reader(request)
        page = await anyio.to_thread.run_sync(render_metrics)
    except CascadeError as exc:
        return error_response(exc)
    return Response(page, media_type=PROMETHEUS_CONTENT_TYPE)


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    """Policies loaded, every deployment reachable, the shared store answering."""
    gateway: Gateway = request.app.state.gateway
    problems: list[str] = []
    if gateway.served is None:
        problems.append("policies not loaded")
    else:
        for name, cascade in gateway.served.cascades.items():
            problems += [f"{name}: {p}" for p in await _cascade_problems(cascade)]
    body = {"status": "ready" if not problems else "not ready", "problems": problems}
    return JSONResponse(body, status_code=200 if not problems else 503)


async def _cascade_problems(cascade: Cascade) -> list[str]:
    problems: list[str] = []
    try:
        await cascade.check(timeout_s=READY_TIMEOUT_S)
    except CascadeError as exc:
        problems.append(f"{type(exc).__name__}: {exc}")
    store = cascade.resilience.store
    try:
        with anyio.fail_after(READY_TIMEOUT_S):
            await store.get(["readyz"])
    except (CascadeError, TimeoutError) as exc:
        problems.append(f"store: {type(exc).__name__}: {exc}")
    if isinstance(store, FailoverStore) and store.degraded:
        problems.append("store: the shared store (Redis) is unreachable; serving on local state")
    return problems


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = "not_found" if exc.status_code == 404 else "method_not_allowed"
    return JSONResponse(error_body(f"{request.method} {request.url.path}: {exc.detail}",
                                   "invalid_request_error", code=code),
                        status_code=exc.status_code)


def create_app(config: GatewayConfig, *, policies: Path | None = None,
               served: Served | None = None, env: Mapping[str, str] | None = None,
               owns_meter_provider: bool = False) -> Starlette:
    """The app; ``policies`` are loaded at startup (or pass ``served`` already built). The
    cascades are closed at shutdown, and the global meter provider too when
    ``owns_meter_provider`` (``cascade serve`` installed it: the last OTLP push)."""
    gateway = Gateway(config, ApiKeys.build(config, environment() if env is None else env),
                      served, policies)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if gateway.served is None and policies is not None:
            gateway.served = load_models(policies, config.default_model, config.models)
        try:
            yield
        finally:
            if gateway.served is not None:
                await gateway.served.aclose()
            if owns_meter_provider:
                shutdown_meter_provider()

    app = Starlette(routes=[
        Route("/v1/chat/completions", chat_completions, methods=["POST"]),
        Route("/v1/models", list_models, methods=["GET"]),
        Route("/v1/models/{model:path}", retrieve_model, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics_page, methods=["GET"]),
    ], exception_handlers={HTTPException: _http_error}, lifespan=lifespan)
    app.state.gateway = gateway
    return app
