"""Bad input that used to escape as a traceback, an untyped error or a hang (issue 19 §3):
each is now a typed error with a clear message."""

from __future__ import annotations

import time
import tracemalloc
from pathlib import Path

import anyio
import pytest
from scripted import Scripted
from typer.testing import CliRunner

from cascade import (
    Cascade,
    CascadeError,
    ConfigError,
    InvalidRequestError,
    PolicyError,
    Tier,
    VerifierArtifactError,
)
from cascade._request import make_request
from cascade.cli import app
from cascade.policy import load_policy, parse_policy
from cascade.policy._loader import MAX_POLICY_BYTES

FIXTURE = Path(__file__).parent / "fixtures" / "tiny_routerbench.csv"
TIER = f"  - {{name: a, model: cheap-model, provider: {{kind: replay, data: {FIXTURE}}}}}\n"
runner = CliRunner()


def engine() -> tuple[Cascade, Scripted]:
    provider = Scripted("fine")
    return Cascade([Tier("only", "m", provider)]), provider


# --- text that is not text ---------------------------------------------------------------------


@pytest.mark.parametrize("prompt", [
    "\udcff", "ok \udcff\udcfe", [{"role": "user", "content": "hi \ud800"}],
    [{"role": "system", "content": "\udcff"}, {"role": "user", "content": "fine"}],
])
def test_lone_surrogates_in_a_prompt_are_an_invalid_request(prompt: object) -> None:
    cascade, provider = engine()
    with pytest.raises(InvalidRequestError, match="not valid Unicode text.*lone surrogate"):
        anyio.run(lambda: cascade.run(prompt))  # type: ignore[arg-type]
    assert provider.calls == []


def test_surrogates_in_metadata_are_an_invalid_request() -> None:
    with pytest.raises(InvalidRequestError, match="metadata 'k' is not valid Unicode"):
        make_request("hi", "f", {"k": "\udcff"})
    with pytest.raises(InvalidRequestError, match="metadata key is not valid Unicode"):
        make_request("hi", "f", {"\udcff": "v"})


@pytest.mark.parametrize("prompt", [b"\xff\xfe", bytearray(b"hi"), memoryview(b"hi"),
                                    [b"\xff\xfe"], [{"role": "user", "content": b"hi"}]])
def test_bytes_as_a_prompt_say_bytes(prompt: object) -> None:
    with pytest.raises(InvalidRequestError, match="(bytes|bytearray|memoryview); decode it"):
        make_request(prompt, "f")  # type: ignore[arg-type]


def test_non_utf8_cli_argument_exits_2_with_a_clear_message(tmp_path: Path) -> None:
    policy = tmp_path / "p.yaml"
    policy.write_text("tiers:\n" + TIER)
    result = runner.invoke(app, ["run", "--policy", str(policy), "--no-check", "caf\udce9"])
    assert result.exit_code == 2, result.output
    assert "not valid Unicode text" in result.output and "Traceback" not in result.output


# --- deadlines ---------------------------------------------------------------------------------


@pytest.mark.parametrize("deadline", [float("nan"), float("inf"), -1.0, 0, -float("inf"),
                                      10**400, "5", True])
def test_a_deadline_that_is_not_a_positive_finite_number_is_an_invalid_request(deadline: object) -> None:
    cascade, provider = engine()
    with pytest.raises(InvalidRequestError, match="deadline_s"):
        anyio.run(lambda: cascade.run("hi", deadline_s=deadline))  # type: ignore[arg-type]
    assert provider.calls == []
    nan_default = Cascade([Tier("only", "m", provider)], deadline_s=float("nan"))
    with pytest.raises(InvalidRequestError, match="deadline_s"):
        anyio.run(lambda: nan_default.run("hi"))


# --- non-finite numbers in a policy ------------------------------------------------------------


@pytest.mark.parametrize(("text", "key", "line"), [
    (f"tiers:\n{TIER[:-2]}, price: {{input_per_1m: .inf}}}}\n", "tiers[0].price.input_per_1m", 2),
    (f"tiers:\n{TIER[:-2]}, timeout_s: .inf}}\n", "tiers[0].timeout_s", 2),
    (f"tiers:\n{TIER[:-2]}, timeout_s: .nan}}\n", "tiers[0].timeout_s", 2),
    (f"tiers:\n{TIER[:-2]}, threshold: .nan, estimator: {{kind: logprob}}}}\n", "tiers[0].threshold", 2),
    (f"deadline_s: .inf\ntiers:\n{TIER}", "deadline_s", 1),
    (f"defaults:\n  timeout_s: .inf\ntiers:\n{TIER}", "defaults.timeout_s", 2),
    (f"tiers:\n{TIER[:-2]}, estimator: {{kind: agreement, weights: {{m: .nan}}}}}}\n",
     "tiers[0].estimator.weights.m", 2),
])
def test_inf_and_nan_in_a_policy_are_policy_errors_with_key_and_line(text: str, key: str, line: int) -> None:
    with pytest.raises(PolicyError) as caught:
        parse_policy(text)
    assert any(i.key_path == key and i.line == line for i in caught.value.issues), caught.value


