"""Streamed chat completions (server-sent events) from an OpenAI-compatible upstream. Every
failure is a typed ``ProviderError`` from the same classifiers as ``post_json``; once a text
delta has reached the caller, a cut or stalled stream becomes ``StreamInterruptedError`` /
``StreamStalledError``, which the call seam never retries nor fails over."""

from __future__ import annotations

import json
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx

from cascade.errors import (
    ContentFilteredError,
    ProviderConnectionError,
    ProviderError,
    ProviderResponseError,
    ProviderTimeoutError,
    StreamInterruptedError,
    StreamStalledError,
)
from cascade.providers._base import estimate_message_tokens, estimate_tokens
from cascade.providers._errors import NO_SECRETS, Secrets, classify, classify_transport, token_count
from cascade.providers._http import MAX_RESPONSE_BYTES, Clock, _closed, _read_capped
from cascade.types import Choice, Completion, ModelCall

__all__ = ["DeltaSink", "SSEState", "stream_chat"]

DeltaSink = Callable[[str], Awaitable[None]]
MODEL_NAME_CAP = 200


@dataclass(slots=True)
class SSEState:
    """What the stream has said so far (pure; fed one ``data:`` payload at a time)."""

    deployment: str
    parts: list[str] = field(default_factory=list)
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    model: str | None = None
    done: bool = False

    def feed(self, payload: str, secrets: Secrets = NO_SECRETS) -> str:
        """Read one event's data; return its text delta ("" for none)."""
        if payload.strip() == "[DONE]":
            self.done = True
            return ""
        try:
            chunk = json.loads(payload)
        except (ValueError, RecursionError) as exc:
            raise ProviderResponseError(self.deployment, "a stream chunk is not JSON") from exc
        if not isinstance(chunk, dict):
            raise ProviderResponseError(self.deployment, "a stream chunk is not an object")
        if chunk.get("error") is not None:
            raise ProviderResponseError(self.deployment, "an error in the stream: "
                                        + secrets.redact(str(chunk["error"])))
        self._usage(chunk.get("usage"))
        model = chunk.get("model")
        if isinstance(model, str) and model:
            self.model = model[:MODEL_NAME_CAP]
        choices = chunk.get("choices") or []
        if not isinstance(choices, list):
            raise ProviderResponseError(self.deployment, "a stream chunk's choices is not a list")
        text = ""
        for raw in choices:
            if not isinstance(raw, dict) or raw.get("index", 0) != 0:
                continue  # n is never requested when streaming; other indices are not ours
            delta = raw.get("delta") or {}
            content = delta.get("content") if isinstance(delta, dict) else None
            finish = raw.get("finish_reason")
            if content is not None and not isinstance(content, str):
                raise ProviderResponseError(self.deployment, "a delta's content is not a string")
            if finish is not None:
                if not isinstance(finish, str):
                    raise ProviderResponseError(self.deployment, "finish_reason is not a string")
                self.finish_reason = finish
            text += content or ""
        if text:
            self.parts.append(text)
        return text

    def _usage(self, usage: Any) -> None:
        if usage is None:
            return
        if not isinstance(usage, dict):
            raise ProviderResponseError(self.deployment, "usage is not an object")
        if usage.get("prompt_tokens") is not None:
            self.prompt_tokens = token_count(usage["prompt_tokens"], "usage.prompt_tokens",
                                             self.deployment)
        if usage.get("completion_tokens") is not None:
            self.completion_tokens = token_count(usage["completion_tokens"],
                                                 "usage.completion_tokens", self.deployment)

    def completion(self, call: ModelCall) -> Completion:
        text = "".join(self.parts)
        if self.finish_reason == "content_filter" and not text.strip():
            raise ContentFilteredError(self.deployment, "the answer was removed by the content "
                                       "filter (finish_reason content_filter)")
        inputs = (estimate_message_tokens(call.messages) if self.prompt_tokens is None
                  else self.prompt_tokens)
        outputs = estimate_tokens(text) if self.completion_tokens is None else self.completion_tokens
        return Completion((Choice(text, None, None, self.finish_reason),), self.model or call.model,
                          inputs, outputs,
                          usage_estimated=self.prompt_tokens is None or self.completion_tokens is None)


async def _lines(response: httpx.Response, deployment: str) -> AsyncIterator[str]:
    size = 0
    async for line in response.aiter_lines():
        size += len(line) + 1
        if size > MAX_RESPONSE_BYTES:
            raise ProviderResponseError(deployment, f"the stream is larger than "
                                                    f"{MAX_RESPONSE_BYTES} bytes")
        yield line


def _after_first_byte(error: ProviderError) -> ProviderError:
    """The never-retried form of a stream failure once the caller has part of the answer."""
    match error:
        case ProviderTimeoutError():
            out: ProviderError = StreamStalledError(error.deployment, str(error), phase="read")
        case ProviderConnectionError():
            out = StreamInterruptedError(error.deployment, str(error))
        case _:
            return error
    out.__cause__ = error
    return out


async def stream_chat(client: httpx.AsyncClient, body: Mapping[str, Any],
                      headers: Mapping[str, str], deployment: str, call: ModelCall,
                      sink: DeltaSink, *, secrets: Secrets = NO_SECRETS,
                      clock: Clock = time.time, idle_timeout_s: float | None = None) -> Completion:
    """POST ``body`` (with ``stream: true``) and read its events. ``idle_timeout_s`` bounds the
    wait for the first and every next line (a stalled stream is a ``ProviderTimeoutError``)."""
    _closed(client, deployment)
    state = SSEState(deployment)
    sent = False
    idle = math.inf if idle_timeout_s is None else idle_timeout_s
    try:
        async with client.stream("POST", "chat/completions", json=dict(body),
                                 headers=dict(headers)) as response:
            if not 200 <= response.status_code < 300:
                raw = await _read_capped(response, deployment)
                raise classify(deployment, response.status_code, response.headers,
                               raw.decode("utf-8", "replace"), secrets=secrets, now=clock())
            lines = _lines(response, deployment).__aiter__()
            while not state.done:
                try:
                    with anyio.fail_after(idle):
                        line = await lines.__anext__()
                except StopAsyncIteration:
                    break
                except TimeoutError:
                    raise ProviderTimeoutError(deployment, f"the stream stalled: no data within "
                                               f"{idle:g} s", phase="read") from None
                if line.startswith("data:"):
                    text = state.feed(line[5:].strip(), secrets)
                    if text:
                        sent = True
                        await sink(text)
                # other SSE fields (event:, id:, retry:, comments) carry nothing we use
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        error = classify_transport(deployment, exc, secrets=secrets)
        raise (_after_first_byte(error) if sent else error) from exc
    except ProviderError as exc:
        if sent:
            raise _after_first_byte(exc) from exc
        raise
    if not state.done and state.finish_reason is None:
        cut = ProviderConnectionError(deployment, "the stream ended before [DONE]")
        raise _after_first_byte(cut) if sent else cut
    return state.completion(call)
