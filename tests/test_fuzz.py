"""Property-based fuzzing (issue 19 §4): arbitrary input to the policy loader, the request
validator, the replay readers and the answer normalisers gives a typed error or a valid
result, never an untyped exception, a hang (hypothesis deadline) or unbounded memory
(tracemalloc peak per example). Bounded example counts keep the file well under a minute."""

from __future__ import annotations

import json
import math
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from cascade import ReplayDataError, CascadeError, Policy, Request
from cascade._request import check_deadline, make_request
from cascade.policy import parse_policy
from cascade.providers._replay_data import ReplayTable, load_table
from verifiers import AnswerKind
from verifiers._normalise import normalise

T = TypeVar("T")
MEMORY_BOUND = 64 << 20
FUZZ = settings(max_examples=150, deadline=5000, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
FUZZ_TREES = settings(FUZZ, max_examples=80)  # each example builds and validates a policy

# every code point, lone surrogates included (hypothesis leaves them out by default)
ANY_CHAR = st.characters(codec=None, categories=None)
ANY_TEXT = st.text(ANY_CHAR, max_size=200)
SCALARS = (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True)
           | st.text(max_size=30) | st.sampled_from(["${HOME}", "${NOPE_UNSET}", "$$", "replay", "openai",
                                                       "agreement", "code", "never", ".inf", "-1"]))
TREES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4)
                     | st.dictionaries(st.text(max_size=12) | st.sampled_from(
                         ["tiers", "name", "model", "models", "provider", "kind", "estimator",
                          "threshold", "price", "timeout_s", "routing", "router", "data",
                          "artifact", "sha256", "deadline_s", "defaults", "feature"]), inner, max_size=5),
                     max_leaves=30)


def bounded(call: Callable[[], T]) -> T:
    """Run ``call`` with its peak traced memory bounded."""
    tracemalloc.start()
    try:
        return call()
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert peak < MEMORY_BOUND, f"peak {peak} bytes"


def typed(call: Callable[[], T]) -> T | CascadeError:
    """The result, or the library's typed error; anything else fails the test."""
    try:
        return bounded(call)
    except CascadeError as exc:
        return exc


# --- the policy loader --------------------------------------------------------------------------


@FUZZ
@given(ANY_TEXT)
@example("a: &a [*a]\n")
@example("[" * 1000)
@example("x: !!python/object/apply:os.system ['echo pwned']\n")
@example("tiers: [{name: a, model: m, provider: {kind: replay, data: x}, timeout_s: .nan}]\n")
def test_policy_text(text: str) -> None:
    out = typed(lambda: parse_policy(text, env={}))
    assert isinstance(out, Policy | CascadeError)


@FUZZ_TREES
@given(TREES)
def test_policy_trees(tree: object) -> None:
    text = yaml.safe_dump(tree, allow_unicode=True)
    out = typed(lambda: parse_policy(text, env={"HOME": "/h"}))
    assert isinstance(out, Policy | CascadeError)


TIER_VALUES = st.fixed_dictionaries({"name": SCALARS, "model": SCALARS}, optional={
    "provider": st.fixed_dictionaries({"kind": st.sampled_from(["replay", "openai", "llama_cpp", "x"])},
                                      optional={"data": SCALARS, "base_url": SCALARS, "model_path": SCALARS}),
    "threshold": SCALARS, "timeout_s": SCALARS, "max_tokens": SCALARS, "models": TREES,
    "estimator": st.fixed_dictionaries({"kind": st.sampled_from(["logprob", "vote", "agreement", "verifier",
                                                                 "self_rating", "combine"])},
                                       optional={"answer": SCALARS, "samples": SCALARS, "artifact": SCALARS,
                                                 "sha256": SCALARS, "run_tests": SCALARS}),
    "price": st.dictionaries(st.sampled_from(["input_per_1m", "output_per_1m"]), SCALARS),
})


@FUZZ_TREES
@given(st.lists(TIER_VALUES, min_size=1, max_size=3), st.dictionaries(
    st.sampled_from(["deadline_s", "feature", "defaults", "routing"]), TREES, max_size=2))
def test_policy_shaped_trees(tiers: list[dict[str, object]], top: dict[str, object]) -> None:
    text = yaml.safe_dump({"tiers": tiers, **top}, allow_unicode=True)
    out = typed(lambda: parse_policy(text, env={}))
    if isinstance(out, Policy):  # a valid policy holds only finite numbers where it says so
        for tier in out.tiers:
            assert math.isfinite(tier.price.input_per_1m) and math.isfinite(tier.price.output_per_1m)
            assert tier.timeout_s is None or math.isfinite(tier.timeout_s)


# --- the request validator ----------------------------------------------------------------------

