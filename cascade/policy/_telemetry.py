"""Policy keys for observability: ``telemetry:`` (content in spans, metrics, observers)."""

from __future__ import annotations

import importlib
import re
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field, field_validator

from cascade.errors import ConfigError

if TYPE_CHECKING:
    from cascade.telemetry import RunObserver

_IMPORT_PATH = r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$"


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class TelemetrySpec(_Spec):
    """What each run reports (docs/observability.md)."""

    record_content: bool = Field(False, description="put prompt and answer text into spans "
                                 "(gen_ai.input.messages / gen_ai.output.messages); off: "
                                 "names and numbers only")
    metrics: bool = Field(True, description="OpenTelemetry metrics (a no-op until the "
                          "application installs a MeterProvider)")
    observers: tuple[str, ...] = Field((), description="your RunObserver classes or "
                                       "zero-argument factories, as 'package.module:name'")

    @field_validator("observers")
    @classmethod
    def _import_paths(cls, paths: tuple[str, ...]) -> tuple[str, ...]:
        for path in paths:
            if not re.match(_IMPORT_PATH, path):
                raise ValueError(f"{path!r} is not 'package.module:name'")
        return paths

    def build_observers(self) -> list[RunObserver]:
        """Import and instantiate every named observer (``ConfigError`` naming the one that
        cannot be imported, is not callable, or does not make a ``RunObserver``)."""
        from cascade.telemetry import RunObserver

        built: list[RunObserver] = []
        for path in self.observers:
            module_name, _, attribute = path.partition(":")
            try:
                target: object = importlib.import_module(module_name)
                for part in attribute.split("."):
                    target = getattr(target, part)
            except (ImportError, AttributeError) as exc:
                raise ConfigError(f"telemetry.observers: cannot import {path!r} "
                                  f"({type(exc).__name__}: {exc})") from None
            if not callable(target):
                raise ConfigError(f"telemetry.observers: {path!r} is not a class or factory")
            observer = target()
            if not isinstance(observer, RunObserver):
                raise ConfigError(f"telemetry.observers: {path!r} made a "
                                  f"{type(observer).__name__}, not a RunObserver")
            built.append(observer)
        return built


__all__ = ["TelemetrySpec"]
