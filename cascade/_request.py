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


def make_request(prompt: PromptLike, feature: str,
                 metadata: Mapping[str, str] | None = None) -> Request:
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
    return Request(messages, feature, MappingProxyType(meta))