OBJECTS = st.recursive(
    SCALARS | ANY_TEXT | st.binary(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from(["role", "content", "x"]) | ANY_TEXT, inner, max_size=3)
    | st.builds(lambda r, c: {"role": r, "content": c},
                st.sampled_from(["user", "system", "assistant", "tool", ""]) | inner, inner),
    max_leaves=12)


@FUZZ
@given(OBJECTS, OBJECTS | st.dictionaries(ANY_TEXT, ANY_TEXT, max_size=3))
@example("\udcff", None)
@example(b"\xff\xfe", None)
@example([{"role": "user", "content": "hi"}], {"k": "\udcff"})
def test_requests(prompt: object, metadata: object) -> None:
    out = typed(lambda: make_request(prompt, "f", metadata))  # type: ignore[arg-type]
    if isinstance(out, Request):
        for message in out.messages:
            message.content.encode("utf-8")  # valid text only
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in out.metadata.items())


@FUZZ
@given(OBJECTS | st.floats() | st.integers(min_value=-(10**400), max_value=10**400))
def test_deadlines(value: object) -> None:
    out = typed(lambda: check_deadline(value))
    assert out is None or isinstance(out, CascadeError) or (math.isfinite(out) and out > 0)


# --- the replay readers (read only: cascade/providers/_replay_data.py) --------------------------

ROUTERBENCH_HEADER = "sample_id,prompt,eval_name,m,m|model_response,m|total_cost"
ROUTELLM_HEADER = "prompt,m,m_response"
CELLS = st.text(ANY_CHAR.filter(lambda c: c not in "\x00"), max_size=30) | st.sampled_from(
    ["0", "1", "True", "false", "nan", "inf", "-1", "1e309", "['a', 'b']", "[1, 2]", "\"", "\n"])
MOT_VALUES = (st.none() | st.booleans() | st.integers(min_value=-(10**30), max_value=10**30)
              | st.floats() | st.text(max_size=20)
              | st.lists(st.none() | st.text(max_size=10) | st.integers(), max_size=4))


def load(tmp_path: Path, name: str, data: bytes) -> ReplayTable | CascadeError:
    path = tmp_path / name
    path.write_bytes(data)
    out = typed(lambda: load_table(path))
    assert isinstance(out, ReplayTable | CascadeError)
    return out


@FUZZ
@given(st.binary(max_size=400), st.sampled_from(["x.csv", "x.json"]))
def test_replay_bytes(tmp_path: Path, data: bytes, name: str) -> None:
    load(tmp_path, name, data)


@FUZZ
@given(st.sampled_from([ROUTERBENCH_HEADER, ROUTELLM_HEADER]),
       st.lists(st.lists(CELLS, min_size=0, max_size=7), max_size=4))
def test_replay_csv(tmp_path: Path, header: str, rows: list[list[str]]) -> None:
    body = "\n".join(",".join(json.dumps(c) if any(x in c for x in ",\"\n") else c for c in row)
                     for row in rows)
    load(tmp_path, "x.csv", (header + "\n" + body).encode("utf-8", "surrogatepass"))


@FUZZ
@given(st.lists(st.dictionaries(st.sampled_from(["question", "answer", "generated", "results", "x"]),
                                MOT_VALUES, max_size=5) | MOT_VALUES, max_size=4))
def test_replay_mot(tmp_path: Path, records: list[object]) -> None:
    load(tmp_path, "x.json", json.dumps(records).encode())


@pytest.mark.parametrize("data", [b"[" * 100_000, b'[{"question": ' + b"9" * 5000 + b"}]"])
def test_replay_json_that_escaped_once_is_a_typed_error(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "x.json"
    path.write_bytes(data)
    with pytest.raises(ReplayDataError, match="not usable JSON"):
        load_table(path)


# --- the answer normalisers ---------------------------------------------------------------------

NUMBERISH = st.from_regex(r"-?\$?\d{1,500}(,\d{3})*(\.\d{1,50})?( ?/ ?\d{1,400})?", fullmatch=True)


@FUZZ
@given(ANY_TEXT | NUMBERISH | st.builds(lambda a, b: f"{a} #### {b}", ANY_TEXT, NUMBERISH),
       st.sampled_from(list(AnswerKind)))
@example("1" * 400 + ".5", AnswerKind.NUMBER)
@example("the answer is " + "9" * 5000, AnswerKind.NUMBER)
@example("x = " + "1 + " * 3000 + "1", AnswerKind.CODE)
@example("```python\n" + "(" * 300 + ")" * 300 + "\n```", AnswerKind.CODE)
def test_normalise(text: str, kind: AnswerKind) -> None:
    out = bounded(lambda: normalise(text, kind))
    assert out is None or (isinstance(out, str) and out)
