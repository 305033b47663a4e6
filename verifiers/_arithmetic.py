"""Does an answer's own worked arithmetic hold? ("16 - 3 = 13 … 9 * 2 = 20" does not.)

A model that writes out its working states equations such as ``9 * $2 = $18`` or
``22 + 4 x 12 = 22 + 48 = 70``. When one of them is false, the answer built on it is usually
wrong (on RouteLLM's GSM8K file, Mixtral's answers with a false step are right 31 % of the
time, the others 68 %). ``check_arithmetic`` finds chains ``a = b = c`` of plain arithmetic on
each line, evaluates every part exactly and reports the links that disagree. Pure logic: no
I/O, and nothing the model wrote is executed — parts are parsed with ``ast`` and only numbers,
``+ - * /``, unary minus and brackets are evaluated (anything else breaks the chain).

Written text is ambiguous, so a link counts as false only when **no** reading makes it true:

- standard precedence, and ``a/b`` written without spaces read as one fraction
  (``12.8 / 2/5`` = 32);
- rounding: the right-hand side may round the left to its shown decimals (``10/3 = 3.33``), to
  a whole number when it is one (``73/8 = 9``: nine boxes), or within 1 % (``4500 / 3.01 = 1500``);
- a part with ``%``, a letter, a unit or a date is not arithmetic: it ends the chain, it is never
  judged. ``x``, ``×`` and ``·`` between numbers are multiplication, ``÷`` division; ``$``,
  ``€``, ``£`` and thousands commas (``1,350``) are dropped.

A link needs an operator on at least one side (``5 = 6`` alone is not judged: a label, a
mapping or a typo, not a computation).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import TypeVar

import anyio

from verifiers._types import Capability, Estimate, EstimateContext

__all__ = ["ArithmeticCheck", "ArithmeticEstimator", "check_arithmetic"]

_MAX_PART = 120  # characters in one part; longer runs are not working shown to a reader
_MAX_MAGNITUDE = Fraction(10) ** 18
_TIMES = re.compile(r"(?<=[\d)])\s*[x×·]\s*(?=[\d($(])")
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
_CURRENCY = re.compile(r"[$€£]")
_RUN = re.compile(r"[\d.()+\-*/ \t=]*=[\d.()+\-*/ \t=]*")
_TIGHT_FRACTION = re.compile(r"(?<![\d.)])(\d+(?:\.\d+)?/\d+(?:\.\d+)?)(?![\d.(])")
_OPERATOR = re.compile(r"(?<=[\d)\s])[-+*/](?=[\s\d(.-])")


@dataclass(frozen=True, slots=True)
class ArithmeticCheck:
    """``checked``: links judged; ``false``: the links no reading makes true (as written,
    after the cleaning above). ``holds``: no false link."""

    checked: int
    false: tuple[str, ...]

    @property
    def holds(self) -> bool:
        return not self.false


def _evaluate(node: ast.AST) -> Fraction:
    if isinstance(node, ast.Expression):
        return _evaluate(node.body)
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return Fraction(str(node.value))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        value = _evaluate(node.operand)
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub, ast.Mult, ast.Div)):
        left, right = _evaluate(node.left), _evaluate(node.right)
        if isinstance(node.op, ast.Add):
            value = left + right
        elif isinstance(node.op, ast.Sub):
            value = left - right
        elif isinstance(node.op, ast.Mult):
            value = left * right
        else:
            value = left / right  # ZeroDivisionError: not arithmetic we can judge
        if abs(value) > _MAX_MAGNITUDE:
            raise OverflowError("too large to be working shown to a reader")
        return value
    raise ValueError("not plain arithmetic")


def _readings(part: str) -> list[Fraction]:
    """Every value ``part`` can be read as (empty: not arithmetic)."""
    texts = [part]
    texts += [tight for text in texts if (tight := _TIGHT_FRACTION.sub(r"(\1)", text)) != text]
    values = []
    for text in texts:
        try:
            values.append(_evaluate(ast.parse(text.strip(), mode="eval")))
        except (SyntaxError, ValueError, ZeroDivisionError, OverflowError, RecursionError):
            continue
    return values


def _decimals(part: str) -> int:
    found = re.fullmatch(r"\s*\(?\s*-?\d+(?:\.(\d+))?\s*\)?\s*", part)
    return len(found.group(1) or "") if found else -1


def _agrees(left: Fraction, right: Fraction, right_text: str) -> bool:
    if left == right:
        return True
    places = _decimals(right_text)
    if places >= 0 and abs(left - right) <= Fraction(1, 2 * 10 ** places):
        return True  # rounded to the shown decimals (or to a whole number)
    if places == 0 and abs(left - right) < 1:
        return True  # rounded up or down to a whole number: 73 / 8 = 9 boxes
    return right != 0 and abs(left - right) <= abs(right) / 100


def _aside(text: str) -> str:
    """Without the brackets that open an aside the equation is in: "(2 * 3 * 4 = 24 …)"."""
    while text.startswith("(") and text.count("(") > text.count(")"):
        text = text[1:].lstrip()
    return text


def _start(part: str, *, line_start: bool, after_word: bool) -> str | None:
    """The chain's first part as it can be judged, or None: a part that starts with an operator
    or a bracket's end continues what came before it ("2x + 30", "20% * 10") and a lone number
    right after a word ends a phrase ("10% of 700 = 0.1 * 700"); a part glued to a name or a
    power ("6^2 = 4 + 16 + 36": the run starts after ``^``) or closing a bracket opened before
    it is a fragment of a term; a dash opening the line is a list's bullet. Else the part, or its longest tail with an operator that parses ("Step 1.
    5 + 3")."""
    text = part.strip()
    if text.count(")") > text.count("("):
        return None  # closes a bracket opened before the run: "C(5, 0) * 0 * 1"
    text = _aside(text)
    bullet = re.match(r"-\s+", text)
    if bullet and line_start:
        text = text[bullet.end():]
    elif text[:1] in ("+", "*", "/", ")") or bullet:
        return None
    if not _OPERATOR.search(text):
        return None if after_word else text
    if _readings(text):
        return text
    for space in re.finditer(r"\s+", text):
        tail = _aside(text[space.end():])
        if tail[:1] not in ("+", "-", "*", "/", ")") and _OPERATOR.search(tail) and _readings(tail):
            return tail
    return None


