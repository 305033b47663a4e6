"""Answer extraction and normalisation by task type, so that equal answers compare equal.

| kind | extracted from the text | normalised to |
|---|---|---|
| ``number`` | ``#### 42``, ``\\boxed{42}``, "the answer is 42", else the last number | a canonical decimal: ``1,000`` → ``1000``, ``3.50`` → ``3.5``, ``1/2`` → ``0.5``, ``$-4`` → ``-4`` |
| ``choice`` | "answer is (B)", "Answer: b", "**C**", "option D", a line that is only a letter, else a lone letter | the upper-case letter (A–E by default) |
| ``exact`` | the final "Answer:" / "A:" line when there is one, else the whole text | case-folded, "the answer is" dropped, whitespace collapsed, end punctuation stripped |
| ``code`` | the first fenced code block, else the whole text | Python that parses: re-printed from its syntax tree without docstrings, local names renamed in order of first use (so renamed variables still compare equal); anything else: comments, blank lines and trailing spaces removed |
| ``text`` | the whole text | case-folded, whitespace collapsed (free text is compared by embeddings: ``group_answers``) |

``normalise`` returns None when no answer can be extracted (e.g. no number at all).
"""

from __future__ import annotations

import ast
import enum
import re
from collections.abc import Callable, Sequence
from fractions import Fraction

import numpy as np

Embed = Callable[[Sequence[str]], np.ndarray]


class AnswerKind(str, enum.Enum):
    NUMBER = "number"
    CHOICE = "choice"
    EXACT = "exact"
    CODE = "code"
    TEXT = "text"


_NUMBER = r"-?\$?\s?\d[\d,]*(?:\.\d+)?(?:\s*/\s*\d+)?"
_NUMBER_MARKERS = (
    re.compile(r"####\s*(" + _NUMBER + ")"),
    re.compile(r"\\boxed\{\s*(" + _NUMBER + r")\s*\}"),
    re.compile(r"answer\s*(?:is|:|=)?\s*[:=]?\s*(" + _NUMBER + ")", re.IGNORECASE),
)
_ANY_NUMBER = re.compile(_NUMBER)


def _canonical_number(raw: str) -> str | None:
    text = raw.replace("$", "").replace(",", "").replace(" ", "")
    try:
        value = Fraction(text) if "/" in text else Fraction(text)
    except (ValueError, ZeroDivisionError):
        return None
    if value.denominator == 1:
        return str(value.numerator)
    try:
        decimal = f"{float(value):.10f}".rstrip("0").rstrip(".")
    except OverflowError:  # beyond float range: the exact fraction is canonical too
        return f"{value.numerator}/{value.denominator}"
    return decimal


def _number(text: str) -> str | None:
    for pattern in _NUMBER_MARKERS:
        found = pattern.findall(text)
        if found:
            return _canonical_number(found[-1])
    found = _ANY_NUMBER.findall(text)
    return _canonical_number(found[-1]) if found else None


def _choice_patterns(letters: str) -> tuple[re.Pattern[str], ...]:
    set_ = f"[{letters}{letters.lower()}]"
    return (
        re.compile(rf"answer\s*(?:is|:)?\s*(?:option\s*)?[\(\[\*]*\s*({set_})\b[\)\]\*]*", re.IGNORECASE),
        re.compile(rf"\*\*\s*\(?({set_})\)?\s*\*\*"),
        re.compile(rf"\b(?:option|choice)\s*\(?({set_})\b\)?", re.IGNORECASE),
        re.compile(rf"^\s*\(?({set_})\)?\s*[\.\):]?\s*$", re.MULTILINE),
        re.compile(rf"^\s*\(?({set_})[\)\.:]\s", re.MULTILINE),
        re.compile(rf"\(({set_})\)"),
    )


_CHOICES = _choice_patterns("ABCDE")


def _choice(text: str, letters: str = "ABCDE") -> str | None:
    patterns = _CHOICES if letters == "ABCDE" else _choice_patterns(letters)
    for pattern in patterns:
        found = pattern.findall(text)
        if found:
            return found[-1 if pattern is patterns[0] else 0].upper()
    lone = re.findall(rf"\b([{letters}])\b", text)  # upper-case only: avoids the article "a"
    return lone[-1] if lone else None


