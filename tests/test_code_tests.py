"""Code answers compared by running the request's shared tests (opt-in)."""

from __future__ import annotations

import json

import anyio
import pytest

from cascade import PolicyError
from cascade.policy import parse_policy
from verifiers import AgreementEstimator, AnswerKind, Candidate, EstimateContext, MissingInputError, Peer
from verifiers._code_tests import agreement_by_tests, run_tests

TESTS = ["assert add(1, 2) == 3", "assert add(0, 0) == 0", "assert add(-1, 1) == 0"]
GOOD = "def add(a, b):\n    return a + b\n"
SAME_BEHAVIOUR = "Here:\n```python\ndef add(x, y):\n    total = x\n    total += y\n    return total\n```"
WRONG = "def add(a, b):\n    return a - b\n"  # passes only add(0, 0)


def test_each_test_passes_or_fails_on_its_own() -> None:
    assert run_tests(GOOD, TESTS) == (True, True, True)
    assert run_tests(WRONG, TESTS) == (False, True, False)
    assert run_tests("def add(a, b) return", TESTS) == (False, False, False)  # does not parse


def test_runaway_code_is_stopped_and_counts_as_failing() -> None:
    assert run_tests("while True:\n    pass\n", TESTS, timeout_s=1) == (False, False, False)
    assert run_tests("x = bytearray(4 << 30)\n" + GOOD, TESTS, memory_bytes=256 << 20) == (False,) * 3


def test_the_answer_runs_without_our_environment_or_directory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CASCADE_SECRET_FOR_TEST", "s3cret")
    probe = ("import os\ndef env():\n    return dict(os.environ)\n"
             "def here():\n    return os.getcwd(), os.listdir('.')\n")
    leak = ["assert 'CASCADE_SECRET_FOR_TEST' not in env()", "assert here() == ('/tmp', [])"]
    assert run_tests(probe, leak) == (True, True)


def test_answers_agree_when_they_pass_the_same_tests() -> None:
    matrix = agreement_by_tests([GOOD, SAME_BEHAVIOUR, WRONG, "nonsense(", None], TESTS)
    assert matrix[0, 1] == 1 and matrix[1, 0] == 1  # different text, same behaviour
    assert matrix[0, 2] == 0
    assert matrix[0, 3] == -1 and matrix[3, 3] == -1  # passes nothing: no answer
    assert matrix[4, 0] == -1


def test_estimator_uses_the_requests_tests_only_when_asked() -> None:
    peers = (Peer("b", SAME_BEHAVIOUR), Peer("c", WRONG))
    ctx = EstimateContext((), Candidate(GOOD, "a"), peers=peers, metadata={"tests": json.dumps(TESTS)})
    by_tests = anyio.run(AgreementEstimator(AnswerKind.CODE, run_tests=True).estimate, ctx)
    assert by_tests.confidence == pytest.approx(2 / 3)
    assert by_tests.details["compared_by"] == "tests" and by_tests.details["agreed"] == ["b"]
    by_text = anyio.run(AgreementEstimator(AnswerKind.CODE).estimate, ctx)  # default: no code is run
    assert by_text.details["compared_by"] == "answers"
    assert by_text.confidence == pytest.approx(1 / 3)  # the texts differ after canonicalisation
    bad = EstimateContext((), Candidate(GOOD, "a"), peers=peers, metadata={"tests": "assert x"})
    with pytest.raises(MissingInputError, match="JSON list"):
        anyio.run(AgreementEstimator(AnswerKind.CODE, run_tests=True).estimate, bad)


def test_run_tests_needs_code_answers() -> None:
    with pytest.raises(ValueError, match="code"):
        AgreementEstimator(AnswerKind.CHOICE, run_tests=True)
    text = ("tiers:\n  - name: a\n    models: [x, y]\n    provider: {kind: replay, data: d.csv}\n"
            "    estimator: {kind: agreement, answer: choice, run_tests: true}\n    threshold: 0.5\n")
    with pytest.raises(PolicyError, match="run_tests needs `answer: code`"):
        parse_policy(text)
