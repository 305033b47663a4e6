"""``cascade.run``: feature → policy file, policies directory by argument and environment."""

from __future__ import annotations

from pathlib import Path

import pytest

import cascade

pytestmark = pytest.mark.anyio
FIXTURE = Path(__file__).parent / "fixtures" / "tiny_routerbench.csv"


def write_feature(directory: Path, feature: str, model: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{feature}.yaml").write_text(
        f"tiers:\n  - {{name: only, model: {model}, provider: {{kind: replay, data: '{FIXTURE}'}}}}\n")


async def test_feature_picks_its_policy_from_the_directory_argument(tmp_path: Path) -> None:
    write_feature(tmp_path, "support-chat", "mid-model")
    messages = [{"role": "system", "content": "be nice"},
                {"role": "user", "content": "Question: Capital of France?\nAnswer:"}]
    result = await cascade.run(messages, feature="support-chat", policies=tmp_path)
    assert result.answer == "Paris" and result.feature == "support-chat"
    assert result.model == "mid-model"


async def test_policies_directory_from_environment(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    write_feature(tmp_path / "env", "faq", "cheap-model")
    monkeypatch.setenv("CASCADE_POLICIES_DIR", str(tmp_path / "env"))
    result = await cascade.run("Question: Capital of France?\nAnswer:", feature="faq")
    assert result.answer == "Lyon"
    assert cascade.policies_dir() == tmp_path / "env"


async def test_unknown_and_invalid_features_are_typed_errors(tmp_path: Path) -> None:
    with pytest.raises(cascade.PolicyNotFoundError, match="no policy for feature 'missing'"):
        await cascade.run("hi", feature="missing", policies=tmp_path)
    with pytest.raises(cascade.InvalidFeatureError):
        await cascade.run("hi", feature="../../etc/passwd", policies=tmp_path)


def test_default_policies_are_bundled(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CASCADE_POLICIES_DIR", raising=False)
    assert (cascade.policies_dir() / "default.yaml").is_file()
    assert cascade.policy_path("default").name == "default.yaml"


def test_result_to_dict_is_json_ready() -> None:
    import json

    attempt = cascade.Attempt(0, "t", "m", "d", cascade.Decision.ACCEPT, 0.9, 0.5)
    result = cascade.Result("a", True, cascade.StopReason.ACCEPTED, 0, "t", "m", 0.9, (attempt,),
                            0.0, 0.1, 0, "0" * 32, "default")
    data = json.loads(json.dumps(result.to_dict()))
    assert data["stop_reason"] == "accepted" and data["attempts"][0]["decision"] == "accept"
