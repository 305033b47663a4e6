"""Turning what the caller passed into a validated ``Request`` (pure, no I/O)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import get_args

from cascade.errors import EmptyPromptError, InvalidRequestError
from cascade.types import Message, Request, Role

PromptLike = str | Sequence[Message | Mapping[str, str]]
_ROLES = frozenset(get_args(Role))


def _message(item: Message | Mapping[str, str], index: int) -> Message:
    if isinstance(item, Message):
        return item
    if not isinstance(item, Mapping):
        raise InvalidRequestError(f"message {index} is {type(item).__name__}, not a mapping")
    role, content = item.get("role"), item.get("content")
    if role not in _ROLES:
        raise InvalidRequestError(f"message {index} has role {role!r}; expected one of {sorted(_ROLES)}")
    if not isinstance(content, str):
        raise InvalidRequestError(f"message {index} has no text content")
    return Message(role, content)  # type: ignore[arg-type]


def _overrides(max_tokens: object, temperature: object,
               stop: object) -> tuple[int | None, float | None, tuple[str, ...] | None]:
    """Per-request overrides, checked like the policy's own keys."""
    if max_tokens is not None and (isinstance(max_tokens, bool) or not isinstance(max_tokens, int)
                                   or max_tokens < 1):
        raise InvalidRequestError(f"max_tokens must be an integer >= 1, not {max_tokens!r}")
    if temperature is not None and (isinstance(temperature, bool)
                                    or not isinstance(temperature, (int, float))
                                    or not 0.0 <= temperature <= 2.0):
        raise InvalidRequestError(f"temperature must be a number in [0, 2], not {temperature!r}")
    temp = None if temperature is None else float(temperature)  # type: ignore[arg-type]
    if stop is None:
        return max_tokens, temp, None  # type: ignore[return-value]
    if isinstance(stop, str) or not isinstance(stop, Sequence) \
            or not all(isinstance(s, str) and s for s in stop) or len(stop) > 4:
        raise InvalidRequestError(f"stop must be a list of at most 4 non-empty strings, not {stop!r}")
    return max_tokens, temp, tuple(stop)  # type: ignore[return-value]


def make_request(prompt: PromptLike, feature: str,
                 metadata: Mapping[str, str] | None = None, *, max_tokens: int | None = None,
                 temperature: float | None = None, stop: Sequence[str] | None = None) -> Request:
    if isinstance(prompt, str):
        messages: tuple[Message, ...] = (Message("user", prompt),)
    elif isinstance(prompt, Sequence):
        messages = tuple(_message(item, i) for i, item in enumerate(prompt))
    else:
        raise InvalidRequestError(
            f"prompt is {type(prompt).__name__}; pass a string or a list of messages"
        )
    if not any(m.role == "user" and m.content.strip() for m in messages):
        raise EmptyPromptError()
    meta = dict(metadata or {})
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items()):
        raise InvalidRequestError("metadata keys and values must be strings")
    tokens, temp, stops = _overrides(max_tokens, temperature, stop)
    return Request(messages, feature, MappingProxyType(meta), tokens, temp, stops)
