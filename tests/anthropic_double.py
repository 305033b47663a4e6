"""A stand-in for the Anthropic Messages API served over real HTTP on loopback: it checks
the request the way Anthropic documents it and answers from a real model (the llama.cpp
server fixture), so the Anthropic provider is exercised over a real socket end to end."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

API_KEY = "ak-test-key"


def error(status: int, kind: str, message: str) -> JSONResponse:
    return JSONResponse({"type": "error", "error": {"type": kind, "message": message}}, status)


def make_app(upstream: str) -> Starlette:
    async def messages(request: Request) -> JSONResponse:
        if request.headers.get("x-api-key") != API_KEY:
            return error(401, "authentication_error", "invalid x-api-key")
        if not request.headers.get("anthropic-version"):
            return error(400, "invalid_request_error", "anthropic-version header is required")
        body = await request.json()
        for key in ("model", "max_tokens", "messages"):
            if key not in body:
                return error(400, "invalid_request_error", f"{key}: Field required")
        if any(m.get("role") not in ("user", "assistant") for m in body["messages"]):
            return error(400, "invalid_request_error", "messages: roles must be user or assistant")
        chat = ([{"role": "system", "content": body["system"]}] if "system" in body else []) + body["messages"]
        async with httpx.AsyncClient(trust_env=False) as client:
            reply = await client.post(f"{upstream}/chat/completions", json={
                "model": body["model"], "messages": chat, "max_tokens": body["max_tokens"],
                "temperature": body.get("temperature", 1.0), "stop": body.get("stop_sequences")})
        data = reply.json()
        return JSONResponse({
            "id": "msg_loopback", "type": "message", "role": "assistant", "model": body["model"],
            "content": [{"type": "text", "text": data["choices"][0]["message"]["content"]}],
            "stop_reason": "end_turn", "stop_sequence": None,
            "usage": {"input_tokens": data["usage"]["prompt_tokens"],
                      "output_tokens": data["usage"]["completion_tokens"]},
        })

    async def models(request: Request) -> JSONResponse:
        return JSONResponse({"data": [], "has_more": False})

    return Starlette(routes=[Route("/v1/messages", messages, methods=["POST"]),
                             Route("/v1/models", models, methods=["GET"])])


@contextmanager
def serve(upstream: str, port: int) -> Iterator[str]:
    server = uvicorn.Server(uvicorn.Config(make_app(upstream), host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("the Anthropic stand-in did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
