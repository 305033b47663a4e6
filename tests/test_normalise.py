"""Answer normalisation tables, per task type."""

from __future__ import annotations

import numpy as np
import pytest

from verifiers import AnswerKind, group_answers, normalise

N, C, E, K, T = AnswerKind.NUMBER, AnswerKind.CHOICE, AnswerKind.EXACT, AnswerKind.CODE, AnswerKind.TEXT


@pytest.mark.parametrize(("text", "expected"), [
    ("#### 42", "42"),
    ("She makes 9 * 2 = 18 dollars.\n#### 18", "18"),
    ("The answer is 1,000.", "1000"),
    ("The answer is $3.50", "3.5"),
    ("\\boxed{7}", "7"),
    ("so x = 1/2", "0.5"),
    ("It drops to -4 degrees", "-4"),
    ("12 apples and 5 pears, 17 in all", "17"),
    ("Answer: 2.0", "2"),
    ("no digits here", None),
    ("#### 1,234,567", "1234567"),
])
def test_number(text: str, expected: str | None) -> None:
    assert normalise(text, N) == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("The answer is (B).", "B"),
    ("Answer: c", "C"),
    ("**D**", "D"),
    ("I choose option E because...", "E"),
    ("A", "A"),
    ("(C)", "C"),
    ("B) Paris", "B"),
    ("A cat is not a dog, so the answer is D", "D"),
    ("After reading a passage, I pick B", "B"),
    ("nothing to choose", None),
    ("The correct answer is A.", "A"),
])
def test_choice(text: str, expected: str | None) -> None:
    assert normalise(text, C) == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("The answer is Paris.", "paris"),
    ("  PARIS ", "paris"),
    ("Explain: today is May 1.\nA: 05/01/2021", "05/01/2021"),
    ("So the answer is   New   York!", "new york"),
    ("Final answer: 42", "42"),
    ("...", None),
    ("\"yes\"", "yes"),
    ("answer: Blue whale", "blue whale"),
    ("Jupiter", "jupiter"),
    ("the answer is: 10 cm", "10 cm"),
])
def test_exact(text: str, expected: str | None) -> None:
    assert normalise(text, E) == expected


def test_code_drops_comments_blank_lines_and_fences() -> None:
    a = "Here you go:\n```python\ndef f(x):\n    # add one\n    return x + 1\n\n```\nDone."
    b = "def f(x):   \n\n    return x + 1  # increment\n"
    assert normalise(a, K) == normalise(b, K) == "def v0(v1):\n    return v1 + 1"
    assert normalise("def g(): pass", K) != normalise(b, K)
    assert normalise("# only a comment", K) is None


def test_code_equal_up_to_names_and_docstrings_but_not_builtins() -> None:
    a = 'def total(xs):\n    """Sum."""\n    s = 0\n    for x in xs:\n        s += x\n    return s'
    b = "def add_all(items):\n    acc = 0\n    for it in items:\n        acc += it\n    return acc"
    assert normalise(a, K) == normalise(b, K)
    assert normalise("def f(x):\n    return len(x)", K) != normalise("def f(x):\n    return sorted(x)", K)
    assert normalise("def f(x):\n    return x - 1", K) != normalise(b, K)
    assert normalise("not python (", K) == "not python ("  # falls back to the text rules


def test_group_answers_by_normal_form_and_by_embedding() -> None:
    assert group_answers(["#### 4", "it is 4", "5", "none"], N) == [0, 0, 1, None]

    def embed(texts: list[str]) -> np.ndarray:  # a stand-in encoder: "capital of france" ~ "paris"
        table = {"paris": [1.0, 0.0], "it is paris": [0.98, 0.2], "london": [0.0, 1.0]}
        return np.array([table[t.lower()] for t in texts])

    ids = group_answers(["Paris", "It is Paris", "London"], T, embed=embed, similarity=0.9)
    assert ids[0] == ids[1] != ids[2]
    assert group_answers(["Paris", "It is Paris"], T) == [0, 1]  # without an encoder: strings
