"""The replay provider: a hand-written RouterBench-format fixture, broken files, and the
real recorded data in ../shared/data (skipped where that folder is absent)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cascade import (
    Cascade,
    Decision,
    NoAnswerError,
    ProviderError,
    ReplayDataError,
    ReplayMissError,
    parse_policy,
)
from cascade.providers import load_routerbench_csv

FIXTURE = Path(__file__).parent / "fixtures" / "tiny_routerbench.csv"
pytestmark = pytest.mark.anyio


def replay_policy(data: Path, *models: str) -> str:
    tiers = "\n".join(
        f"  - {{name: t{i}, model: {m}, provider: {{kind: replay, data: '{data}'}}}}"
        for i, m in enumerate(models))
    return f"tiers:\n{tiers}\n"


def test_reads_the_fixture_as_is() -> None:
    table = load_routerbench_csv(FIXTURE)
    assert table.models == ("cheap-model", "mid-model", "dear-model")
    row = table.rows[2]
    assert row.sample_id == "toy.3" and row.parts == ("Few-shot context", "Question: Largest planet?\nAnswer:")
    assert row.records["dear-model"].response == "Jupiter"
    assert row.records["dear-model"].correct == 1.0 and row.records["mid-model"].correct == 0.0
    assert row.records["dear-model"].cost == 0.02
    assert table.rows[3].records["cheap-model"].correct is None  # empty cell


async def test_replay_run_by_prompt_text_and_by_sample_id() -> None:
    policy = parse_policy(replay_policy(FIXTURE, "cheap-model", "dear-model"))
    async with Cascade.from_policy(policy) as engine:
        by_text = await engine.run("Question: Capital of France?\nAnswer:")
        by_last_part = await engine.run("Question: Largest planet?\nAnswer:")
        by_id = await engine.run("anything", metadata={"sample_id": "toy.3"})
        by_row = await engine.run("anything", metadata={"replay_row": "2"})
    # no estimators: the first tier is accepted unchecked, at its recorded cost
    assert by_text.answer == "Lyon" and by_text.cost == pytest.approx(0.0001)
    assert by_last_part.answer == "Mars" and by_id.answer == "Mars" and by_row.answer == "Lyon"
    assert by_text.attempts[0].deployment == "replay@tiny_routerbench.csv"


async def test_replay_miss_is_a_provider_error_recorded_per_tier() -> None:
    policy = parse_policy(replay_policy(FIXTURE, "cheap-model"))
    async with Cascade.from_policy(policy) as engine:
        with pytest.raises(NoAnswerError) as info:
            await engine.run("never recorded")
    attempts = info.value.attempts
    assert len(attempts) == 1 and attempts[0].decision is Decision.ERROR
    assert attempts[0].error.startswith("ReplayMissError")
    assert issubclass(ReplayMissError, ProviderError)  # escalates like any provider failure


def test_model_not_in_data_is_a_typed_error_at_load() -> None:
    policy = parse_policy(replay_policy(FIXTURE, "gpt-9"))
    with pytest.raises(ReplayDataError, match="model 'gpt-9' is not in the data"):
        Cascade.from_policy(policy)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda t: t.replace(",sample_id,", ",id,", 1), "missing column(s) sample_id"),
        (lambda t: t.replace("|total_cost,mid", "|cost,mid", 1), "missing column 'cheap-model|total_cost'"),
        (lambda t: t.replace(",0.001,0.01,mid-model", ",cheap,0.01,mid-model"),
         "row 2, column 'mid-model|total_cost': cost 'cheap' is not a number"),
        (lambda t: t.replace("toy,0.0,1.0,1.0", "toy,1.5,1.0,1.0"),
         "row 2, column 'cheap-model': quality '1.5' is outside [0, 1]"),
        (lambda t: t.splitlines()[0] + "\n", "no data rows"),
    ],
)
def test_broken_csv_names_file_row_and_column(tmp_path: Path, edit, message: str) -> None:  # type: ignore[no-untyped-def]
    broken = tmp_path / "broken.csv"
    broken.write_text(edit(FIXTURE.read_text()))
    with pytest.raises(ReplayDataError) as info:
        load_routerbench_csv(broken)
    assert str(broken) in str(info.value) and message in str(info.value)


def test_missing_file_is_a_typed_error(tmp_path: Path) -> None:
    with pytest.raises(ReplayDataError, match="cannot read"):
        load_routerbench_csv(tmp_path / "nope.csv")


@pytest.mark.data
async def test_replay_on_recorded_routerbench(shared_data: Path) -> None:
    """Every ARC test row replays with exactly the recorded answer, label and cost."""
    data = shared_data / "routerbench" / "arc_challenge_test.csv"
    table = load_routerbench_csv(data)
    assert len(table.rows) == 445 and len(table.models) == 11
    policy = parse_policy(replay_policy(data, "mistralai/mixtral-8x7b-chat"))
    total = correct = 0.0
    async with Cascade.from_policy(policy) as engine:
        for row in table.rows:
            result = await engine.run(row.prompt, metadata={"sample_id": row.sample_id})
            by_row = await engine.run("-", metadata={"replay_row": str(table.rows.index(row) + 1)})
            assert by_row.answer == result.answer
            record = row.records["mistralai/mixtral-8x7b-chat"]
            assert result.answer == record.response
            assert result.cost == pytest.approx(record.cost)
            total += result.cost
            correct += bool(record.correct)
    assert total == pytest.approx(sum(r.records["mistralai/mixtral-8x7b-chat"].cost for r in table.rows))
    assert 0.5 < correct / len(table.rows) < 1.0


@pytest.mark.data
@pytest.mark.parametrize("name", ["arc_challenge", "winograde", "mbpp"])
def test_every_routerbench_file_loads(shared_data: Path, name: str) -> None:
    for split in ("train", "test"):
        table = load_routerbench_csv(shared_data / "routerbench" / f"{name}_{split}.csv")
        assert len(table.models) == 11
        assert all(r.prompt and r.records for r in table.rows)
