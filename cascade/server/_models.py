"""The models a gateway serves: one ``Cascade`` per policy file in the policies directory
(the file's stem is the model name), and RouteLLM-style names ``router-<kind>-<threshold>``
mapped to the default policy with that router kind and threshold."""

from __future__ import annotations

import math
import re
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import anyio

from cascade._stream import can_stream_live
from cascade.engine import Cascade
from cascade.errors import ConfigError
from cascade.policy import Policy, RoutingMode, load_policy
from cascade.policy._models import LearnedRouterSpec
from cascade.server._config import ModelRule, RefuseRule, TierRule
from cascade.server._forward import check_forwardable
from cascade.server._schema import GatewayRequestError

__all__ = ["Served", "check_policies", "load_models", "parse_router_name"]

_ROUTER_NAME = re.compile(r"^router-([a-z_]+)-([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)$")
MAX_ROUTER_VARIANTS = 16  # distinct router-<kind>-<threshold> cascades kept open


def parse_router_name(name: str) -> tuple[str, float] | None:
    match = _ROUTER_NAME.match(name)
    if match is None:
        return None
    return match.group(1), float(match.group(2))


def _not_found(message: str) -> GatewayRequestError:
    return GatewayRequestError(message, status=404, param="model", code="model_not_found")


@dataclass(slots=True)
class Served:
    """Every policy as a model, built once; router variants built on first use."""

    policies: dict[str, tuple[Policy, Path]]
    cascades: dict[str, Cascade]
    default: str | None
    created: int = 0
    variants: OrderedDict[str, Cascade] = field(default_factory=OrderedDict)
    _lock: anyio.Lock = field(default_factory=anyio.Lock)

    @property
    def names(self) -> list[str]:
        return sorted(self.cascades)

    async def get(self, name: str) -> Cascade:
        found = self.cascades.get(name)
        if found is not None:
            return found
        router = parse_router_name(name)
        if router is None:
            raise _not_found(f"The model `{name}` does not exist (models: "
                             f"{', '.join(self.names)})")
        async with self._lock:
            if name in self.variants:
                self.variants.move_to_end(name)
                return self.variants[name]
            cascade = self._variant(name, *router)
            self.variants[name] = cascade
            if len(self.variants) > MAX_ROUTER_VARIANTS:
                _, old = self.variants.popitem(last=False)
                await old.aclose()
            return cascade

    def _variant(self, name: str, kind: str, threshold: float) -> Cascade:
        if self.default is None:
            raise _not_found(f"`{name}`: router model names need a default policy "
                             "(`default_model:` in the gateway config)")
        policy, base = self.policies[self.default]
        router = policy.routing.router if policy.routing is not None else None
        if not isinstance(router, LearnedRouterSpec):
            raise _not_found(f"`{name}`: the default policy {self.default!r} has no learned "
                             "router (knn, mf or bert)")
        if router.kind != kind:  # the spec's Literal, checked as a value, not a strategy
            raise _not_found(f"`{name}`: the default policy {self.default!r} routes with "
                             f"{router.kind}, not {kind}")
        if not math.isfinite(threshold) or threshold < 0:
            raise _not_found(f"`{name}`: the threshold must be a finite number >= 0")
        routing = policy.routing.model_copy(  # type: ignore[union-attr]
            update={"router": router.model_copy(update={"threshold": threshold})})
        return Cascade.from_policy(policy.model_copy(update={"routing": routing}), base_dir=base)

    async def aclose(self) -> None:
        for cascade in (*self.cascades.values(), *self.variants.values()):
            await cascade.aclose()


def _policy_files(directory: Path) -> list[Path]:
    if not directory.is_dir():
        raise ConfigError(f"--policies {directory}: not a directory")
    files = sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")])
    if not files:
        raise ConfigError(f"--policies {directory}: no *.yaml policy files")
    stems = [f.stem for f in files]
    for stem in stems:
        if stems.count(stem) > 1:
            raise ConfigError(f"two policy files for the model {stem!r} in {directory}")
    return files


def check_policies(directory: Path, default: str | None,
                   rules: Iterable[str] = ()) -> list[str]:
    """Validate every policy file (no provider is built); the model names. ``default`` and
    the models the gateway config has rules for must be among them."""
    names = [path.stem for path in _policy_files(directory) if load_policy(path)]
    if default is not None and default not in names:
        raise ConfigError(f"default_model {default!r} is not one of {names}")
    for name in rules:
        if name not in names:
            raise ConfigError(f"gateway config models: {name!r} is not one of {names}")
    return names


def _check_rule(name: str, cascade: Cascade, rule: ModelRule) -> None:
    match rule.on_unjudgeable:
        case TierRule(tier=tier):
            check_forwardable(name, cascade, tier)
        case RefuseRule():
            pass
    if rule.live:
        _check_live(name, cascade)


def _check_live(name: str, cascade: Cascade) -> None:
    routing = cascade.routing
    why = can_stream_live(cascade.tiers[-1])
    if why is None and routing is not None and routing.mode is not RoutingMode.CASCADE:
        why = "the policy routes (live streaming needs routing.mode cascade)"
    if why is not None:
        raise ConfigError(f"gateway config models.{name}.live: {why}")


def load_models(directory: Path, default: str | None,
                rules: Mapping[str, ModelRule] | None = None) -> Served:
    """Every ``*.yaml`` / ``*.yml`` policy in ``directory`` (a ``ConfigError`` names the first
    bad one: the gateway does not start with a broken policy)."""
    rules = rules or {}
    check_policies(directory, default, rules)
    policies: dict[str, tuple[Policy, Path]] = {}
    cascades: dict[str, Cascade] = {}
    for path in _policy_files(directory):
        policy = load_policy(path)
        policies[path.stem] = (policy, path.parent)
        cascades[path.stem] = Cascade.from_policy(policy, base_dir=path.parent)
        if path.stem in rules:
            _check_rule(path.stem, cascades[path.stem], rules[path.stem])
    if default is None and len(policies) == 1:
        default = next(iter(policies))
    return Served(policies, cascades, default)