def _link_holds(left: str, right: str) -> bool | None:
    """None when the link is not judged (a side is not arithmetic, or neither computes)."""
    if not (_OPERATOR.search(left) or _OPERATOR.search(right)):
        return None
    lefts, rights = _readings(left), _readings(right)
    if not lefts or not rights:
        return None
    return any(_agrees(a, b, right) or _agrees(b, a, left) for a in lefts for b in rights)


def _clean(line: str) -> str:
    line = _CURRENCY.sub("", line).replace("÷", "/").replace("\\*", "*")  # markdown's \*
    line = _THOUSANDS.sub("", line)
    return _TIMES.sub(" * ", line)


def check_arithmetic(text: str) -> ArithmeticCheck:
    """Judge every chain of plain arithmetic in ``text`` (see the module's docstring)."""
    checked, false = 0, []
    for line in text.splitlines():
        if "=" not in line:
            continue
        line = _clean(line)
        for run in _RUN.finditer(line):
            if "==" in run.group(0):
                continue  # a comparison, not a step of working
            before = line[:run.start()].rstrip()
            parts = run.group(0).split("=")
            while parts and not parts[0].strip():  # "x = 10 = 100 - 9": starts after a name
                parts = parts[1:]
                before = "x"
            if not run.group(0)[-1].isspace() and line[run.end():run.end() + 1].isalpha():  # "= 100 - 9X": a term, not a number
                parts = parts[:-1]
            if len(parts) < 2 or any(len(p) > _MAX_PART for p in parts):
                continue
            glued = not run.group(0)[:1].isspace() and (line[:run.start()][-1:].isalnum()
                                                          or line[:run.start()][-1:] in ("^", "_", ")", "]"))
            first = None if glued else _start(parts[0], line_start=not before, after_word=bool(
                before[-1:].isalpha() or before[-1:] == "%"))
            if first is None:
                parts = parts[1:]  # the chain is judged from its second part on
            else:
                parts[0] = first
            for left, right in zip(parts, parts[1:]):
                verdict = _link_holds(left, right)
                if verdict is None:
                    continue
                checked += 1
                if not verdict:
                    false.append(f"{left.strip()} = {right.strip().rstrip('.')}")
    return ArithmeticCheck(checked, tuple(false))


INLINE_CHARS = 1000  # ≈ 1 ms of judging dense working on this CPU; longer: a worker thread
_T = TypeVar("_T")


async def judged(judge: Callable[[str], _T], text: str) -> _T:
    """``judge(text)`` on the event loop when ``text`` is at most ``INLINE_CHARS`` long, else in
    a worker thread (a thread hop costs more than judging a short answer)."""
    if len(text) <= INLINE_CHARS:
        return judge(text)
    return await anyio.to_thread.run_sync(judge, text)


@dataclass(frozen=True, slots=True)
class ArithmeticEstimator:
    """Confidence 0 when the answer's own working has a false step, else 1 — a veto, meant as
    a member of ``combine`` with ``min`` (the other member's confidence, unless the working is
    false). ``details``: steps checked and the false ones."""

    @property
    def name(self) -> str:
        return "arithmetic"

    @property
    def requires(self) -> frozenset[Capability]:
        return frozenset()

    async def estimate(self, ctx: EstimateContext) -> Estimate:
        result = await judged(check_arithmetic, ctx.candidate.text)
        return Estimate(1.0 if result.holds else 0.0,
                        details={"checked": result.checked, "false_arithmetic": list(result.false)})