def test_a_router_threshold_of_inf_still_means_never_start_there_but_nan_is_refused() -> None:
    router = ("routing:\n  mode: route\n  router: {kind: knn, artifact: r, threshold: [%s, 0.0]}\n"
              "tiers:\n" + TIER + TIER.replace("name: a", "name: b"))
    assert parse_policy(router % ".inf").routing is not None
    with pytest.raises(PolicyError, match="routing.router.threshold"):
        parse_policy(router % ".nan")


# --- YAML bombs and shapes ---------------------------------------------------------------------

LAUGHS = ('a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
          + "".join(f"{n}: &{n} [{','.join([f'*{p}'] * 9)}]\n" for p, n in zip("abcdefgh", "bcdefghi")))


def test_a_billion_laughs_policy_is_refused_in_milliseconds(tmp_path: Path) -> None:
    assert len(LAUGHS.encode()) < 400  # 9 levels of 9: 10⁹ strings once expanded
    path = tmp_path / "bomb.yaml"
    path.write_text(LAUGHS)
    tracemalloc.start()
    started = time.perf_counter()
    try:
        with pytest.raises(PolicyError, match="aliases are expanded"):
            load_policy(path)
        elapsed = time.perf_counter() - started
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert elapsed < 1.0 and peak < 20 << 20, (elapsed, peak)
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 2 and "alias" in result.output


@pytest.mark.parametrize(("text", "message"), [
    ("a: &a [*a]\n", "refers to the node that contains it"),
    ("a: " + "[" * 5000 + "]" * 5000 + "\n", "nested deeper than"),
    ("x: &x [1]\n" + "".join(f"k{i}: *x\n" for i in range(1001)), "more than 1000 aliases"),
    ("d0: &d0 " + "[" * 60 + "1" + "]" * 60 + "\n"
     + "".join(f"d{i}: &d{i} " + "[" * 60 + f"*d{i - 1}" + "]" * 60 + "\n" for i in range(1, 20)),
     "nested deeper than"),
])
def test_pathological_yaml_shapes_are_policy_errors(text: str, message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        parse_policy(text)


def test_an_oversized_policy_file_is_refused_before_parsing(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_text("tiers:\n" + TIER + "#" * (MAX_POLICY_BYTES + 1) + "\n")
    with pytest.raises(PolicyError, match="larger than"):
        load_policy(path)
    with pytest.raises(PolicyError, match="longer than"):
        parse_policy(path.read_text())


def test_anchors_within_bounds_still_work() -> None:
    text = "defaults: &d {timeout_s: 5}\ntiers:\n" + TIER[:-2] + "}\n"
    assert parse_policy(text).defaults.timeout_s == 5


# --- a missing verifier artifact ---------------------------------------------------------------


def test_a_missing_verifier_artifact_is_a_config_error_and_exit_2(tmp_path: Path) -> None:
    text = "tiers:\n" + TIER[:-2] + ", threshold: 0.5, estimator: {kind: verifier, artifact: nowhere}}\n"
    with pytest.raises(VerifierArtifactError) as caught:
        Cascade.from_policy(parse_policy(text), base_dir=tmp_path)
    assert isinstance(caught.value, ConfigError) and isinstance(caught.value, CascadeError)
    assert caught.value.path == str(tmp_path / "nowhere") and "not a directory" in str(caught.value)
    policy = tmp_path / "p.yaml"
    policy.write_text(text)
    result = runner.invoke(app, ["run", "--policy", str(policy), "--no-check", "hi"])
    assert result.exit_code == 2, result.output
    assert "nowhere: not a directory" in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_a_missing_agreement_artifact_is_a_verifier_artifact_error(tmp_path: Path) -> None:
    text = ("tiers:\n" + TIER[:-2] + ", threshold: 0.5, estimator: {kind: agreement, "
            "answer: choice, artifact: gone}}\n")
    with pytest.raises(VerifierArtifactError, match="gone: not a directory"):
        Cascade.from_policy(parse_policy(text), base_dir=tmp_path)