_FINAL_LINE = re.compile(r"^\s*(?:final answer|answer|a)\s*:\s*(.+?)\s*$", re.IGNORECASE | re.MULTILINE)
_LEAD = re.compile(r"^(?:so\s+)?(?:the\s+)?(?:final\s+)?answer\s+is\s*:?\s*", re.IGNORECASE)


def _exact(text: str) -> str | None:
    found = _FINAL_LINE.findall(text)
    value = found[-1] if found else text
    value = _LEAD.sub("", " ".join(value.split()).casefold())
    value = value.strip(" \t\n.,;:!?\"'`*")
    return value or None


_FENCE = re.compile(r"```[\w+-]*\n(.*?)```", re.DOTALL)


class _Rename(ast.NodeTransformer):
    """Functions, arguments and assigned names -> v0, v1, … in order of first use; names of
    builtins and imported modules stay (``len`` must not equal ``sorted``)."""

    def __init__(self) -> None:
        self.names: dict[str, str] = {}

    def _new(self, name: str) -> str:
        return self.names.setdefault(name, f"v{len(self.names)}")

    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.AST:
        node.name = self._new(node.name)
        body = node.body
        if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                and isinstance(body[0].value.value, str):
            node.body = body[1:] or [ast.Pass()]  # the docstring
        self.generic_visit(node)
        return node

    def visit_arg(self, node: ast.arg) -> ast.AST:
        node.arg = self._new(node.arg)
        node.annotation = None
        return node

    def visit_Name(self, node: ast.Name) -> ast.AST:
        if isinstance(node.ctx, ast.Store) or node.id in self.names:
            node.id = self._new(node.id)
        return node


def _canonical_python(code: str) -> str | None:
    try:
        tree = ast.parse(code)
        return ast.unparse(_Rename().visit(tree))
    except (SyntaxError, ValueError, RecursionError):  # deep trees recurse in visit / unparse too
        return None


def _code(text: str) -> str | None:
    found = _FENCE.search(text)
    body = found.group(1) if found else text
    canonical = _canonical_python(body)
    if canonical is not None and canonical.strip():
        return canonical
    lines = []
    for line in body.splitlines():
        stripped = re.sub(r"(^|\s)#.*$", "", line).rstrip()
        if stripped.strip():
            lines.append(stripped)
    return "\n".join(lines) or None


def normalise(text: str, kind: AnswerKind, *, letters: str = "ABCDE") -> str | None:
    """The comparable form of the answer in ``text`` (None: no answer found)."""
    if kind is AnswerKind.NUMBER:
        return _number(text)
    if kind is AnswerKind.CHOICE:
        return _choice(text, letters)
    if kind is AnswerKind.EXACT:
        return _exact(text)
    if kind is AnswerKind.CODE:
        return _code(text)
    value = " ".join(text.split()).casefold()
    return value or None


def group_answers(texts: Sequence[str], kind: AnswerKind, *, embed: Embed | None = None,
                  similarity: float = 0.85) -> list[int | None]:
    """A cluster id per answer (None where no answer could be extracted). Free text with an
    encoder: greedy clustering, each answer joins the first cluster whose first member is at
    least ``similarity`` cosine-similar; everything else: equal normalised forms."""
    keys = [normalise(t, kind) for t in texts]
    if kind is AnswerKind.TEXT and embed is not None:
        present = [i for i, k in enumerate(keys) if k is not None]
        ids: list[int | None] = [None] * len(texts)
        if not present:
            return ids
        vectors = np.asarray(embed([texts[i] for i in present]), dtype=float)
        vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        heads: list[int] = []
        for row, i in enumerate(present):
            match = next((c for c, h in enumerate(heads) if float(vectors[row] @ vectors[h]) >= similarity), None)
            if match is None:
                heads.append(row)
                match = len(heads) - 1
            ids[i] = match
        return ids
    seen: dict[str, int] = {}
    return [None if k is None else seen.setdefault(k, len(seen)) for k in keys]
