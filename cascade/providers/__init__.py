"""Where models run: one small async interface, four implementations."""

from cascade.providers._anthropic import AnthropicProvider
from cascade.providers._base import Provider, estimate_message_tokens, estimate_tokens
from cascade.providers._build import ProviderFactory
from cascade.providers._http import ClientPool
from cascade.providers._llama import LlamaCppProvider, LlamaSettings, bundled_model_locator
from cascade.providers._openai import OpenAICompatibleProvider, parse_chat_completion
from cascade.providers._replay import (
    Record,
    ReplayProvider,
    ReplayRow,
    ReplayTable,
    cached_table,
    load_routerbench_csv,
)

__all__ = [
    "AnthropicProvider",
    "ClientPool",
    "LlamaCppProvider",
    "LlamaSettings",
    "OpenAICompatibleProvider",
    "Provider",
    "ProviderFactory",
    "Record",
    "ReplayProvider",
    "ReplayRow",
    "ReplayTable",
    "bundled_model_locator",
    "cached_table",
    "estimate_message_tokens",
    "estimate_tokens",
    "load_routerbench_csv",
    "parse_chat_completion",
]
