"""Anthropic Messages API."""

from __future__ import annotations

from typing import Any

import httpx

from cascade.errors import ProviderResponseError
from cascade.providers._http import deployment_name, post_json, probe
from cascade.types import Choice, Completion, ModelCall


class AnthropicProvider:
    def __init__(self, client: httpx.AsyncClient, base_url: str, *, api_key: str,
                 version: str = "2023-06-01") -> None:
        self._client = client
        self._headers = {"x-api-key": api_key, "anthropic-version": version}
        self.deployment = deployment_name("anthropic", base_url)
        self.supports_n = False

    def build_body(self, call: ModelCall) -> dict[str, Any]:
        system = "\n\n".join(m.content for m in call.messages if m.role == "system")
        body: dict[str, Any] = {
            "model": call.model,
            "max_tokens": call.max_tokens,
            "temperature": min(call.temperature, 1.0),
            "messages": [{"role": m.role, "content": m.content}
                         for m in call.messages if m.role != "system"],
        }
        if system:
            body["system"] = system
        if call.stop:
            body["stop_sequences"] = list(call.stop)
        return body

    async def complete(self, call: ModelCall) -> Completion:
        data = await post_json(self._client, "v1/messages", self.build_body(call),
                               self._headers, self.deployment)
        return parse_message(data, call, self.deployment)

    async def check(self) -> None:
        await probe(self._client, "v1/models", self.deployment)

    async def aclose(self) -> None:
        """The client belongs to the pool."""


def parse_message(data: Any, call: ModelCall, deployment: str) -> Completion:
    try:
        if data.get("type") == "error":
            raise ProviderResponseError(deployment, str(data.get("error")))
        text = "".join(block["text"] for block in data["content"] if block.get("type") == "text")
        usage = data["usage"]
        return Completion(
            (Choice(text, finish_reason=data.get("stop_reason")),),
            str(data.get("model") or call.model),
            int(usage["input_tokens"]),
            int(usage["output_tokens"]),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ProviderResponseError(deployment, f"unexpected response shape: {exc!r}") from exc
