"""Turn a policy's provider spec into a live provider (one per endpoint, shared by tiers)."""

from __future__ import annotations

from pathlib import Path

from cascade.errors import ProviderConfigError
from cascade.policy import (
    AnthropicProvider as AnthropicSpec,
)
from cascade.policy import (
    LlamaCppProvider as LlamaSpec,
)
from cascade.policy import (
    OpenAIProvider as OpenAISpec,
)
from cascade.policy import (
    ProviderSpec,
)
from cascade.policy import (
    ReplayProvider as ReplaySpec,
)
from cascade.providers._anthropic import AnthropicProvider
from cascade.providers._base import Provider
from cascade.providers._http import ClientPool
from cascade.providers._llama import LlamaCppProvider, LlamaSettings, bundled_model_locator
from cascade.providers._openai import OpenAICompatibleProvider
from cascade.providers._replay import ReplayProvider, ReplaySettings, cached_table


class ProviderFactory:
    """Builds providers for one ``Cascade``; equal specs share one provider (one pooled
    HTTP client per base URL, one loaded model per file). ``aclose`` closes them all."""

    def __init__(self, base_dir: Path, pool: ClientPool | None = None) -> None:
        self._base_dir = base_dir
        self._pool = pool or ClientPool()
        self._built: dict[tuple[object, ...], Provider] = {}

    def _path(self, value: str) -> Path:
        path = Path(value).expanduser()
        return path if path.is_absolute() else self._base_dir / path

    def build(self, spec: ProviderSpec, model: str) -> Provider:
        key = spec.identity()
        provider = self._built.get(key)
        if provider is None:
            provider = self._built[key] = self._new(spec)
        if isinstance(provider, ReplayProvider):
            provider.table.require_model(model)
        return provider

    def _new(self, spec: ProviderSpec) -> Provider:
        match spec:
            case OpenAISpec():
                key = spec.api_key.get_secret_value() if spec.api_key else None
                return OpenAICompatibleProvider(self._pool.client(spec.base_url), spec.base_url,
                                                api_key=key, supports_n=spec.supports_n,
                                                headers={k: v.get_secret_value()
                                                         for k, v in spec.headers.items()})
            case AnthropicSpec():
                return AnthropicProvider(self._pool.client(spec.base_url), spec.base_url,
                                         api_key=spec.api_key.get_secret_value(),
                                         version=spec.version)
            case LlamaSpec():
                return self._llama(spec)
            case ReplaySpec():
                settings = ReplaySettings(spec.prompt_prefix_chars, spec.vote, spec.output_tokens)
                return ReplayProvider(cached_table(self._path(spec.data), spec.format), settings)
        raise ProviderConfigError(f"no provider for {spec!r}")  # unreachable: the union is closed

    def _llama(self, spec: LlamaSpec) -> LlamaCppProvider:
        settings = LlamaSettings(spec.n_ctx, spec.n_threads, spec.prompt_format,
                                 spec.completion_template, spec.seed)
        if spec.package is not None:
            return LlamaCppProvider(bundled_model_locator(spec.package), spec.package, settings)
        path = self._path(spec.model_path or "")
        if not path.is_file():
            raise ProviderConfigError(f"model file {path} does not exist")
        return LlamaCppProvider(lambda: path, path.name, settings)

    @property
    def providers(self) -> tuple[Provider, ...]:
        return tuple(self._built.values())

    async def aclose(self) -> None:
        try:
            for provider in self._built.values():
                await provider.aclose()
        finally:
            self._built.clear()
            await self._pool.aclose()
