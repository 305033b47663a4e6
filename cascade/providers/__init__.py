"""Where models run: one small async interface, four implementations."""

from cascade.providers._anthropic import AnthropicProvider
from cascade.providers._base import Provider, estimate_message_tokens, estimate_tokens
from cascade.providers._build import ProviderFactory
from cascade.providers._http import ClientPool
from cascade.providers._llama import LlamaCppProvider, LlamaSettings, bundled_model_locator
from cascade.providers._openai import OpenAICompatibleProvider, parse_chat_completion
from cascade.providers._replay import ReplayProvider, ReplaySettings, cached_table
from cascade.providers._replay_data import (
    Record,
    ReplayFormat,
    ReplayRow,
    ReplayTable,
    load_routerbench_csv,
    load_table,
    majority,
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
    "ReplayFormat",
    "ReplayProvider",
    "ReplayRow",
    "ReplaySettings",
    "ReplayTable",
    "bundled_model_locator",
    "cached_table",
    "estimate_message_tokens",
    "estimate_tokens",
    "load_routerbench_csv",
    "load_table",
    "majority",
    "parse_chat_completion",
]
