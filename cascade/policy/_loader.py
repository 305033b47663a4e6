"""Reading policy YAML: the safe loader only (PyYAML's ``SafeLoader``: plain data, no
objects), ``${ENV}`` interpolation, and errors that name the file, the key path and the line.

Policy files may come from less trusted hands, so their size and shape are bounded before
anything walks them: at most ``MAX_POLICY_BYTES``; nesting at most ``MAX_DEPTH`` levels;
at most ``MAX_ALIASES`` aliases and ``MAX_NODES`` values once aliases are expanded (a
275-byte "billion laughs" file expands to 10⁹); no alias inside its own anchor."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from cascade.errors import MissingSecretError, PolicyError, PolicyIssue
from cascade.policy._models import Policy

KeyPath = tuple[str | int, ...]
MAX_POLICY_BYTES = 1 << 20
MAX_DEPTH = 64
MAX_ALIASES = 1000
MAX_NODES = 100_000


class _Bound(Exception):
    def __init__(self, message: str, mark: yaml.Mark | None) -> None:
        super().__init__(message)
        self.message = message
        self.line = mark.line + 1 if mark is not None else None


class _BoundedLoader(yaml.SafeLoader):
    """``SafeLoader`` that counts aliases and nesting while composing."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._aliases = 0

    def compose_node(self, parent: yaml.Node | None, index: object) -> yaml.Node:
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_ALIASES:
                raise _Bound(f"more than {MAX_ALIASES} aliases", self.peek_event().start_mark)
        if self._depth >= MAX_DEPTH:
            raise _Bound(f"nested deeper than {MAX_DEPTH} levels", self.peek_event().start_mark)
        self._depth += 1
        try:
            return super().compose_node(parent, index)  # type: ignore[no-any-return]
        finally:
            self._depth -= 1


def _expanded_size(root: yaml.Node) -> None:
    """Raise ``_Bound`` when the document, aliases expanded, holds more than ``MAX_NODES``
    values, nests deeper than ``MAX_DEPTH``, or an alias refers to an enclosing node (linear
    time: each node's size and height are memoised)."""
    seen: dict[int, tuple[int, int]] = {}
    open_nodes: set[int] = set()

    def measure(node: yaml.Node, depth: int) -> tuple[int, int]:
        key = id(node)
        if depth > MAX_DEPTH or (key in seen and depth + seen[key][1] > MAX_DEPTH):
            raise _Bound(f"nested deeper than {MAX_DEPTH} levels once aliases are expanded",
                         node.start_mark)
        if key in seen:
            return seen[key]
        if key in open_nodes:
            raise _Bound("an alias refers to the node that contains it", node.start_mark)
        open_nodes.add(key)
        children: list[yaml.Node] = []
        if isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        elif isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        total, height = 1, 0
        for child in children:
            size, below = measure(child, depth + 1)
            total, height = total + size, max(height, below + 1)
        open_nodes.discard(key)
        if total > MAX_NODES:
            raise _Bound(f"more than {MAX_NODES} values once aliases are expanded "
                         "(an alias bomb?)", node.start_mark)
        seen[key] = (total, height)
        return total, height

    measure(root, 0)


def _compose(text: str, source: str) -> tuple[yaml.Node | None, Any]:
    """The node tree (for lines) and the data, within the bounds above."""
    if len(text) > MAX_POLICY_BYTES:
        raise PolicyError(source, [PolicyIssue("", None, f"the policy is longer than "
                                               f"{MAX_POLICY_BYTES} characters")])
    loader: _BoundedLoader | None = None
    try:
        loader = _BoundedLoader(text)  # the reader refuses unprintable characters here
        root = loader.get_single_node()
        if root is None:
            return None, None
        _expanded_size(root)
        return root, loader.construct_document(root)
    except _Bound as exc:
        raise PolicyError(source, [PolicyIssue("", exc.line, f"refused: {exc.message}")]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        raise PolicyError(source, [PolicyIssue("", line, f"malformed YAML: {problem}")]) from None
    finally:
        if loader is not None:
            loader.dispose()
_ENV = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def format_key_path(path: KeyPath) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _index_lines(node: yaml.Node, path: KeyPath, lines: dict[KeyPath, int],
                 issues: list[PolicyIssue]) -> None:
    """Record the line of every key path; report duplicate keys (PyYAML keeps the last)."""
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = str(key_node.value)
            child = (*path, key)
            if key in seen:
                line = key_node.start_mark.line + 1
                issues.append(PolicyIssue(format_key_path(child), line, "duplicate key"))
            seen.add(key)
            lines[child] = key_node.start_mark.line + 1
            _index_lines(value_node, child, lines, issues)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _index_lines(item, (*path, index), lines, issues)


def _line_for(path: KeyPath, lines: Mapping[KeyPath, int]) -> int | None:
    for end in range(len(path), -1, -1):
        if path[:end] in lines:
            return lines[path[:end]]
    return None


def _interpolate(value: Any, path: KeyPath, env: Mapping[str, str], source: str,
                 lines: Mapping[KeyPath, int]) -> Any:
    if isinstance(value, dict):
        return {k: _interpolate(v, (*path, str(k)), env, source, lines) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, (*path, i), env, source, lines) for i, v in enumerate(value)]
    if not isinstance(value, str) or "$" not in value:
        return value

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, default = match.group(1), match.group(2)
        if name in env:
            return env[name]
        if default is not None:
            return default
        raise MissingSecretError(source, name, format_key_path(path), _line_for(path, lines))

    return _ENV.sub(replace, value)


