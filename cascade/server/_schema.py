"""The OpenAI chat-completions wire format (pure): a request body read into ``ChatRequest``
(every field honoured, refused with the field named, or set aside as something the tiers
cannot judge), and responses, chunks and error objects in OpenAI's exact shape plus a
``cascade`` extension object."""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cascade.errors import CascadeError
from cascade.types import Result

__all__ = ["ChatRequest", "GatewayRequestError", "chat_chunk", "chat_completion",
           "error_body", "parse_chat_request", "usage_of"]

# honoured: passed to the engine
HONOURED = frozenset({"model", "messages", "max_tokens", "max_completion_tokens", "temperature",
                      "stop", "stream", "stream_options", "user", "safety_identifier",
                      "metadata"})
# OpenAI fields the tiers cannot judge: the model's per-policy rule decides (docs/gateway.md)
UNJUDGEABLE = frozenset({"tools", "tool_choice", "parallel_tool_calls", "functions",
                         "function_call", "response_format"})
# OpenAI fields accepted only at their neutral value (anything else would change the answer
# in a way the gateway does not do): field -> accepted values
NEUTRAL: Mapping[str, tuple[Any, ...]] = {
    "n": (1,), "top_p": (1, 1.0), "presence_penalty": (0, 0.0), "frequency_penalty": (0, 0.0),
    "logprobs": (False,), "logit_bias": ({},), "store": (False,), "seed": (),
    "top_logprobs": (0,), "service_tier": ("auto", "default"), "modalities": (["text"],),
    "reasoning_effort": (), "verbosity": (), "prediction": (), "audio": (),
    "web_search_options": (), "prompt_cache_key": (),
}
# keys of a message besides role and content: accepted only empty (an assistant message passed
# back as the client library serialises it has them as null)
_MESSAGE_EXTRAS = ("name", "refusal", "annotations", "audio")
_ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}
MAX_METADATA = 16  # OpenAI's limits on metadata
MAX_METADATA_VALUE = 512


class GatewayRequestError(CascadeError):
    """A request the gateway refuses, with its HTTP status and OpenAI's error fields."""

    def __init__(self, message: str, *, status: int = 400, param: str | None = None,
                 code: str | None = None, type_: str = "invalid_request_error") -> None:
        self.status, self.param, self.code, self.type = status, param, code, type_
        super().__init__(message)


@dataclass(frozen=True, slots=True)
class ChatRequest:
    model: str
    messages: tuple[Mapping[str, str], ...]
    max_tokens: int | None = None
    temperature: float | None = None
    stop: tuple[str, ...] | None = None
    stream: bool = False
    include_usage: bool = False
    metadata: Mapping[str, str] = field(default_factory=dict)
    unjudgeable: tuple[str, ...] = ()  # fields present that no estimator can judge


def _bad(message: str, param: str | None = None, code: str | None = None) -> GatewayRequestError:
    return GatewayRequestError(message, param=param, code=code)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return (_is_int(value) or isinstance(value, float)) and math.isfinite(float(value))  # type: ignore[arg-type]


def _content(raw: object, where: str, unjudgeable: list[str]) -> str:
    if isinstance(raw, str):
        return raw
    if not isinstance(raw, list):
        raise _bad(f"{where}.content must be a string or a list of content parts", where)
    texts: list[str] = []
    for j, part in enumerate(raw):
        if not isinstance(part, dict) or not isinstance(part.get("type"), str):
            raise _bad(f"{where}.content[{j}] must be an object with a type", where)
        if part["type"] == "text":
            if not isinstance(part.get("text"), str):
                raise _bad(f"{where}.content[{j}].text must be a string", where)
            texts.append(part["text"])
        else:  # image_url, input_audio, file...
            unjudgeable.append(f"{where}.content[{j}] ({part['type']})")
    return "".join(texts)


def _messages(raw: object, unjudgeable: list[str]) -> tuple[Mapping[str, str], ...]:
    if not isinstance(raw, list) or not raw:
        raise _bad("messages must be a non-empty array", "messages")
    out: list[Mapping[str, str]] = []
    for i, message in enumerate(raw):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise _bad(f"{where} must be an object", where)
        role = message.get("role")
        if role in ("tool", "function") or message.get("tool_calls") or \
                message.get("function_call"):
            unjudgeable.append(f"{where} (tool call)")
            continue
        if not isinstance(role, str) or role not in _ROLES:
            raise _bad(f"{where}.role must be one of {sorted(_ROLES)}, not {role!r}", where)
        for key, value in message.items():
            if key not in ("role", "content", "tool_calls", "function_call") and \
                    value not in (None, "", []):
                raise _bad(f"{where}.{key} is not supported by the cascade gateway (the tiers' "
                           "calls carry a role and a text content only)" if key in _MESSAGE_EXTRAS
                           else f"{where}: unrecognized message field {key}", f"{where}.{key}",
                           "unsupported_parameter")
        content = message.get("content")
        if content is None:
            raise _bad(f"{where}.content is required", where)
        out.append({"role": _ROLES[role], "content": _content(content, where, unjudgeable)})
    return tuple(out)


def _stop(raw: object) -> tuple[str, ...] | None:
    if raw is None:
        return None
    stops = [raw] if isinstance(raw, str) else raw
    if not isinstance(stops, list) or not all(isinstance(s, str) and s for s in stops) \
            or len(stops) > 4:
        raise _bad("stop must be a string or an array of at most 4 non-empty strings", "stop")
    return tuple(stops)


