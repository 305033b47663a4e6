"""Files nobody tuned to: RouteLLM / RouterBench files with quality columns only (no
responses, maybe no costs) run end to end with an honest, declared cost rule; methods that
need answers say they cannot run; ``benchmarks/outside_data.py`` builds the MMLU split and
the graded MT-Bench file from a RouteLLM checkout or bare mirror; the RouterBench-KNN
re-implementation's decision rule."""

from __future__ import annotations

import csv
import json
import math
import subprocess
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from benchmarks import outside_data, routerbench_knn
from cascade import Cascade, ProviderConfigError, ReplayDataError, parse_policy
from cascade.bench import _cli as bench_cli
from cascade.bench._costs import Costing, CostingError, parse_price, price_models
from cascade.cli import app
from cascade.policy import Price
from cascade.providers import ReplayFormat, load_table

GPT4, MIXTRAL = "gpt-4-1106-preview", "mistralai/Mixtral-8x7B-Instruct-v0.1"
pytestmark = pytest.mark.anyio


def write_rows(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    with path.open("w", newline="") as handle:
        out = csv.writer(handle)
        out.writerow(header)
        out.writerows(rows)
    return path


def mmlu_like(path: Path, n: int = 24) -> Path:
    """RouteLLM's MMLU shape: prompt + one True/False column per model, nothing else.
    Mixtral right on even rows, gpt-4 on all but every fourth."""
    return write_rows(path, ["prompt", MIXTRAL, GPT4],
                      [[f"Question {i}?\nA. x\nB. y\nAnswer:", i % 2 == 0, i % 4 != 3] for i in range(n)])


# --- the reader ---------------------------------------------------------------------------

def test_routellm_file_of_quality_columns_only_has_no_answers_not_empty_ones(tmp_path: Path) -> None:
    table = load_table(mmlu_like(tmp_path / "m.csv"))
    assert table.format is ReplayFormat.ROUTELLM
    assert table.models == (MIXTRAL, GPT4)
    assert not table.has_responses and not table.has_costs
    record = table.rows[3].records[GPT4]
    assert record.response is None and record.correct == 0.0 and record.cost is None
    assert table.rows[2].records[MIXTRAL].correct == 1.0


def test_routerbench_file_without_responses_keeps_its_costs(tmp_path: Path) -> None:
    path = write_rows(tmp_path / "rb.csv",
                      ["", "sample_id", "prompt", "eval_name", "a", "b", "a|total_cost", "b|total_cost",
                       "oracle_model_to_route_to"],
                      [[0, "s0", "['Q0']", "toy", 1, 0.4, 0.001, 0.02, "a"],
                       [1, "s1", "['Q1']", "toy", 0, 1, 0.002, 0.03, "b"]])
    table = load_table(path)
    assert table.format is ReplayFormat.ROUTERBENCH and table.models == ("a", "b")
    assert table.has_costs and not table.has_responses
    assert table.rows[0].records["b"].correct == 0.4 and table.rows[1].records["b"].cost == 0.03
    assert table.rows[1].records["a"].response is None


def test_routerbench_quality_columns_only_skip_the_index_and_metadata(tmp_path: Path) -> None:
    path = write_rows(tmp_path / "rb.csv", ["", "sample_id", "prompt", "eval_name", "a", "b"],
                      [[0, "s0", "['Q0']", "toy", 1, 0], [1, "s1", "['Q1']", "toy", "0.25", 1]])
    table = load_table(path)
    assert table.format is ReplayFormat.ROUTERBENCH and table.models == ("a", "b")
    assert not table.has_costs and not table.has_responses
    assert table.rows[1].records["a"].correct == 0.25


def test_a_stray_column_in_a_quality_only_file_is_named(tmp_path: Path) -> None:
    path = write_rows(tmp_path / "m.csv", ["prompt", "subject", GPT4], [["Q?", "anatomy", True]])
    with pytest.raises(ReplayDataError) as caught:
        load_table(path)
    text = str(caught.value)
    assert "subject" in text and "row 1" in text and "without response columns" in text


def test_responses_for_some_models_only_is_a_missing_column(tmp_path: Path) -> None:
    path = write_rows(tmp_path / "rb.csv", ["sample_id", "prompt", "a", "b", "a|model_response",
                                            "a|total_cost", "b|total_cost"], [["s0", "Q", 1, 0, "x", 0.1, 0.2]])
    with pytest.raises(ReplayDataError, match="b\\|model_response"):
        load_table(path)


# --- the engine ---------------------------------------------------------------------------

async def test_engine_bills_prompt_tokens_and_the_declared_output_length(tmp_path: Path) -> None:
    path = mmlu_like(tmp_path / "m.csv")
    policy = parse_policy(f"""
tiers:
  - name: strong
    model: {GPT4}
    provider: {{kind: replay, data: '{path}', output_tokens: 7}}
    price: {{input_per_1m: 1000000, output_per_1m: 2000000}}
""")
    prompt = "Question 3?\nA. x\nB. y\nAnswer:"
    async with Cascade.from_policy(policy) as engine:
        result = await engine.run(prompt)
    assert result.answer == ""  # nothing recorded: no text is made up
    assert result.cost == pytest.approx(math.ceil(len(prompt) / 4) * 1.0 + 7 * 2.0)


def test_a_file_without_answers_or_costs_needs_a_declared_output_length(tmp_path: Path) -> None:
    path = mmlu_like(tmp_path / "m.csv")
    policy = parse_policy(f"tiers:\n  - {{name: s, model: {GPT4}, provider: {{kind: replay, data: '{path}'}}, "
                          "price: {input_per_1m: 1, output_per_1m: 2}}\n")
    with pytest.raises(ProviderConfigError, match="output_tokens"):
        Cascade.from_policy(policy)


# --- costing rule -------------------------------------------------------------------------

def test_price_flags_parse_and_bad_ones_are_typed_errors() -> None:
    assert parse_price("org/model=v2=1.5,3") == ("org/model=v2", Price(input_per_1m=1.5, output_per_1m=3.0))
    for bad in ("model", "model=1", "model=a,b", "model=-1,2", "=1,2", "m=nan,1"):
        with pytest.raises(CostingError):
            parse_price(bad)


def test_models_are_priced_from_the_flag_then_the_bundled_list() -> None:
    priced = price_models((MIXTRAL, GPT4), Costing({MIXTRAL: Price(input_per_1m=0.6, output_per_1m=0.6)}))
    assert priced[MIXTRAL].price.input_per_1m == 0.6 and priced[MIXTRAL].source == "--price"
    assert (priced[GPT4].price.input_per_1m, priced[GPT4].price.output_per_1m) == (10.0, 30.0)
    assert "genai-prices" in priced[GPT4].source
    with pytest.raises(CostingError, match="no-such-model-xyz"):
        price_models(("no-such-model-xyz",), Costing())
    with pytest.raises(CostingError, match="does not have"):
        price_models((GPT4,), Costing({"other": Price()}))


def test_csv_suite_declares_its_costs_and_what_cannot_run(tmp_path: Path) -> None:
    notes: list[str] = []
    suite = bench_cli.csv_suite(mmlu_like(tmp_path / "m.csv"), None, tmp_path / "out", notes=notes,
                                costing=Costing(output_tokens=3))
    assert suite.answer is None
    text = " ".join(notes)
    assert "records no costs" in text and "+ 3 output token(s) per answer" in text
    assert f"{GPT4} $10 / $30" in text
    assert "records no answers" in text and "agreement and verifier cascades cannot run" in text
    policy = (tmp_path / "out" / "m.suite.yaml").read_text()
    assert policy.count("output_tokens: 3") == 2 and "input_per_1m: 10.0" in policy


def test_settings_the_file_makes_moot_are_errors_not_dropped(tmp_path: Path) -> None:
    from verifiers import AnswerKind

    path = mmlu_like(tmp_path / "m.csv")
    with pytest.raises(bench_cli.BenchError, match="records no answers"):
        bench_cli.csv_suite(path, None, tmp_path / "o1", AnswerKind.CHOICE)
    costed = write_rows(tmp_path / "rb.csv", ["sample_id", "prompt", "a", "a|total_cost"], [["s0", "Q", 1, 0.1]])
    with pytest.raises(CostingError, match="records its costs"):
        bench_cli.csv_suite(costed, None, tmp_path / "o2", costing=Costing({"a": Price()}))
    with pytest.raises(CostingError, match="--output-tokens"):
        bench_cli.csv_suite(costed, None, tmp_path / "o3", costing=Costing(output_tokens=5))
    other = write_rows(tmp_path / "tr.csv", ["prompt", GPT4], [["Q?", True]])
    with pytest.raises(bench_cli.BenchError, match="same model columns"):
        bench_cli.csv_suite(path, other, tmp_path / "o4")


def test_bench_runs_single_models_and_reports_answer_methods_as_not_runnable(tmp_path: Path) -> None:
    path = mmlu_like(tmp_path / "m.csv")
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["bench", "--csv", str(path), "--method", "verifier", "--method",
                                      "agreement", "--price", f"{MIXTRAL}=1,1", "--output-tokens", "2",
                                      "--out", str(out), "--bootstrap", "0"])
    assert result.exit_code == 1, result.output  # asked-for methods ran nowhere
    assert "did not run on any suite: verifier, agreement" in result.output
    text = (out / "bench.md").read_text()
    assert "records no answers" in text and "verifier: judges no tier" in text
    metrics = json.loads((out / "bench.json").read_text())["suites"]["m"]["methods"]
    table = load_table(path)
    order = np.random.RandomState(0).permutation(len(table.rows)) + 1
    test_rows = [table.rows[i - 1] for i in sorted(order[len(order) // 2:])]
    for tier, model, (pin, pout) in (("mistralai-mixtral-8x7b-instruct-v0-1", MIXTRAL, (1.0, 1.0)),
                                      ("gpt-4-1106-preview", GPT4, (10.0, 30.0))):
        cost, accuracy = metrics[tier]["points"][0]
        assert cost == pytest.approx(sum(math.ceil(len(r.prompt) / 4) * pin + 2 * pout for r in test_rows) / 1e6)
        assert accuracy == pytest.approx(np.mean([r.records[model].correct for r in test_rows]))


def test_bad_price_flag_is_bad_input(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["bench", "--csv", str(mmlu_like(tmp_path / "m.csv")), "--price",
                                      "gpt-4=ten,1", "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "not two numbers" in result.output


# --- benchmarks/outside_data.py -----------------------------------------------------------

def fake_routellm(root: Path) -> Path:
    mmlu = root / "routellm" / "evals" / "mmlu" / "responses"
    mmlu.mkdir(parents=True)
    for name, first in (("mmlu_b.csv", 5), ("mmlu_a.csv", 0)):
        write_rows(mmlu / name, ["prompt", MIXTRAL, GPT4],
                   [[f"Q{first + i}\nAnswer:", i % 2 == 0, True] for i in range(5)])
    mt = root / "routellm" / "evals" / "mt_bench"
    mt.mkdir(parents=True)
    (mt / "question.jsonl").write_text(json.dumps(
        {"question_id": 7, "category": "math", "turns": ["What is 2+2?", "And times 3?"]}) + "\n")
    judged = []
    for model, (a1, a2), (s1, s2) in ((GPT4, ("It is 4.", "It is 12."), (10, 9)),
                                      (MIXTRAL, ("Four", "Twelve, I think"), (6, 3))):
        single = ("[Instruction]\nPlease act...\n\n[Question]\nWhat is 2+2?\n\n[The Start of Reference Answer]\n4\n"
                  f"[The End of Reference Answer]\n\n[The Start of Assistant's Answer]\n{a1}\n"
                  "[The End of Assistant's Answer]")
        multi = ("<|The Start of Reference Answer|>\n\n### User:\nWhat is 2+2?\n\n### Reference answer:\n4\n\n"
                 "<|The End of Reference Answer|>\n\n\n<|The Start of Assistant A's Conversation with User|>\n\n"
                 f"### User:\nWhat is 2+2?\n\n### Assistant A:\n{a1}\n\n### User:\nAnd times 3?\n\n"
                 f"### Assistant A:\n{a2}\n\n<|The End of Assistant A's Conversation with User|>")
        judged += [{"question_id": 7, "model": model, "user_prompt": single, "score": s1, "turn": 1},
                   {"question_id": 7, "model": model, "user_prompt": multi, "score": s2, "turn": 2}]
    (mt / "judgements.jsonl").write_text("".join(json.dumps(j) + "\n" for j in judged))
    return root


@pytest.mark.parametrize("bare", [False, True])
def test_outside_data_builds_the_split_and_graded_mtbench(tmp_path: Path, bare: bool) -> None:
    source = fake_routellm(tmp_path / "checkout")
    if bare:
        git = ["git", "-C", str(source), "-c", "user.name=t", "-c", "user.email=t@t"]
        subprocess.run([*git[:3], "init", "-q"], check=True)
        subprocess.run([*git, "add", "-A"], check=True)
        subprocess.run([*git, "commit", "-qm", "data"], check=True)
        subprocess.run(["git", "clone", "-q", "--bare", str(source), str(tmp_path / "mirror")], check=True)
        source = tmp_path / "mirror"
    out = tmp_path / "out"
    assert outside_data.main([str(source), str(out)]) == 0
    train, test = load_table(out / "mmlu_train.csv"), load_table(out / "mmlu_test.csv")
    assert len(train.rows) == len(test.rows) == 5 and not train.has_responses
    prompts = sorted(r.prompt for r in (*train.rows, *test.rows))
    assert prompts == sorted(f"Q{i}\nAnswer:" for i in range(10))  # mmlu_a then mmlu_b, all rows once
    order = np.random.RandomState(0).permutation(10)
    assert {r.prompt for r in train.rows} == {f"Q{i}\nAnswer:" for i in order[:5]}
    every = load_table(out / "mmlu_all.csv")  # unsplit, in file order (timing_file.py's input)
    assert [r.prompt for r in every.rows] == [f"Q{i}\nAnswer:" for i in range(10)]
    mt = load_table(out / "mtbench.csv")
    assert mt.format is ReplayFormat.ROUTERBENCH and mt.has_costs and mt.has_responses
    one, two = mt.rows
    assert one.parts == ("What is 2+2?",) and two.parts == ("What is 2+2?", "And times 3?")
    assert two.records[GPT4].correct == 0.9 and two.records[MIXTRAL].correct == 0.3
    assert two.records[MIXTRAL].response == "Twelve, I think"
    seen = len("What is 2+2?") + len("Four") + len("And times 3?")  # its own first answer
    assert two.records[MIXTRAL].cost == pytest.approx((seen / 4 * 0.6 + len("Twelve, I think") / 4 * 0.6) / 1e6)
    assert one.records[GPT4].cost == pytest.approx((len("What is 2+2?") / 4 * 10 + len("It is 4.") / 4 * 30) / 1e6)


def test_outside_data_refuses_a_folder_that_is_not_routellm(tmp_path: Path) -> None:
    assert outside_data.main([str(tmp_path), str(tmp_path / "out")]) == 2


# --- benchmarks/routerbench_knn.py (the decision rule; MiniLM is not loaded) ---------------

def test_routerbench_knn_scores_route_and_prefix() -> None:
    train_x = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    labels = np.array([[1.0, 1.0], [1.0, 1.0], [0.0, 1.0], [0.0, 1.0]])
    scores = routerbench_knn.knn_scores(train_x, labels, np.array([[1.0, 0.05], [0.05, 1.0]]), k=2)
    assert scores.tolist() == [[1.0, 1.0], [0.0, 1.0]]
    penalty = np.array([1e-7, 4e-6])  # cheap, dear per token
    assert routerbench_knn.route(scores, penalty, 1e-9).tolist() == [0, 0]  # cost dominates
    assert routerbench_knn.route(scores, penalty, 1e3).tolist() == [0, 1]  # quality dominates, ties cheap
    cost = np.array([[1.0, 10.0], [1.0, 10.0]])
    pts = routerbench_knn.points(scores, routerbench_knn.reference_rule(penalty), np.array([[1.0, 1.0], [0.0, 1.0]]), cost)
    assert len(pts) == len(routerbench_knn.WILLINGNESS_TO_PAY)
    assert (2.0, 0.5) in pts and (11.0, 1.0) in pts
    assert routerbench_knn.shared_prefix(["Shots here.\nQ: a b", "Shots here.\nQ: abc"]) == "Shots here.\nQ: "
    assert routerbench_knn.shared_prefix(["abc", "abd"]) == ""


def test_the_train_hull_protocol_measures_only_the_train_hull_settings_on_test() -> None:
    # per query the score gap (dear - cheap) is 1, 0.01, 0: as w grows, q1 then q2 go dear
    scores = np.array([[0.0, 1.0], [0.0, 0.01], [0.5, 0.5]])
    rule = routerbench_knn.reference_rule(np.array([1e-7, 4e-6]))
    cost = np.array([[1.0, 10.0]] * 3)
    split = lambda labels: routerbench_knn.Split(("cheap", "dear"), ["a", "b", "c"], np.array(labels), cost)  # noqa: E731
    train = split([[1.0, 1.0], [0.0, 1.0], [1.0, 1.0]])  # sending q1 alone dear buys nothing on train
    test = split([[0.0, 1.0], [1.0, 1.0], [1.0, 1.0]])  # ... and everything on test
    kept = routerbench_knn.train_hull_points(scores, train, scores, test, rule)
    assert kept == [(3.0, 2 / 3), (21.0, 1.0)]  # the settings on the train hull, measured on test
    swept = routerbench_knn.points(scores, rule, test.labels, test.cost)
    assert (12.0, 1.0) in swept  # the reference protocol also gets the test-only best point
    assert routerbench_knn.aiq(swept, 21.0) > routerbench_knn.aiq(kept, 21.0)


def test_the_paired_difference_resamples_both_routers_on_the_same_queries() -> None:
    rng = np.random.default_rng(1)
    cheap_right = rng.integers(0, 2, 200).astype(float)
    labels = np.stack([cheap_right, np.ones(200)], axis=1)
    test = routerbench_knn.Split(("cheap", "dear"), [str(i) for i in range(200)], labels, np.tile([1.0, 10.0], (200, 1)))
    always = [np.zeros(200, int), np.ones(200, int)]  # all cheap, all dear
    knows = [*always, (1 - cheap_right).astype(int)]  # ... and dear exactly where cheap is wrong
    guesses = [*always, rng.integers(0, 2, 200)]  # ... and dear at random
    same = routerbench_knn.paired_difference(always, always, test, 2000.0, rounds=200)
    assert same == {"difference": 0.0, "low": 0.0, "high": 0.0, "rounds": 200}
    better = routerbench_knn.paired_difference(knows, guesses, test, 2000.0, rounds=200)
    assert better["difference"] > 0 and 0 < better["low"] < better["difference"] < better["high"]
    worse = routerbench_knn.paired_difference(guesses, knows, test, 2000.0, rounds=200)
    assert worse["difference"] == pytest.approx(-better["difference"]) and worse["high"] < 0


def test_routerbench_knn_names_a_file_it_cannot_read(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("prompt,gpt-4\nq,1.7\n", encoding="utf-8")
    for argv in (["run", "--halves", str(tmp_path / "missing.csv")], ["run", "--halves", str(bad)]):
        with pytest.raises(SystemExit) as stopped:
            routerbench_knn.main(argv)
        assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert "missing.csv: cannot read" in err and "bad.csv" in err and "Traceback" not in err


@pytest.mark.parametrize("kind", routerbench_knn.OURS)
def test_our_routers_scores_under_the_reference_rule(kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(0)
    topic = rng.integers(0, 2, 60)  # topic 1: the cheap model is right

    def embed(texts: list[str], cache: object) -> np.ndarray:  # MiniLM-wide stand-in: the topic, noise
        rows = [int(t.split()[-1]) for t in texts]
        x = np.stack([[topic[r], 1 - topic[r], *np.random.default_rng(r).normal(0, 0.02, 382)] for r in rows])
        return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)

    monkeypatch.setattr(routerbench_knn, "embed", embed)
    labels = np.stack([topic.astype(float), np.ones(60)], axis=1)
    cost = np.tile([1.0, 10.0], (60, 1))
    whole = routerbench_knn.Split(("cheap", "dear"), [f"question {i}" for i in range(60)], labels, cost)
    train, test = routerbench_knn.halves(whole)
    scores, oof, settings = routerbench_knn.ours_scores(kind, train, test, None)
    assert scores.shape == (30, 2) and oof.shape == (30, 2)
    assert ((oof >= 0) & (oof <= 1)).all() and ((scores >= 0) & (scores <= 1)).all()
    assert scores[test.labels[:, 0] == 1, 0].mean() > scores[test.labels[:, 0] == 0, 0].mean() + 0.2
    assert ("k=" in settings) == (kind != "mf") and ("dim=" in settings) == (kind != "knn")
    rule = routerbench_knn.reference_rule(np.array([1e-7, 4e-6]))
    assert routerbench_knn.aiq(routerbench_knn.points(scores, rule, test.labels, test.cost), 300.0) > \
        routerbench_knn.aiq([(float(test.cost[:, j].sum()), float(test.labels[:, j].mean())) for j in (0, 1)], 300.0)


def test_a_verifier_cannot_be_trained_on_a_file_without_answers(tmp_path: Path) -> None:
    from cascade.cli._train import examples_from

    with pytest.raises(ReplayDataError, match="records no answers"):
        examples_from(load_table(mmlu_like(tmp_path / "m.csv")), GPT4)
