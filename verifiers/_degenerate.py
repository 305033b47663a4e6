"""Cheap built-in checks for answers that no confidence should vouch for.

Small models fail in a few recognisable ways that token logprobs (and often a judge) score
*high*: they repeat the question back, loop on a phrase, answer nothing, or stop inside a code
block. Each check is a pure function of the question and the answer (microseconds, no model).

The rule (documented in docs/default-policy.md and docs/policy.md): when any check fires, the
estimator's confidence is set to 0 — the answer is never accepted by a threshold — and the
original confidence and the checks that fired are kept in ``Estimate.details``.
"""

from __future__ import annotations

import enum
import functools
import re
from dataclasses import replace
from types import MappingProxyType

from verifiers._types import Estimate, EstimateContext

__all__ = ["Degeneracy", "find_degeneracy", "guard_estimate"]


class Degeneracy(str, enum.Enum):
    EMPTY = "empty"  # no text beyond whitespace and punctuation
    ECHO = "echo"  # the answer only restates the question (adds no word of its own)
    LOOP = "loop"  # a phrase repeated over and over
    UNCLOSED_CODE = "unclosed_code"  # a ``` code block opened and never closed


_TOKEN = re.compile(r"\w+|[+\-*/=^%]")
_WORD = re.compile(r"\w+")
_FENCE = re.compile(r"^\s*(```|~~~)", re.MULTILINE)
# words that restating a question may add without answering it
_FILLER = frozenset((
    'a', 'an', 'the', 'is', 'are', 'was', 'were', 'be', 'been', 'am', 'of', 'to', 'in', 'on',
    'at', 'for', 'by', 'with', 'and', 'or', 'it', 'its', 'this', 'that', 'these', 'those',
    'what', 'which', 'who', 'whom', 'whose', 'when', 'where', 'why', 'how', 'answer',
    'answers', 'question', 'result', 'equals', 'equal', 'so', 'then', 'here', 'there', 'i',
    'we', 'you', 'he', 'she', 'they', 'me', 'my', 'your', 'our', 'their', 'do', 'does', 'did',
    'can', 'could', 'will', 'would', 'should', 'shall', 'may', 'might', 'must', 'please',
    'let', 'lets', "let's", 'sure', 'well', 'ok', 'okay', 'yes', 'no', 'not', 'just', 'about',
    'as', 'from', 'into', 'than', 'if', 'also', 'very',
))
_YES_NO = frozenset((
    'is', 'are', 'was', 'were', 'do', 'does', 'did', 'can', 'could', 'will', 'would', 'should',
    'shall', 'has', 'have', 'had', 'may', 'might', 'must', 'am',
))
_ECHO_COVERAGE = 0.6  # share of the question's own words an echo repeats
_LOOP_MIN_WORDS = 15
_LOOP_DISTINCT = 0.5  # below this share of distinct word trigrams: a loop


def _tokens(text: str) -> list[str]:
    return [t.lower() for t in _TOKEN.findall(text)]


@functools.lru_cache(maxsize=256)
def _asked(question: str) -> frozenset[str] | None:
    """The question's own (non-filler) tokens; None for a yes/no or empty question. Cached:
    every judged tier of a run asks it of the same question (few-shot prompts are long)."""
    asked = _tokens(question)
    if not asked or asked[0] in _YES_NO:
        return None
    return frozenset(asked) - _FILLER


def _is_echo(question: str, answer: str) -> bool:
    """Every token of the answer that is not filler occurs in the question, and they cover most
    of the question's (so 'Paris' to 'What is the capital of France?' is not an echo, nor
    'Paris' picked from options listed in the question, but 'The answer is 17+25.' to 'What is
    17 + 25?' is). Yes/no questions are exempt: restating them is an answer."""
    asked_content = _asked(question)
    if asked_content is None:
        return False
    content = set(_tokens(answer)) - _FILLER
    return (bool(content) and content <= asked_content
            and len(content) >= _ECHO_COVERAGE * len(asked_content))


def _is_loop(answer: str) -> bool:
    words = [w.lower() for w in _WORD.findall(answer)]
    if len(words) < _LOOP_MIN_WORDS:
        return False
    trigrams = list(zip(words, words[1:], words[2:]))
    return len(set(trigrams)) / len(trigrams) < _LOOP_DISTINCT


def find_degeneracy(question: str, answer: str) -> tuple[Degeneracy, ...]:
    """The checks ``answer`` fails, in a fixed order (empty tuple: none)."""
    if not _WORD.search(answer):
        return (Degeneracy.EMPTY,)
    found = []
    if _is_echo(question, answer):
        found.append(Degeneracy.ECHO)
    if _is_loop(answer):
        found.append(Degeneracy.LOOP)
    if len(_FENCE.findall(answer)) % 2 == 1:
        found.append(Degeneracy.UNCLOSED_CODE)
    return tuple(found)


def _question(ctx: EstimateContext) -> str:
    return next((t.content for t in reversed(ctx.query) if t.role == "user"), "")


def guard_estimate(estimate: Estimate, ctx: EstimateContext) -> Estimate:
    """``estimate`` as is when the answer passes every check; else with confidence 0 and
    ``details['degenerate']`` listing the checks that fired (the original confidence in
    ``details['confidence_before_checks']``)."""
    found = find_degeneracy(_question(ctx), ctx.candidate.text)
    if not found:
        return estimate
    details = {**estimate.details, "degenerate": [f.value for f in found],
               "confidence_before_checks": estimate.confidence}
    return replace(estimate, confidence=0.0, details=MappingProxyType(details))