def _metadata(raw: object, user: object, safety_identifier: object = None) -> dict[str, str]:
    meta: dict[str, str] = {}
    if raw is not None:
        if not isinstance(raw, dict) or len(raw) > MAX_METADATA or not all(
                isinstance(k, str) and isinstance(v, str) and len(k) <= 64
                and len(v) <= MAX_METADATA_VALUE for k, v in raw.items()):
            raise _bad(f"metadata must be an object of at most {MAX_METADATA} string values "
                       f"(keys up to 64, values up to {MAX_METADATA_VALUE} characters)",
                       "metadata")
        meta.update(raw)
    if user is not None:
        if not isinstance(user, str):
            raise _bad("user must be a string", "user")
        meta["user"] = user
    if safety_identifier is not None:  # OpenAI's successor of `user`
        if not isinstance(safety_identifier, str) or len(safety_identifier) > 64:
            raise _bad("safety_identifier must be a string of at most 64 characters",
                       "safety_identifier")
        meta["safety_identifier"] = safety_identifier
    return meta


def _checked_fields(body: Mapping[str, Any], unjudgeable: list[str]) -> None:
    for name, value in body.items():
        if name in HONOURED:
            continue
        if name in UNJUDGEABLE:
            if value is not None:
                unjudgeable.append(name)
            continue
        if name in NEUTRAL:
            if value is not None and not any(type(value) is type(a) and value == a
                                             for a in NEUTRAL[name]):
                raise _bad(f"{name}={value!r} is not supported by the cascade gateway "
                           f"(accepted: {', '.join(map(repr, NEUTRAL[name])) or 'null'})",
                           name, "unsupported_parameter")
            continue
        raise _bad(f"Unrecognized request argument supplied: {name}", name,
                   "unrecognized_argument")


def parse_chat_request(body: object) -> ChatRequest:
    """Validate a ``POST /v1/chat/completions`` body; ``GatewayRequestError`` (400) names the
    first bad field."""
    if not isinstance(body, dict):
        raise _bad("the request body must be a JSON object")
    unjudgeable: list[str] = []
    _checked_fields(body, unjudgeable)
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _bad("model is required (a string: one of GET /v1/models)", "model")
    messages = _messages(body.get("messages"), unjudgeable)
    tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    if tokens is not None and not (_is_int(tokens) and tokens >= 1):
        raise _bad("max_tokens must be an integer >= 1", "max_tokens")
    temperature = body.get("temperature")
    if temperature is not None and not (_is_number(temperature) and 0 <= temperature <= 2):
        raise _bad("temperature must be a number between 0 and 2", "temperature")
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise _bad("stream must be a boolean", "stream")
    options = body.get("stream_options")
    if options is not None:
        if not stream:
            raise _bad("stream_options is only allowed when stream is true", "stream_options")
        if not isinstance(options, dict) or set(options) - {"include_usage"} or \
                not isinstance(options.get("include_usage", False), bool):
            raise _bad("stream_options must be {\"include_usage\": boolean}", "stream_options")
    return ChatRequest(model, messages, tokens, None if temperature is None else float(temperature),
                       _stop(body.get("stop")), bool(stream),
                       bool((options or {}).get("include_usage", False)),
                       _metadata(body.get("metadata"), body.get("user"),
                                 body.get("safety_identifier")), tuple(unjudgeable))


# --- responses ---------------------------------------------------------------------------------


def completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"


def _finish(result: Result) -> str:
    return "length" if result.finish_reason == "length" else "stop"


def usage_of(result: Result) -> dict[str, int]:
    """Tokens of every model call the request paid for (all tiers tried)."""
    prompt = sum(a.input_tokens for a in result.attempts)
    completion = sum(a.output_tokens for a in result.attempts)
    return {"prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": prompt + completion}


def extension(result: Result) -> dict[str, Any]:
    """The ``cascade`` object beside OpenAI's fields."""
    return {"tier": result.tier_name, "tier_index": result.tier, "model": result.model,
            "accepted": result.accepted, "confidence": result.confidence,
            "stop_reason": result.stop_reason.value, "escalations": result.escalations,
            "cost_usd": result.cost, "latency_s": result.latency_s, "trace_id": result.trace_id}


def chat_completion(result: Result, model: str, *, id_: str | None = None,
                    created: int | None = None) -> dict[str, Any]:
    return {
        "id": id_ or completion_id(), "object": "chat.completion",
        "created": int(time.time()) if created is None else created, "model": model,
        "system_fingerprint": None,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": result.answer,
                                             "refusal": None},
                     "logprobs": None, "finish_reason": _finish(result)}],
        "usage": usage_of(result), "cascade": extension(result),
    }


def chat_chunk(id_: str, created: int, model: str, *, content: str | None = None,
               role: bool = False, result: Result | None = None,
               usage: dict[str, int] | None = None, choices: bool = True) -> dict[str, Any]:
    """One ``chat.completion.chunk``: a delta, the final one (``result``: finish_reason and the
    ``cascade`` object), or the usage-only chunk (``choices=False``)."""
    chunk: dict[str, Any] = {"id": id_, "object": "chat.completion.chunk", "created": created,
                             "model": model, "system_fingerprint": None}
    if not choices:
        chunk["choices"] = []
        chunk["usage"] = usage
        return chunk
    delta: dict[str, Any] = {}
    if role:
        delta["role"] = "assistant"
    if content is not None:
        delta["content"] = content
    chunk["choices"] = [{"index": 0, "delta": delta, "logprobs": None,
                         "finish_reason": None if result is None else _finish(result)}]
    if result is not None:
        chunk["cascade"] = extension(result)
    return chunk


def error_body(message: str, type_: str, *, param: str | None = None,
               code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}
