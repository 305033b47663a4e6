"""Anthropic Messages API."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx

from cascade.errors import ContentFilteredError, ProviderResponseError
from cascade.providers._errors import (
    ANTHROPIC_ERROR_STATUS,
    NO_SECRETS,
    Secrets,
    classify,
    token_count,
)
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

MODEL_NAME_CAP = 200


class AnthropicProvider:
    def __init__(self, client: httpx.AsyncClient, base_url: str, *, api_key: str,
                 version: str = "2023-06-01", clock: Clock = time.time) -> None:
        self._client = client
        self._headers = {"x-api-key": api_key, "anthropic-version": version}
        check_headers(self._headers)
        self._secrets = Secrets.of(api_key=api_key, base_url=base_url)
        register_secrets(self, self._secrets)
        self._clock = clock
        self.deployment = deployment_name("anthropic", base_url)
        self.server_address = server_address(base_url)  # (host, port) for spans
        self.supports_n = False

    def __repr__(self) -> str:
        return f"AnthropicProvider({self.deployment!r})"

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
                               self._headers, self.deployment, secrets=self._secrets,
                               clock=self._clock)
        return parse_message(data, call, self.deployment, secrets=self._secrets,
                             now=self._clock())

    async def check(self) -> None:
        await probe(self._client, "v1/models", self.deployment, secrets=self._secrets)

    async def aclose(self) -> None:
        """The client belongs to the pool; stop scrubbing our secrets from its logs."""
        unregister_secrets(self)


def parse_message(data: Any, call: ModelCall, deployment: str, *,
                  secrets: Secrets = NO_SECRETS, now: float = 0.0) -> Completion:
    """Read a Messages API body (pure). An error object in a 200 is classified by its type
    (``overloaded_error`` -> ``OverloadedError``...); a refusal with no text is a
    ``ContentFilteredError``; anything malformed a ``ProviderResponseError``."""
    if not isinstance(data, dict):
        raise ProviderResponseError(deployment, "the response is not a JSON object")
    if data.get("type") == "error":
        error = data.get("error")
        kind = error.get("type") if isinstance(error, dict) else None
        status = ANTHROPIC_ERROR_STATUS.get(kind, 500) if isinstance(kind, str) else 500
        raise classify(deployment, status, {}, json.dumps(data), secrets=secrets, now=now)
    content, usage = data.get("content"), data.get("usage")
    if not isinstance(content, list) or not isinstance(usage, dict):
        raise ProviderResponseError(deployment, "unexpected response shape: no content list "
                                    "or no usage object")
    texts = [block.get("text") for block in content
             if isinstance(block, dict) and block.get("type") == "text"]
    if not all(isinstance(text, str) for text in texts):
        raise ProviderResponseError(deployment, "unexpected response shape: a text block "
                                    "without text")
    text = "".join(texts)
    stop = data.get("stop_reason")
    if not (stop is None or isinstance(stop, str)):
        raise ProviderResponseError(deployment, "unexpected response shape: stop_reason")
    if stop == "refusal" and not text.strip():
        raise ContentFilteredError(deployment, "the answer was refused (stop_reason refusal)")
    model = data.get("model")
    model = model[:MODEL_NAME_CAP] if isinstance(model, str) and model else call.model
    return Completion(
        (Choice(text, finish_reason=stop),), model,
        token_count(usage.get("input_tokens"), "usage.input_tokens", deployment),
        token_count(usage.get("output_tokens"), "usage.output_tokens", deployment),
    )
