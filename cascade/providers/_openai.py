"""OpenAI-compatible chat completions (OpenAI, vLLM, llama.cpp server, Ollama)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import httpx

from cascade.errors import ContentFilteredError, ProviderResponseError
from cascade.providers._base import estimate_message_tokens, estimate_tokens
from cascade.providers._errors import NO_SECRETS, Secrets, logprob, token_count
from cascade.providers._http import (
    Clock,
    check_headers,
    deployment_name,
    post_json,
    probe,
    register_secrets,
    server_address,
    unregister_secrets,
)
from cascade.types import Choice, Completion, ModelCall

if TYPE_CHECKING:
    from cascade.providers._sse import DeltaSink

MODEL_NAME_CAP = 200  # characters of the upstream's ``model`` kept


class OpenAICompatibleProvider:
    """``clock`` (Unix seconds) anchors an HTTP-date ``Retry-After``; inject it in tests."""

    def __init__(self, client: httpx.AsyncClient, base_url: str, *, api_key: str | None = None,
                 supports_n: bool = True, headers: Mapping[str, str] | None = None,
                 clock: Clock = time.time) -> None:
        self._client = client
        self._headers = dict(headers or {})
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        check_headers(self._headers)
        self._secrets = Secrets.of(api_key=api_key, headers=self._headers.values(),
                                   base_url=base_url)
        register_secrets(self, self._secrets)
        self._clock = clock
        self.supports_n = supports_n
        self.deployment = deployment_name("openai", base_url)
        self.server_address = server_address(base_url)  # (host, port) for spans

    def __repr__(self) -> str:
        return f"OpenAICompatibleProvider({self.deployment!r})"

    def build_body(self, call: ModelCall) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": call.model,
            "messages": [{"role": m.role, "content": m.content} for m in call.messages],
            "max_tokens": call.max_tokens,
            "temperature": call.temperature,
        }
        if call.stop:
            body["stop"] = list(call.stop)
        if call.logprobs or call.top_logprobs:
            body["logprobs"] = True
            # at least 1: llama.cpp's server returns no logprobs at all without top_logprobs
            body["top_logprobs"] = max(1, call.top_logprobs)
        if call.n > 1:
            body["n"] = call.n
        if call.seed is not None:
            body["seed"] = call.seed
        return body

    async def complete(self, call: ModelCall) -> Completion:
        data = await post_json(self._client, "chat/completions", self.build_body(call),
                               self._headers, self.deployment, secrets=self._secrets,
                               clock=self._clock)
        return parse_chat_completion(data, call, self.deployment, secrets=self._secrets)

    async def stream(self, call: ModelCall, sink: DeltaSink, *,
                     idle_timeout_s: float | None = None) -> Completion:
        """Stream one answer (``stream: true``): each text delta goes to ``sink`` as it
        arrives; the returned ``Completion`` has the whole text and the usage of the final
        chunk (``stream_options.include_usage``), else estimated. Errors as ``complete``'s."""
        from cascade.providers._sse import stream_chat

        body = {**self.build_body(call), "stream": True,
                "stream_options": {"include_usage": True}}
        body.pop("n", None)
        return await stream_chat(self._client, body, self._headers, self.deployment, call,
                                 sink, secrets=self._secrets, clock=self._clock,
                                 idle_timeout_s=idle_timeout_s)

    async def forward(self, body: Mapping[str, Any]) -> Any:
        """POST a client's chat-completions body as it is (the gateway's unverified path for
        tools, response_format and images); the decoded answer. Errors as ``complete``'s."""
        return await post_json(self._client, "chat/completions", body, self._headers,
                               self.deployment, secrets=self._secrets, clock=self._clock)

    async def check(self) -> None:
        await probe(self._client, "models", self.deployment, secrets=self._secrets)

    async def aclose(self) -> None:
        """The client belongs to the pool; stop scrubbing our secrets from its logs."""
        unregister_secrets(self)


