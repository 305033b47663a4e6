"""The provider interface and the pieces every provider shares (no I/O here)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from cascade.types import Completion, Message, ModelCall


@runtime_checkable
class Provider(Protocol):
    """Where a tier's model runs. One main method: ``complete``.

    ``deployment`` names the endpoint for results and traces (never a secret);
    ``supports_n`` says whether one call can return several choices (else ``sample(k)``
    makes k calls). Plain attributes satisfy both. ``check`` verifies reachability before a
    run; ``aclose`` releases what the provider owns.
    """

    @property
    def deployment(self) -> str: ...

    @property
    def supports_n(self) -> bool: ...

    async def complete(self, call: ModelCall) -> Completion: ...

    async def check(self) -> None: ...

    async def aclose(self) -> None: ...


def estimate_tokens(text: str) -> int:
    """Rough token count where no tokenizer is at hand: ceil(characters / 4)."""
    return math.ceil(len(text) / 4)


def estimate_message_tokens(messages: Sequence[Message]) -> int:
    """Prompt tokens of a conversation: text estimate plus 4 per message for the template."""
    return sum(estimate_tokens(m.content) + 4 for m in messages)


def with_system_prompt(messages: tuple[Message, ...], system_prompt: str | None) -> tuple[Message, ...]:
    if system_prompt is None or any(m.role == "system" for m in messages):
        return messages
    return (Message("system", system_prompt), *messages)
