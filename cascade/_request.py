"""Turning what the caller passed into a validated ``Request`` (pure, no I/O)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import get_args

from cascade.errors import EmptyPromptError, InvalidRequestError
from cascade.types import Message, Request, Role

PromptLike = str | Sequence[Message | Mapping[str, str]]
_ROLES = frozenset(get_args(Role))
_BINARY = (bytes, bytearray, memoryview)


def _text(value: str, what: str) -> str:
    """``value`` if it is valid Unicode (encodable as UTF-8: no lone surrogates, such as the
    ``\\udcff`` Python makes of a non-UTF-8 byte)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidRequestError(
            f"{what} is not valid Unicode text: {value[exc.start:exc.end]!r} at position "
            f"{exc.start} is a lone surrogate (from bytes that were not UTF-8?)") from None
    return value


def _binary(value: object, what: str) -> None:
    if isinstance(value, _BINARY):
        raise InvalidRequestError(f"{what} is {type(value).__name__}; decode it to a string "
                                  "first (e.g. data.decode('utf-8'))")


def _message(item: Message | Mapping[str, str], index: int) -> Message:
    _binary(item, f"message {index}")
    if isinstance(item, Message):
        role, content = item.role, item.content
    elif isinstance(item, Mapping):
        role, content = item.get("role"), item.get("content")
    else:
        raise InvalidRequestError(f"message {index} is {type(item).__name__}, not a mapping")
    if not isinstance(role, str) or role not in _ROLES:
        raise InvalidRequestError(f"message {index} has role {role!r}; expected one of {sorted(_ROLES)}")
    _binary(content, f"message {index}'s content")
    if not isinstance(content, str):
        raise InvalidRequestError(f"message {index} has no text content")
    _text(content, f"message {index}'s content")
    return item if isinstance(item, Message) else Message(role, content)  # type: ignore[arg-type]


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
    _binary(prompt, "the prompt")
    if isinstance(prompt, str):
        messages: tuple[Message, ...] = (Message("user", _text(prompt, "the prompt")),)
    elif isinstance(prompt, Sequence):
        messages = tuple(_message(item, i) for i, item in enumerate(prompt))
    else:
        raise InvalidRequestError(
            f"prompt is {type(prompt).__name__}; pass a string or a list of messages"
        )
    if not any(m.role == "user" and m.content.strip() for m in messages):
        raise EmptyPromptError()
    if metadata is not None and not isinstance(metadata, Mapping):
        raise InvalidRequestError(f"metadata is {type(metadata).__name__}, not a mapping")
    meta = dict(metadata or {})
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items()):
        raise InvalidRequestError("metadata keys and values must be strings")
    for key, value in meta.items():
        _text(key, "a metadata key")
        _text(value, f"metadata {key!r}")
    tokens, temp, stops = _overrides(max_tokens, temperature, stop)
    return Request(messages, feature, MappingProxyType(meta), tokens, temp, stops)


def check_deadline(deadline_s: object) -> float | None:
    """A run deadline: None (none) or a finite number of seconds > 0."""
    if deadline_s is None:
        return None
    if isinstance(deadline_s, bool) or not isinstance(deadline_s, int | float):
        raise InvalidRequestError(f"deadline_s is {type(deadline_s).__name__}; pass seconds "
                                  "as a number, or None for no deadline")
    try:
        seconds = float(deadline_s)
    except OverflowError:  # an int beyond float range
        seconds = math.inf
    if not (math.isfinite(seconds) and seconds > 0):
        raise InvalidRequestError(f"deadline_s must be a finite number of seconds above 0, "
                                  f"not {deadline_s!r} (None: no deadline)")
    return seconds
