"""A fault-injecting OpenAI-compatible upstream on loopback, for tests and soaks.

A real HTTP/1.1 server (raw ``asyncio.start_server``, keep-alive) so that it can misbehave at
the socket level. It serves ``POST /v1/chat/completions`` (answer ``"ok <n>"`` for the n-th
completion request, with ``usage``) and ``GET /v1/models``; each request may instead get a
fault (``Fault``, by name). Which fault:

1. the request's ``x-fault: <name>`` header (``slow:0.3`` gives the delay), else
2. the next entry of the script (``POST /_faults`` with a JSON list, consumed in order, then
   healthy), else
3. a seeded random mix (``POST /_faults`` with ``{"mix": {"rate_limited": 0.2, ...},
   "seed": 1}``), else healthy.

``GET /_stats`` counts completion requests per fault; ``POST /_reset`` clears script, mix and
counts. Start it:

* ``python -m benchmarks.fault_upstream --port 8765`` (prints its base URL, stops on SIGTERM);
* ``with FaultUpstream.running() as up: up.base_url`` (that subprocess, on a free port);
* ``async with FaultUpstream() as up: ...`` (in the current asyncio loop).

Only the standard library: tests import it without importing cascade.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import enum
import json
import os
import random
import signal
import socket
import struct
import subprocess
import sys
import time
import urllib.request
from collections import Counter, deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import Any, Self

ROOT = Path(__file__).resolve().parent.parent


class Fault(enum.StrEnum):
    OK = "ok"
    RATE_LIMITED = "rate_limited"  # 429 with Retry-After: 1
    RATE_LIMITED_NO_RETRY_AFTER = "rate_limited_no_retry_after"  # 429, no header
    RATE_LIMITED_MS = "rate_limited_ms"  # 429 with retry-after-ms: 1500
    QUOTA_EXHAUSTED = "quota_exhausted"  # 429 insufficient_quota (OpenAI)
    OVERLOADED = "overloaded"  # 529 (Anthropic's overloaded_error body)
    UNAVAILABLE = "unavailable"  # 503 with Retry-After: 2
    SERVER_ERROR = "server_error"  # 500
    MALFORMED_JSON = "malformed_json"  # 200, body not JSON
    EMPTY_CHOICES = "empty_choices"  # 200, "choices": []
    TRUNCATED = "truncated"  # Content-Length larger than what is sent, then close
    SLOW = "slow"  # answers after a delay (slow:<seconds>, default --slow-s)
    HANG = "hang"  # never answers (until the client goes away)
    RESET = "reset"  # connection reset (SO_LINGER 0, then close)
    UNAUTHORIZED = "unauthorized"  # 401
    BAD_REQUEST = "bad_request"  # 400
    CONTEXT_OPENAI = "context_openai"  # 400, OpenAI's context_length_exceeded
    CONTEXT_ANTHROPIC = "context_anthropic"  # 400, "prompt is too long"
    CONTEXT_VLLM = "context_vllm"  # 400, vLLM's wording
    CONTEXT_LLAMACPP = "context_llamacpp"  # 400, llama.cpp server's exceed_context_size_error
    GZIP_GARBAGE = "gzip_garbage"  # 200, Content-Encoding: gzip on a body that is not gzip
    CONTENT_FILTERED = "content_filtered"  # 200, empty content, finish_reason content_filter
    HUGE_TOKENS = "huge_tokens"  # 200, usage.prompt_tokens 1e999
    NEGATIVE_TOKENS = "negative_tokens"  # 200, usage.prompt_tokens -1e8
    ECHO_KEY = "echo_key"  # 400 whose body echoes the request's Authorization header


def _openai_error(message: str, type_: str, code: str | None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": None, "code": code}}


_ERRORS: Mapping[Fault, tuple[int, dict[str, str], Any]] = {
    Fault.RATE_LIMITED: (429, {"Retry-After": "1"}, _openai_error(
        "Rate limit reached for requests per min (RPM): Limit 3, Used 3, Requested 1.",
        "requests", "rate_limit_exceeded")),
    Fault.RATE_LIMITED_NO_RETRY_AFTER: (429, {}, _openai_error(
        "Rate limit reached for tokens per min (TPM).", "tokens", "rate_limit_exceeded")),
    Fault.RATE_LIMITED_MS: (429, {"retry-after-ms": "1500"}, _openai_error(
        "Rate limit reached.", "requests", "rate_limit_exceeded")),
    Fault.QUOTA_EXHAUSTED: (429, {}, _openai_error(
        "You exceeded your current quota, please check your plan and billing details.",
        "insufficient_quota", "insufficient_quota")),
    Fault.OVERLOADED: (529, {}, {"type": "error", "error": {"type": "overloaded_error",
                                                            "message": "Overloaded"}}),
    Fault.UNAVAILABLE: (503, {"Retry-After": "2"}, "Service Unavailable"),
    Fault.SERVER_ERROR: (500, {}, _openai_error("The server had an error while processing "
                                                "your request.", "server_error", None)),
    Fault.UNAUTHORIZED: (401, {}, _openai_error("Incorrect API key provided.",
                                                "invalid_request_error", "invalid_api_key")),
    Fault.BAD_REQUEST: (400, {}, _openai_error("'messages' must contain at least one message.",
                                               "invalid_request_error", None)),
    Fault.CONTEXT_OPENAI: (400, {}, _openai_error(
        "This model's maximum context length is 8192 tokens. However, your messages resulted "
        "in 9000 tokens. Please reduce the length of the messages.",
        "invalid_request_error", "context_length_exceeded")),
    Fault.CONTEXT_ANTHROPIC: (400, {}, {"type": "error", "error": {
        "type": "invalid_request_error", "message": "prompt is too long: 208310 tokens > "
                                                    "200000 maximum"}}),
    Fault.CONTEXT_VLLM: (400, {}, {
        "object": "error", "type": "BadRequestError", "param": None, "code": 400,
        "message": "This model's maximum context length is 4096 tokens. However, you "
                   "requested 5000 tokens (4000 in the messages, 1000 in the completion). "
                   "Please reduce the length of the messages or completion."}),
    Fault.CONTEXT_LLAMACPP: (400, {}, {"error": {
        "code": 400, "message": "request (4476 tokens) exceeds the available context size "
                                "(4096 tokens), try increasing it",
        "type": "exceed_context_size_error", "n_prompt_tokens": 4476, "n_ctx": 4096}}),
}


@dataclass
class FaultState:
    """What the next requests get, and what the past ones got. Pure (no I/O)."""

    slow_s: float = 0.5
    script: deque[tuple[Fault, float | None]] = field(default_factory=deque)
    models_script: deque[tuple[Fault, float | None]] = field(default_factory=deque)
    mix: list[tuple[tuple[Fault, float | None], float]] = field(default_factory=list)
    rng: random.Random = field(default_factory=lambda: random.Random(0))
    counts: Counter[str] = field(default_factory=Counter)
    requests: int = 0
    models_requests: int = 0

    def choose(self, header: str | None, *, models: bool = False) -> tuple[Fault, float | None]:
        if header:
            return parse_fault(header)
        queue = self.models_script if models else self.script
        if queue:
            return queue.popleft()
        if self.mix and not models:
            draw = self.rng.random()
            for fault, share in self.mix:
                if draw < share:
                    return fault
                draw -= share
        return Fault.OK, None

    def control(self, body: Any) -> None:
        """``POST /_faults``: a list (script) or {"script", "models", "mix", "seed", "slow_s"}.
        ValueError / TypeError on anything unknown or ill-typed; nothing changes then."""
        if isinstance(body, list):
            body = {"script": body}
        if not isinstance(body, dict) or set(body) - {"script", "models", "mix", "seed", "slow_s"}:
            raise ValueError("expected a list of faults or an object with script, models, mix, "
                             "seed, slow_s")
        script = [parse_fault(item) for item in _strings(body.get("script", []))]
        models = [parse_fault(item) for item in _strings(body.get("models", []))]
        mix = self.mix if body.get("mix") is None else _mix(body["mix"])
        seed = body.get("seed", 0)
        slow_s = body.get("slow_s", self.slow_s)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError("seed must be an integer")
        if isinstance(slow_s, bool) or not isinstance(slow_s, (int, float)):
            raise TypeError("slow_s must be a number")
        if not 0 <= slow_s < float("inf"):
            raise ValueError("slow_s must be a non-negative finite number of seconds")
        self.script.extend(script)
        self.models_script.extend(models)
        self.mix, self.slow_s = mix, float(slow_s)
        if "mix" in body or "seed" in body:
            self.rng = random.Random(seed)

    def stats(self) -> dict[str, Any]:
        return {"requests": self.requests, "models_requests": self.models_requests,
                "by_fault": dict(self.counts), "scripted_left": len(self.script)}

    def reset(self) -> None:
        fresh = FaultState(slow_s=self.slow_s)
        for name in ("script", "models_script", "mix", "rng", "counts", "requests",
                     "models_requests"):
            setattr(self, name, getattr(fresh, name))


def _strings(value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError("a script is a list of fault names")
    return value


def _mix(value: Any) -> list[tuple[tuple[Fault, float | None], float]]:
    """{"rate_limited": 0.2, "slow:0.3": 0.1} -> [((fault, delay), share)]."""
    if not isinstance(value, dict):
        raise TypeError("mix must be an object {fault: share}")
    shares = [(parse_fault(name), share) for name, share in value.items()]
    if not all(isinstance(s, (int, float)) and not isinstance(s, bool) and 0 <= s <= 1
               for _, s in shares) or sum(s for _, s in shares) > 1 + 1e-9:
        raise ValueError("mix shares must be numbers in [0, 1] summing to at most 1")
    return [(fault, float(share)) for fault, share in shares]


def parse_fault(spec: str) -> tuple[Fault, float | None]:
    """``name`` or ``name:seconds`` (the delay of ``slow``). ValueError if unknown."""
    name, _, arg = spec.strip().partition(":")
    try:
        fault = Fault(name)
    except ValueError:
        raise ValueError(f"unknown fault {name!r}; known: {', '.join(Fault)}") from None
    delay = float(arg) if arg else None
    if delay is not None and not 0 <= delay < float("inf"):
        raise ValueError(f"the delay of {spec!r} must be a non-negative number of seconds")
    return fault, delay


# --- HTTP ------------------------------------------------------------------------------------


def _head(status: int, headers: Mapping[str, str], length: int, *,
          content_type: str = "application/json") -> bytes:
    reason = "Overloaded" if status == 529 else HTTPStatus(status).phrase
    lines = [f"HTTP/1.1 {status} {reason}", f"Content-Type: {content_type}",
             f"Content-Length: {length}", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _payload(body: Any) -> tuple[bytes, str]:
    if isinstance(body, str):
        return body.encode(), "text/plain"
    return json.dumps(body).encode(), "application/json"


def completion_body(request: Mapping[str, Any], n: int) -> dict[str, Any]:
    """A valid chat completion: ``"ok <n>"`` in each of the requested choices."""
    messages = request.get("messages")
    prompt = sum(len(str(m.get("content", ""))) // 4 + 4 for m in messages
                 if isinstance(m, dict)) if isinstance(messages, list) else 0
    count = request.get("n") if isinstance(request.get("n"), int) else 1
    count = max(1, min(count, 16))
    logprobs = ({"content": [{"token": "ok", "logprob": -0.1, "top_logprobs": []},
                             {"token": f" {n}", "logprob": -0.2, "top_logprobs": []}]}
                if request.get("logprobs") else None)
    return {
        "id": f"chatcmpl-{n}", "object": "chat.completion", "created": 0,
        "model": str(request.get("model", "fault-upstream")),
        "choices": [{"index": i, "finish_reason": "stop", "logprobs": logprobs,
                     "message": {"role": "assistant", "content": f"ok {n}"}}
                    for i in range(count)],
        "usage": {"prompt_tokens": prompt, "completion_tokens": 2 * count,
                  "total_tokens": prompt + 2 * count},
    }


@dataclass(frozen=True, slots=True)
class _Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


def _parse_head(head: bytes) -> tuple[str, str, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    method, target, _version = lines[0].split(" ", 2)
    headers = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    return method, target.split("?", 1)[0], headers


class FaultUpstream:
    """The server. ``async with FaultUpstream() as up`` runs it in the current loop;
    ``FaultUpstream.running()`` runs it in a subprocess. Control methods act directly."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, slow_s: float = 0.5) -> None:
        self.host = host
        self.port = port
        self.state = FaultState(slow_s=slow_s)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[Any]] = set()

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    async def start(self) -> Self:
        self._server = await asyncio.start_server(self._connection, self.host, self.port,
                                                  backlog=4096, limit=2**20)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # control, same names as RemoteUpstream's
    def script(self, faults: Sequence[str], *, models: Sequence[str] = ()) -> None:
        self.state.control({"script": list(faults), "models": list(models)})

    def set_mix(self, mix: Mapping[str, float], *, seed: int = 0) -> None:
        self.state.control({"mix": dict(mix), "seed": seed})

    def stats(self) -> dict[str, Any]:
        return self.state.stats()

    def reset(self) -> None:
        self.state.reset()

    @staticmethod
    @contextlib.contextmanager
    def running(*, port: int = 0, slow_s: float = 0.5) -> Iterator[RemoteUpstream]:
        """The server in a subprocess (``python -m benchmarks.fault_upstream``)."""
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
        process = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.fault_upstream", "--port", str(port),
             "--slow-s", str(slow_s)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=env, cwd=ROOT, text=True)
        try:
            assert process.stdout is not None
            line = process.stdout.readline().strip()
            if not line.startswith("http://"):
                process.kill()
                _, err = process.communicate(timeout=5)
                raise RuntimeError(f"fault upstream did not start: {line} {err[-500:]}")
            yield RemoteUpstream(line)
        finally:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            for stream in (process.stdout, process.stderr):
                if stream is not None:
                    stream.close()

    # --- serving ---

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        try:
            while await self._one(reader, writer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                ValueError):
            pass  # the client went away, or sent something that is not HTTP: close
        finally:
            self._writers.discard(writer)
            self._tasks.discard(task)
            writer.close()

    async def _one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Serve one request; False closes the connection."""
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return False
        method, path, headers = _parse_head(head)
        length = int(headers.get("content-length", "0") or 0)
        request = _Request(method, path, headers, await reader.readexactly(length) if length else b"")
        match (method, path):
            case ("POST", "/v1/chat/completions"):
                return await self._chat(request, reader, writer)
            case ("GET", "/v1/models"):
                return await self._models(request, reader, writer)
            case ("POST", "/_faults"):
                try:
                    self.state.control(json.loads(request.body or b"[]"))
                except (ValueError, TypeError) as exc:
                    return await _send(writer, 400, {"error": {"message": str(exc)}})
                return await _send(writer, 200, self.state.stats())
            case ("GET", "/_stats"):
                return await _send(writer, 200, self.state.stats())
            case ("POST", "/_reset"):
                self.state.reset()
                return await _send(writer, 200, self.state.stats())
        return await _send(writer, 404, {"error": {"message": f"no route {method} {path}"}})

    async def _models(self, request: _Request, reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter) -> bool:
        self.state.models_requests += 1
        fault, arg = self._choose(request, models=True)
        if fault is Fault.OK:
            return await _send(writer, 200, {"object": "list", "data": [
                {"id": "fault-upstream", "object": "model", "owned_by": "cascade"}]})
        return await self._fault(fault, arg, request, reader, writer, 0)

    async def _chat(self, request: _Request, reader: asyncio.StreamReader,
                    writer: asyncio.StreamWriter) -> bool:
        self.state.requests += 1
        n = self.state.requests
        fault, arg = self._choose(request)
        self.state.counts[fault.value] += 1
        return await self._fault(fault, arg, request, reader, writer, n)

    def _choose(self, request: _Request, *, models: bool = False) -> tuple[Fault, float | None]:
        try:
            return self.state.choose(request.headers.get("x-fault"), models=models)
        except ValueError:
            return Fault.BAD_REQUEST, None

    async def _fault(self, fault: Fault, arg: float | None, request: _Request,
                     reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> bool:
        match fault:
            case Fault.OK | Fault.SLOW:
                if fault is Fault.SLOW:
                    await asyncio.sleep(self.state.slow_s if arg is None else arg)
                return await _send(writer, 200, completion_body(_json(request.body), n))
            case Fault.HANG:
                while await reader.read(65536):  # until the client gives up (EOF)
                    pass
                return False
            case Fault.RESET:
                sock = writer.get_extra_info("socket")
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                writer.transport.abort()
                return False
            case Fault.TRUNCATED:
                full = json.dumps(completion_body(_json(request.body), n)).encode()
                writer.write(_head(200, {}, len(full)) + full[: len(full) // 2])
                await writer.drain()
                writer.close()
                return False
            case Fault.MALFORMED_JSON:
                return await _send(writer, 200, b'{"choices": [{"message": ')
            case Fault.EMPTY_CHOICES:
                return await _send(writer, 200, {**completion_body({}, n), "choices": []})
            case Fault.GZIP_GARBAGE:
                return await _send(writer, 200, b"\x00this is not gzip\xff" * 8,
                                   {"Content-Encoding": "gzip"})
            case Fault.CONTENT_FILTERED:
                body = completion_body({}, n)
                body["choices"][0].update(finish_reason="content_filter",
                                          message={"role": "assistant", "content": ""})
                return await _send(writer, 200, body)
            case Fault.HUGE_TOKENS | Fault.NEGATIVE_TOKENS:
                body = json.dumps(completion_body({}, n)).replace(
                    '"prompt_tokens": 0', '"prompt_tokens": '
                    + ("1e999" if fault is Fault.HUGE_TOKENS else "-1e8"))
                return await _send(writer, 200, body.encode())
            case Fault.ECHO_KEY:
                echoed = request.headers.get("authorization", "(none)")
                return await _send(writer, 400, _openai_error(
                    f"Invalid header: Authorization: {echoed}", "invalid_request_error", None))
        status, headers, body = _ERRORS[fault]
        return await _send(writer, status, body, headers)


def _json(raw: bytes) -> dict[str, Any]:
    try:
        value = json.loads(raw or b"{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


async def _send(writer: asyncio.StreamWriter, status: int, body: Any,
                headers: Mapping[str, str] | None = None) -> bool:
    if isinstance(body, bytes):
        payload, content_type = body, "application/json"
    else:
        payload, content_type = _payload(body)
    writer.write(_head(status, headers or {}, len(payload), content_type=content_type) + payload)
    await writer.drain()
    return True


class RemoteUpstream:
    """Control of a fault upstream in another process, over its HTTP control endpoints."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self._root = base_url.removesuffix("/v1")

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self._root + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def script(self, faults: Sequence[str], *, models: Sequence[str] = ()) -> None:
        self._call("POST", "/_faults", {"script": list(faults), "models": list(models)})

    def set_mix(self, mix: Mapping[str, float], *, seed: int = 0) -> None:
        self._call("POST", "/_faults", {"mix": dict(mix), "seed": seed})

    def stats(self) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", "/_stats")
        return result

    def reset(self) -> None:
        self._call("POST", "/_reset", {})