def _data_path(loc: tuple[str | int, ...], data: Any, missing: bool) -> KeyPath:
    """Map a pydantic error location onto the YAML data (dropping union tags and the like)."""
    out: list[str | int] = []
    node = data
    for part in loc:
        if isinstance(node, dict) and part in node:
            out.append(part)
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            out.append(part)
            node = node[part]
        elif isinstance(node, dict) and isinstance(part, str) and part not in node:
            # a key the model wanted (missing) or a union tag: keep only the missing key
            if missing and part == loc[-1]:
                out.append(part)
    return tuple(out)


def _message(error: Mapping[str, Any], path: KeyPath) -> str:
    kind = error["type"]
    ctx = error.get("ctx") or {}
    if kind == "extra_forbidden":
        return f"unknown key {path[-1]!r}" if path else "unknown key"
    if kind == "missing":
        return "required key is missing"
    if kind == "union_tag_invalid":
        what = next((p for p in reversed(path) if isinstance(p, str)), "plugin")
        expected = ctx.get("expected_tags", "").replace("'", "")
        return f"unknown {what} kind {ctx.get('tag')!r} (expected one of: {expected})"
    if kind == "union_tag_not_found":
        return "missing 'kind'"
    message = str(error["msg"])
    return message.removeprefix("Value error, ")


def _issues_from(error: ValidationError, data: Any, lines: Mapping[KeyPath, int]) -> list[PolicyIssue]:
    errors = error.errors()
    locs = [tuple(e["loc"]) for e in errors]
    issues = []
    for e, loc in zip(errors, locs):
        # pydantic adds a "too short" for a list whose items failed: keep the real cause
        if e["type"] == "too_short" and any(o != loc and o[: len(loc)] == loc for o in locs):
            continue
        path = _data_path(loc, data, e["type"] == "missing")
        line_path = path[:-1] if e["type"] == "missing" else path
        issues.append(PolicyIssue(format_key_path(path), _line_for(line_path, lines), _message(e, path)))
    return sorted(issues, key=lambda i: i.line if i.line is not None else 1 << 30)


def parse_policy(text: str, *, source: str = "<string>",
                 env: Mapping[str, str] | None = None) -> Policy:
    """Validate policy YAML text. Raises ``PolicyError`` listing every problem found."""
    environ = os.environ if env is None else env
    root, data = _compose(text, source)
    if root is None or data is None:
        raise PolicyError(source, [PolicyIssue("", None, "the policy file is empty")])
    if not isinstance(data, dict):
        raise PolicyError(source, [PolicyIssue("", 1, "the policy must be a mapping of keys")])
    lines: dict[KeyPath, int] = {}
    issues: list[PolicyIssue] = []
    _index_lines(root, (), lines, issues)
    if issues:
        raise PolicyError(source, issues)
    data = _interpolate(data, (), environ, source, lines)
    try:
        return Policy.model_validate(data)
    except ValidationError as exc:
        raise PolicyError(source, _issues_from(exc, data, lines)) from None


def load_policy(path: str | os.PathLike[str], *, env: Mapping[str, str] | None = None) -> Policy:
    """Read and validate one policy file. The feature name defaults to the file's stem."""
    file = Path(path)
    try:
        with file.open("rb") as handle:
            raw = handle.read(MAX_POLICY_BYTES + 1)
        if len(raw) > MAX_POLICY_BYTES:
            raise PolicyError(str(file), [PolicyIssue("", None, f"the policy is larger than "
                                                      f"{MAX_POLICY_BYTES} bytes")])
        text = raw.decode("utf-8")
    except OSError as exc:
        raise PolicyError(str(file), [PolicyIssue("", None, f"cannot read: {exc.strerror}")]) from None
    except UnicodeDecodeError:
        raise PolicyError(str(file), [PolicyIssue("", None, "not UTF-8 text")]) from None
    policy = parse_policy(text, source=str(file), env=env)
    if policy.feature is None:
        policy = policy.model_copy(update={"feature": file.stem})
    return policy


def policy_json_schema() -> dict[str, Any]:
    """The JSON Schema of a policy file, for editors (``cascade schema``)."""
    schema = Policy.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "cascade policy"
    return schema
