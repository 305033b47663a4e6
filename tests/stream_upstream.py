"""A small OpenAI-compatible upstream on loopback that streams (server-sent events), for the
streaming and gateway tests. Raw asyncio so it can cut or stall a stream mid-answer.

What it does is chosen by the last user message:
- ``cut``: two chunks, then the connection closes (no ``[DONE]``);
- ``stall``: one chunk, then silence for 30 s;
- ``slow <s>``: waits s seconds (default 1), then answers;
- ``fail``: HTTP 500 before any byte; ``limit``: HTTP 429 with Retry-After: 0;
- anything else: the answer ``echo: <message> and a few more words`` in word chunks (``stream: true``) or whole,
  with usage when ``stream_options.include_usage`` (or not streaming).
``requests`` counts completion requests by what they asked.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections import Counter
from typing import Any, Self

_WORDS = re.compile(r"\S+\s*")


class StreamUpstream:
    def __init__(self, *, chunk_delay_s: float = 0.0, stall_s: float = 30.0) -> None:
        self.chunk_delay_s = chunk_delay_s
        self.stall_s = stall_s
        self.requests: Counter[str] = Counter()
        self.completed: Counter[str] = Counter()  # streams written to the end
        self.bodies: list[dict[str, Any]] = []
        self._server: asyncio.Server | None = None
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        try:
            await asyncio.wait_for(self._server.wait_closed(), 1)
        except TimeoutError:
            pass

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, path, _ = lines[0].split(" ", 2)
            headers = {k.lower(): v.strip() for k, v in
                       (line.split(":", 1) for line in lines[1:] if ":" in line)}
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            if method == "GET" and path.endswith("/models"):
                await _send(writer, 200, {"object": "list", "data": [
                    {"id": "up-model", "object": "model", "created": 0, "owned_by": "test"}]})
            elif method == "POST" and path.endswith("/chat/completions"):
                await self._chat(json.loads(body), writer)
            else:
                await _send(writer, 404, {"error": {"message": "no such path", "type": "x"}})
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def _chat(self, body: dict[str, Any], writer: asyncio.StreamWriter) -> None:
        self.bodies.append(body)
        prompt = [m for m in body["messages"] if m["role"] == "user"][-1]["content"]
        if isinstance(prompt, list):  # content parts: their text
            prompt = "".join(p.get("text", "") for p in prompt)
        self.requests[prompt] += 1
        if prompt.startswith("slow"):
            await asyncio.sleep(float(prompt.partition(" ")[2] or 1))
        if prompt == "fail":
            await _send(writer, 500, {"error": {"message": "boom", "type": "server_error"}})
            return
        if prompt == "limit":
            await _send(writer, 429, {"error": {"message": "slow down", "type": "rate"}},
                        {"retry-after": "0"})
            return
        answer = f"echo: {prompt} and a few more words"
        usage = {"prompt_tokens": 7, "completion_tokens": len(_WORDS.findall(answer)),
                 "total_tokens": 7 + len(_WORDS.findall(answer))}
        if not body.get("stream"):
            await _send(writer, 200, {
                "id": "up-1", "object": "chat.completion", "created": int(time.time()),
                "model": body["model"], "usage": usage,
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": answer}}]})
            return
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                     b"connection: close\r\n\r\n")
        pieces = _WORDS.findall(answer)
        for i, piece in enumerate(pieces):
            if prompt == "cut" and i == 2:
                await writer.drain()
                return  # closed mid-answer
            if prompt == "stall" and i == 1:
                await writer.drain()
                await asyncio.sleep(self.stall_s)
                return
            await _event(writer, _chunk(body, {"content": piece}, None))
            if self.chunk_delay_s:
                await asyncio.sleep(self.chunk_delay_s)
        await _event(writer, _chunk(body, {}, "stop"))
        if (body.get("stream_options") or {}).get("include_usage"):
            await _event(writer, {**_chunk(body, {}, None), "choices": [], "usage": usage})
        writer.write(b"data: [DONE]\n\n")
        await writer.drain()
        self.completed[prompt] += 1


def _chunk(body: dict[str, Any], delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
    return {"id": "up-1", "object": "chat.completion.chunk", "created": 0,
            "model": body["model"],
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


async def _event(writer: asyncio.StreamWriter, data: dict[str, Any]) -> None:
    writer.write(b"data: " + json.dumps(data).encode() + b"\n\n")
    await writer.drain()


async def _send(writer: asyncio.StreamWriter, status: int, body: Any,
                headers: dict[str, str] | None = None) -> None:
    raw = json.dumps(body).encode()
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    writer.write(f"HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: "
                 f"{len(raw)}\r\nconnection: close\r\n{extra}\r\n".encode() + raw)
    await writer.drain()
