"""OpenAI-compatible chat completions (OpenAI, vLLM, llama.cpp server, Ollama)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

from cascade.errors import ProviderResponseError
from cascade.providers._base import estimate_message_tokens, estimate_tokens
from cascade.providers._http import deployment_name, post_json, probe
from cascade.types import Choice, Completion, ModelCall


class OpenAICompatibleProvider:
    def __init__(self, client: httpx.AsyncClient, base_url: str, *, api_key: str | None = None,
                 supports_n: bool = True, headers: Mapping[str, str] | None = None) -> None:
        self._client = client
        self._headers = dict(headers or {})
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self.supports_n = supports_n
        self.deployment = deployment_name("openai", base_url)

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
                               self._headers, self.deployment)
        return parse_chat_completion(data, call, self.deployment)

    async def check(self) -> None:
        await probe(self._client, "models", self.deployment)

    async def aclose(self) -> None:
        """The client belongs to the pool; nothing of our own to close."""


def _parse_logprobs(raw: Any) -> tuple[tuple[float, ...] | None, tuple[Mapping[str, float], ...] | None]:
    if not isinstance(raw, dict) or not isinstance(raw.get("content"), list):
        return None, None
    values: list[float] = []
    tops: list[Mapping[str, float]] = []
    for item in raw["content"]:
        values.append(float(item["logprob"]))
        tops.append({str(t["token"]): float(t["logprob"]) for t in item.get("top_logprobs") or ()})
    return tuple(values), tuple(tops)


def parse_chat_completion(data: Any, call: ModelCall, deployment: str) -> Completion:
    """Read choices, logprobs and usage from a chat-completions body (pure)."""
    try:
        choices = []
        for raw in data["choices"]:
            content = raw["message"].get("content") or ""
            values, tops = _parse_logprobs(raw.get("logprobs"))
            choices.append(Choice(str(content), values, tops if call.top_logprobs else None,
                                  raw.get("finish_reason")))
        if not choices:
            raise ProviderResponseError(deployment, "the response has no choices")
        usage = data.get("usage") or {}
        estimated = "prompt_tokens" not in usage or "completion_tokens" not in usage
        input_tokens = int(usage.get("prompt_tokens", estimate_message_tokens(call.messages)))
        output_tokens = int(usage.get("completion_tokens",
                                      sum(estimate_tokens(c.text) for c in choices)))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ProviderResponseError(deployment, f"unexpected response shape: {exc!r}") from exc
    return Completion(tuple(choices), str(data.get("model") or call.model), input_tokens,
                      output_tokens, usage_estimated=estimated)