def _bad(deployment: str, what: str) -> ProviderResponseError:
    return ProviderResponseError(deployment, f"unexpected response shape: {what}")


def _parse_logprobs(raw: Any, deployment: str
                    ) -> tuple[tuple[float, ...] | None, tuple[Mapping[str, float], ...] | None]:
    """Token logprobs and top alternatives; a value that is not a finite float <= 0 makes the
    whole response a ``ProviderResponseError`` (docs/errors.md)."""
    if raw is None or (isinstance(raw, dict) and raw.get("content") is None):
        return None, None
    if not isinstance(raw, dict) or not isinstance(raw["content"], list):
        raise _bad(deployment, "logprobs is not an object with a content list")
    values: list[float] = []
    tops: list[Mapping[str, float]] = []
    for item in raw["content"]:
        if not isinstance(item, dict):
            raise _bad(deployment, "a logprobs item is not an object")
        values.append(logprob(item.get("logprob"), deployment))
        alternatives = item.get("top_logprobs")
        if alternatives is None:
            alternatives = []
        if not isinstance(alternatives, list):
            raise _bad(deployment, "top_logprobs is not a list")
        top: dict[str, float] = {}
        for alt in alternatives:
            if not isinstance(alt, dict):
                raise _bad(deployment, "a top_logprobs item is not an object")
            top[str(alt.get("token"))] = logprob(alt.get("logprob"), deployment)
        tops.append(top)
    return tuple(values), tuple(tops)


def _parse_choice(raw: Any, call: ModelCall, deployment: str) -> Choice | None:
    """One choice; None for an answer the content filter emptied."""
    if not isinstance(raw, dict) or not isinstance(raw.get("message"), dict):
        raise _bad(deployment, "a choice has no message object")
    content = raw["message"].get("content")
    if content is None:
        content = ""
    finish = raw.get("finish_reason")
    if not isinstance(content, str) or not (finish is None or isinstance(finish, str)):
        raise _bad(deployment, "a choice's content or finish_reason is not a string")
    if finish == "content_filter" and not content.strip():
        return None
    values, tops = _parse_logprobs(raw.get("logprobs"), deployment)
    return Choice(content, values, tops if call.top_logprobs else None, finish)


def parse_chat_completion(data: Any, call: ModelCall, deployment: str, *,
                          secrets: Secrets = NO_SECRETS) -> Completion:
    """Read choices, logprobs and usage from a chat-completions body (pure). Anything
    malformed is a ``ProviderResponseError``; choices the content filter emptied are dropped,
    and when none is left the call is a ``ContentFilteredError``."""
    if not isinstance(data, dict):
        raise ProviderResponseError(deployment, "the response is not a JSON object")
    raw_choices = data.get("choices")
    if raw_choices is None and data.get("error") is not None:
        raise ProviderResponseError(deployment, "an error in a 200 answer: "
                                    + secrets.redact(str(data["error"])))
    if not isinstance(raw_choices, list):
        raise _bad(deployment, "no choices list")
    parsed = [_parse_choice(raw, call, deployment) for raw in raw_choices]
    choices = [choice for choice in parsed if choice is not None]
    if not parsed:
        raise ProviderResponseError(deployment, "the response has no choices")
    if not choices:
        raise ContentFilteredError(deployment, "the answer was removed by the content filter "
                                   "(finish_reason content_filter)")
    usage = data.get("usage")
    if usage is None:
        usage = {}
    if not isinstance(usage, dict):
        raise _bad(deployment, "usage is not an object")
    prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
    input_tokens = (estimate_message_tokens(call.messages) if prompt is None
                    else token_count(prompt, "usage.prompt_tokens", deployment))
    output_tokens = (sum(estimate_tokens(c.text) for c in choices) if completion is None
                     else token_count(completion, "usage.completion_tokens", deployment))
    model = data.get("model")
    model = model[:MODEL_NAME_CAP] if isinstance(model, str) and model else call.model
    return Completion(tuple(choices), model, input_tokens, output_tokens,
                      usage_estimated=prompt is None or completion is None)
