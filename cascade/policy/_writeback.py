"""Write chosen thresholds back into a policy file, keeping its comments, key order and
formatting (ruamel.yaml round-trip; PyYAML cannot keep comments). Reading for validation
still goes through ``safe_load`` in ``_loader``; ruamel is used in its safe round-trip mode."""

from __future__ import annotations

import io
import math
from collections.abc import Mapping
from pathlib import Path

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError
from ruamel.yaml.util import load_yaml_guess_indent

from cascade.errors import PolicyError, PolicyIssue
from cascade.policy._loader import parse_policy


def _yaml() -> YAML:
    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.width = 4096
    return yaml


def _load(text: str, source: str) -> tuple[YAML, object]:
    yaml = _yaml()
    try:
        _, sequence, offset = load_yaml_guess_indent(text)
        sequence, offset = sequence or 2, offset or 0
        yaml.indent(mapping=max(2, sequence - offset), sequence=sequence, offset=offset)
        return yaml, yaml.load(text)
    except YAMLError as exc:
        raise PolicyError(source, [PolicyIssue("", None, f"not valid YAML: {exc}")]) from None


def with_router_thresholds(text: str, thresholds: tuple[float, ...], *, source: str = "<string>",
                           digits: int = 4, env: Mapping[str, str] | None = None) -> str:
    """The policy text with ``routing.router.threshold`` set (one value, or one per tier)."""
    from ruamel.yaml.comments import CommentedSeq

    yaml, document = _load(text, source)
    router = document.get("routing", {}).get("router") if hasattr(document, "get") else None
    if not hasattr(router, "get"):
        raise PolicyError(source, [PolicyIssue("routing.router", None, "no router to calibrate")])
    # above 1 (e.g. .inf): never start at that tier
    values = [float(v) if float(v) > 1.0 else round(max(0.0, float(v)), digits) for v in thresholds]
    if len(set(values)) == 1:
        router["threshold"] = values[0]
    else:
        seq = CommentedSeq(values)
        seq.fa.set_flow_style()
        router["threshold"] = seq
    out = io.StringIO()
    yaml.dump(document, out)
    result = out.getvalue()
    parse_policy(result, source=source, env=env)
    return result


def write_router_thresholds(path: str | Path, thresholds: tuple[float, ...], *,
                            env: Mapping[str, str] | None = None) -> str:
    file = Path(path)
    text = with_router_thresholds(file.read_text(encoding="utf-8"), thresholds, source=str(file), env=env)
    file.write_text(text, encoding="utf-8")
    return text


def with_cost_weight(text: str, cost_weight: float, *, source: str = "<string>",
                     env: Mapping[str, str] | None = None, comment: str | None = None) -> str:
    """The policy text with ``routing.unified.cost_weight`` (λ, written exactly) set and, if
    given, an end-of-line comment after it; everything else unchanged; validated."""
    yaml, document = _load(text, source)
    routing = document.get("routing") if hasattr(document, "get") else None
    unified = routing.get("unified") if hasattr(routing, "get") else None
    if not hasattr(unified, "get"):
        raise PolicyError(source, [PolicyIssue("routing.unified", None, "no unified section to calibrate")])
    unified["cost_weight"] = float(cost_weight)
    if comment:
        if unified.fa.flow_style():  # a comment inside {...} would split the mapping's lines
            unified.fa.set_block_style()
        unified.yaml_add_eol_comment(comment, key="cost_weight")
    out = io.StringIO()
    yaml.dump(document, out)
    result = out.getvalue()
    parse_policy(result, source=source, env=env)
    return result


def with_thresholds(text: str, thresholds: Mapping[str, float], *, source: str = "<string>",
                    digits: int = 4, env: Mapping[str, str] | None = None,
                    comments: Mapping[str, str] | None = None) -> str:
    """The policy text with ``threshold`` set on the named tiers (infinity as ``never``) and,
    from ``comments``, an end-of-line comment after it; everything else unchanged. The result
    is validated like any policy (a ``PolicyError`` if it would not load)."""
    yaml, document = _load(text, source)
    tiers = document.get("tiers") if hasattr(document, "get") else None
    names = {str(t.get("name")): t for t in tiers or [] if hasattr(t, "get")}
    missing = sorted(set(thresholds) - set(names))
    if missing:
        raise PolicyError(source, [PolicyIssue("tiers", None, f"no tier named {n!r}") for n in missing])
    unknown = sorted(set(comments or {}) - set(thresholds))
    if unknown:
        raise PolicyError(source, [PolicyIssue("tiers", None, f"a comment for {n!r} without a threshold")
                                   for n in unknown])
    for name, value in thresholds.items():
        tier = names[name]
        rounded: float | str = "never" if math.isinf(value) and value > 0 else \
            round(min(1.0, max(0.0, float(value))), digits)
        if "threshold" in tier:
            tier["threshold"] = rounded
        else:
            position = list(tier.keys()).index("estimator") + 1 if "estimator" in tier else len(tier)
            tier.insert(position, "threshold", rounded)
        if comments and name in comments:
            tier.yaml_add_eol_comment(comments[name], key="threshold")
    out = io.StringIO()
    yaml.dump(document, out)
    result = out.getvalue()
    parse_policy(result, source=source, env=env)
    return result


def write_thresholds(path: str | Path, thresholds: Mapping[str, float], *,
                     env: Mapping[str, str] | None = None,
                     comments: Mapping[str, str] | None = None) -> str:
    """Rewrite the file in place (validated first: a failure leaves the file untouched)."""
    file = Path(path)
    text = with_thresholds(file.read_text(encoding="utf-8"), thresholds, source=str(file), env=env,
                           comments=comments)
    file.write_text(text, encoding="utf-8")
    return text
