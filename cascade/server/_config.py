"""The gateway's own configuration (``--config gateway.yaml``, optional): API keys (sha256
hashes in the file, or plain keys from an environment variable), the request metadata field
that carries the key's id (so a policy's ``budgets:`` with ``scope: caller`` limits each key),
the body size limit, the shutdown grace period and per-model rules."""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from cascade.errors import ConfigError

__all__ = ["ApiKeys", "GatewayConfig", "GatewayConfigError", "KeySpec", "MetricsAccess",
           "ModelRule", "RefuseRule", "TierRule", "hash_key", "load_gateway_config"]

KEYS_ENV = "CASCADE_API_KEYS"
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


class GatewayConfigError(ConfigError):
    """The gateway's configuration file or key variable is invalid (the message names the
    field; never a key)."""


class MetricsAccess(StrEnum):
    """Who may read ``GET /metrics``."""

    OPEN = "open"  # anyone who reaches the port (the usual Prometheus scrape)
    KEY = "key"  # a valid gateway API key (`Authorization: Bearer KEY`)
    OFF = "off"  # not served (404)


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class KeySpec(_Spec):
    id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.@-]+$",
                    description="the caller id passed to budgets (never the key)")
    sha256: str = Field(pattern=_HEX64.pattern, description="hex sha256 of the key "
                        "(`cascade serve --hash-key KEY` prints it)")


class RefuseRule(_Spec):
    """400 naming the first field the tiers cannot judge."""

    action: Literal["refuse"] = "refuse"


class TierRule(_Spec):
    """Send the request as it is (tools, response_format, images and all) to the named tier's
    OpenAI-compatible deployments and return its answer unverified (``accepted: false``).
    Not with ``stream: true`` (400)."""

    action: Literal["tier"]
    tier: str = Field(min_length=1)


class ModelRule(_Spec):
    live: bool = Field(False, description="stream the last tier's tokens as they arrive when "
                       "no estimator judges it (docs/gateway.md: the latency trade-off)")
    on_unjudgeable: Annotated[RefuseRule | TierRule, Field(discriminator="action")] = \
        Field(default_factory=RefuseRule)


class GatewayConfig(_Spec):
    keys: tuple[KeySpec, ...] = ()
    keys_env: str = Field(KEYS_ENV, description="environment variable with `id=key,...`")
    auth: bool = Field(True, description="false: no API key needed (loopback development only)")
    caller_key: str = Field("caller", min_length=1, description="request metadata field set to "
                            "the key's id (a client cannot set it)")
    max_body_bytes: int = Field(1 << 20, ge=1024, le=64 << 20)
    grace_s: float = Field(30.0, ge=0, le=3600, description="in-flight requests may finish "
                           "this long after SIGTERM")
    keep_alive_s: float = Field(75.0, gt=0, le=3600, description="an idle client connection "
                                "is closed after this long; keep it above a load balancer's "
                                "idle timeout (60 s on many), or it reuses closed connections")
    default_model: str | None = Field(None, description="the policy `router-<kind>-<threshold>` "
                                      "names map to (default: the only policy)")
    models: dict[str, ModelRule] = Field(default_factory=dict)
    metrics: MetricsAccess = Field(MetricsAccess.OPEN, description="GET /metrics (Prometheus): "
                                   "open, key (a valid API key) or off")

    @field_validator("metrics", mode="before")
    @classmethod
    def _yaml_off(cls, value: object) -> object:
        """YAML reads a bare ``off`` as false (and ``on`` as true)."""
        if value is False:
            return MetricsAccess.OFF
        if value is True:
            return MetricsAccess.OPEN
        return value

    def rule(self, model: str) -> ModelRule:
        return self.models.get(model) or ModelRule()


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class ApiKeys:
    """sha256 of each key -> its id."""

    by_hash: Mapping[str, str]

    def identify(self, key: str) -> str | None:
        return self.by_hash.get(hash_key(key))

    @classmethod
    def build(cls, config: GatewayConfig, env: Mapping[str, str]) -> ApiKeys:
        keys = {k.sha256: k.id for k in config.keys}
        raw = env.get(config.keys_env, "")
        for n, item in enumerate(filter(None, (s.strip() for s in raw.split(","))), 1):
            ident, sep, key = item.partition("=")
            if not sep or not ident or not key:
                raise GatewayConfigError(f"{config.keys_env}: entry {n} is not `id=key`")
            keys[hash_key(key)] = ident
        if config.auth and not keys:
            raise GatewayConfigError(
                f"no API keys: add `keys:` to the gateway config or set {config.keys_env}"
                "=id=key (or `auth: false` for local development)")
        if config.metrics is MetricsAccess.KEY and not keys:
            raise GatewayConfigError("metrics: key needs API keys (`keys:` or "
                                     f"{config.keys_env}), or `metrics: open` / `off`")
        return cls(keys)


def load_gateway_config(path: str | Path | None) -> GatewayConfig:
    if path is None:
        return GatewayConfig()
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise GatewayConfigError(f"cannot read the gateway config {path}: {exc}") from None
    try:
        return GatewayConfig.model_validate(data or {})
    except ValidationError as exc:
        issues = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise GatewayConfigError(f"gateway config {path}: {issues}") from None


def environment() -> Mapping[str, str]:
    return os.environ