async def serve(host: str, port: int, slow_s: float) -> None:
    """Run until SIGTERM / SIGINT; print the base URL first (one line, flushed)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with FaultUpstream(host, port, slow_s=slow_s) as upstream:
        print(upstream.base_url, flush=True)
        await stop.wait()


async def load(base_url: str, requests: int, concurrency: int) -> dict[str, float]:
    """The server's own throughput: ``concurrency`` raw keep-alive HTTP/1.1 connections (no
    client library in the way) sharing ``requests`` healthy completions."""
    host, _, port = base_url.split("//", 1)[1].split("/", 1)[0].partition(":")
    body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}]}).encode()
    request = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}\r\nContent-Type: "
               f"application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body
    left = [requests]
    latencies: list[float] = []

    async def connection() -> None:
        reader, writer = await asyncio.open_connection(host, int(port), limit=2**20)
        try:
            while left[0] > 0:
                left[0] -= 1
                started = time.perf_counter()
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                _, _, headers = _parse_head(b"X / X\r\n" + head.split(b"\r\n", 1)[1])
                await reader.readexactly(int(headers["content-length"]))
                latencies.append(time.perf_counter() - started)
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(connection() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    latencies.sort()
    return {"requests": len(latencies), "concurrency": concurrency, "seconds": elapsed,
            "per_second": len(latencies) / elapsed,
            "p50_ms": 1000 * latencies[len(latencies) // 2],
            "p99_ms": 1000 * latencies[int(len(latencies) * 0.99)]}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0: a free port (printed)")
    parser.add_argument("--slow-s", type=float, default=0.5, help="delay of the slow fault")
    parser.add_argument("--load", type=int, metavar="N", default=0,
                        help="instead of serving: start a server in a subprocess, send it N "
                             "requests, print its throughput")
    parser.add_argument("--concurrency", type=int, default=1000, help="connections for --load")
    args = parser.parse_args(argv)
    if args.load:
        with FaultUpstream.running(slow_s=args.slow_s) as upstream:
            figures = asyncio.run(load(upstream.base_url, args.load, args.concurrency))
            assert upstream.stats()["requests"] == args.load
        print(json.dumps(figures, indent=1))
        return
    asyncio.run(serve(args.host, args.port, args.slow_s))


__all__ = ["Fault", "FaultState", "FaultUpstream", "RemoteUpstream", "completion_body", "load",
           "main", "parse_fault", "serve"]

if __name__ == "__main__":
    main()
