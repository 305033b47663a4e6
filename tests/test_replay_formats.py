"""The replay provider on RouteLLM response CSVs and MoT multi-sample JSON (hand-written
fixtures), and the typed errors for broken files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cascade import Cascade, ProviderConfigError, ReplayDataError, ReplayMissError, parse_policy
from cascade.providers import ReplayFormat, load_table

FIXTURES = Path(__file__).parent / "fixtures"
ROUTELLM = FIXTURES / "tiny_routellm.csv"
MOT = FIXTURES / "tiny_mot.json"
pytestmark = pytest.mark.anyio


def test_routellm_format_is_detected_and_read() -> None:
    table = load_table(ROUTELLM)
    assert table.format is ReplayFormat.ROUTELLM and not table.has_costs
    assert table.models == ("weak-model", "strong-model")
    row = table.rows[1]
    assert row.records["weak-model"].correct == 0.0 and row.records["strong-model"].correct == 1.0
    assert row.records["strong-model"].response.endswith("#### 30")


def test_mot_format_keeps_every_sample_and_its_label() -> None:
    table = load_table(MOT)
    assert table.format is ReplayFormat.MOT and table.models == ()
    record = table.record(table.rows[1], "any-name")  # single-model file: the tier names it
    assert record.samples == ("02/28/2021", "02/27/2021", "02/27/2021", "02/26/2021", "02/27/2021")
    assert record.sample_correct == (False, True, True, False, True)
    assert record.response == "02/28/2021" and record.correct is False  # sample 0 answers


async def test_routellm_costs_come_from_the_tier_price() -> None:
    policy = parse_policy(f"""
tiers:
  - name: weak
    model: weak-model
    provider: {{kind: replay, data: '{ROUTELLM}'}}
    price: {{input_per_1m: 1000000, output_per_1m: 2000000}}
""")
    async with Cascade.from_policy(policy) as engine:
        result = await engine.run("What is 3 times 4?")
    # prompt 18 chars -> 5 tokens x $1; answer 23 chars -> 6 tokens x $2
    assert result.answer.endswith("#### 12")
    assert result.cost == pytest.approx(5 * 1.0 + 6 * 2.0)


def test_data_without_costs_needs_a_price() -> None:
    policy = parse_policy(f"tiers:\n  - {{name: w, model: weak-model, provider: "
                          f"{{kind: replay, data: '{ROUTELLM}'}}}}\n")
    with pytest.raises(ProviderConfigError, match="records no costs"):
        Cascade.from_policy(policy)


async def test_mot_samples_run_on_across_sample_calls_and_bill_the_prefix_once() -> None:
    policy = parse_policy(f"""
tiers:
  - name: cot
    model: gpt-3.5-turbo
    provider: {{kind: replay, data: '{MOT}', prompt_prefix_chars: 400}}
    price: {{input_per_1m: 1000000, output_per_1m: 1000000}}
""")
    async with Cascade.from_policy(policy) as engine:
        provider = engine.tiers[0].provider
        assert provider.supports_n
        from cascade._calls import sampler
        from cascade._request import make_request
        request = make_request("Tomorrow is 03/01/2021. What was the date yesterday?", "f", None)
        sample = sampler(engine.tiers[0], request)
        first, second = await sample(2), await sample(2)
        with pytest.raises(ReplayMissError, match="only 5 samples"):
            await sample(1)
    assert [c.text for c in first.candidates] == ["02/27/2021", "02/27/2021"]
    assert [c.text for c in second.candidates] == ["02/26/2021", "02/27/2021"]
    question_tokens = -(-(len(request.messages[0].content) + 400) // 4)
    assert first.usage.calls == 1 and first.usage.input_tokens == question_tokens
    assert first.usage.output_tokens == -(-2 * len("A: 02/27/2021") // 4)  # ceil(chars / 4)


async def test_mot_vote_answers_with_the_majority_and_bills_every_sample() -> None:
    policy = parse_policy(f"""
tiers:
  - name: sc3
    model: gpt-4
    provider: {{kind: replay, data: '{MOT}', vote: 3}}
    price: {{input_per_1m: 0, output_per_1m: 1000000}}
""")
    async with Cascade.from_policy(policy) as engine:
        result = await engine.run("Tomorrow is 03/01/2021. What was the date yesterday?")
    assert result.answer == "02/27/2021"  # 2 of the first 3 samples
    assert result.cost == pytest.approx(10.0)  # 3 samples of 13 chars: ceil(39 / 4) tokens


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("nomodel.csv", "question,a,b\nq,1,0\n", "'<model>_response' (RouteLLM) or 'prompt' column"),
        ("onlymeta.csv", "sample_id,prompt,eval_name\ns0,q,toy\n", "no model columns"),
        ("missing.csv", "prompt,a_response\nq,x\n", "missing column 'a'"),
        ("badlabel.csv", "prompt,a,a_response\nq,maybe,x\n", "row 1, column 'a'"),
        ("noprompt.csv", "question,a,a_response\nq,True,x\n", "missing column(s) prompt"),
        ("bad.json", "[{\"question\": \"q\"", "not valid JSON"),
        ("nolist.json", "{\"question\": \"q\"}", "non-empty JSON list"),
        ("nofield.json", "[{\"question\": \"q\", \"answer\": \"a\", \"generated\": [\"x\"]}]",
         "missing field 'results'"),
        ("uneven.json", json.dumps([{"question": "q", "answer": "a", "generated": ["x", "y"],
                                     "results": ["x"]}]), "1 results for 2 generated"),
    ],
)
def test_broken_files_are_typed_errors_naming_file_row_and_column(
        tmp_path: Path, name: str, text: str, message: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ReplayDataError) as info:
        load_table(path)
    assert message in str(info.value) and name in str(info.value)


@pytest.mark.data
async def test_recorded_mot_date_has_twenty_samples(shared_data: Path) -> None:
    table = load_table(shared_data / "mot_date" / "gpt35" / "date_cot1.json")
    assert len(table.rows) == 369
    assert all(len(table.record(r, "m").samples) == 20 for r in table.rows)
    gsm = load_table(shared_data / "routellm_gsm8k" / "gsm8k_responses.csv")
    assert len(gsm.rows) == 1319 and len(gsm.models) == 2
