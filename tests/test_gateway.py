"""The gateway through the official ``openai`` client: a real uvicorn server on loopback in
front of a real streaming upstream (tests/stream_upstream.py) and replay tiers."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import anyio
import httpx
import openai
import pytest
from gateway_server import KEY, OTHER_KEY, running
from openai import AsyncOpenAI
from stream_upstream import StreamUpstream

from cascade.server import GatewayConfig, ModelRule, TierRule, hash_key, parse_router_name

pytestmark = pytest.mark.anyio

FIXTURE = Path(__file__).parent / "fixtures" / "tiny_routerbench.csv"
ESCALATES = "estimator: {kind: agreement, answer: exact}, threshold: never"
ANSWER = "echo: hello and a few more words"


def _openai_tier(name: str, url: str, extra: str = "") -> str:
    return (f"  - {{name: {name}, model: {name}-m, timeout_s: 5, provider: {{kind: openai, "
            f"base_url: '{url}'}}{', ' + extra if extra else ''}}}")


def write_policies(directory: Path, url: str) -> Path:
    directory.mkdir(exist_ok=True)
    (directory / "chat.yaml").write_text(
        "tiers:\n" + _openai_tier("small", url, ESCALATES) + "\n" + _openai_tier("big", url) + "\n")
    (directory / "live.yaml").write_text(
        "tiers:\n" + _openai_tier("small", url, ESCALATES) + "\n" + _openai_tier("big", url) + "\n")
    (directory / "metered.yaml").write_text(
        "budgets:\n  - {name: per-key, scope: caller, period: minute, requests: 2}\n"
        "tiers:\n" + _openai_tier("only", url) + "\n")
    (directory / "tools.yaml").write_text(
        "budgets:\n  - {name: per-key, scope: caller, period: minute, requests: 2}\n"
        "tiers:\n" + _openai_tier("small", url, ESCALATES) + "\n" + _openai_tier("big", url) + "\n")
    (directory / "replay.yaml").write_text(
        "tiers:\n"
        f"  - {{name: cheap, model: cheap-model, provider: {{kind: replay, data: '{FIXTURE}'}}}}\n")
    return directory


@pytest.fixture
async def upstream() -> AsyncIterator[StreamUpstream]:
    async with StreamUpstream() as up:
        yield up


@pytest.fixture
def gateway(upstream: StreamUpstream, tmp_path: Path) -> Iterator[str]:
    config = GatewayConfig(models={"live": ModelRule(live=True), "tools": ModelRule(
        on_unjudgeable=TierRule(action="tier", tier="big"))}, max_body_bytes=4096,
                           default_model="chat")
    with running(write_policies(tmp_path / "policies", upstream.base_url), config) as url:
        yield url


def client(url: str, key: str = KEY) -> AsyncOpenAI:
    return AsyncOpenAI(base_url=url, api_key=key, max_retries=0, timeout=30)


async def test_plain_completion_with_the_cascade_extension(gateway: str) -> None:
    async with client(gateway) as c:
        reply = await c.chat.completions.create(
            model="chat", messages=[{"role": "user", "content": "hello"}], max_tokens=50)
    assert reply.object == "chat.completion" and reply.model == "chat"
    assert reply.id.startswith("chatcmpl-") and reply.created > 0
    choice = reply.choices[0]
    assert choice.message.role == "assistant" and choice.message.content == ANSWER
    assert choice.finish_reason == "stop"
    assert reply.usage is not None and reply.usage.prompt_tokens == 14  # 7 per tier, 2 tiers
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens
    ext = (reply.model_extra or {})["cascade"]
    assert ext["tier"] == "big" and ext["escalations"] == 1 and ext["accepted"] is True
    assert ext["stop_reason"] == "accepted" and len(ext["trace_id"]) == 32


async def test_request_fields_reach_the_upstream(gateway: str, upstream: StreamUpstream) -> None:
    async with client(gateway) as c:
        await c.chat.completions.create(
            model="chat", max_tokens=33, temperature=0.7, stop=["END"],
            messages=[{"role": "developer", "content": "be brief"},
                      {"role": "user", "content": [{"type": "text", "text": "hello"}]}],
            user="u1", metadata={"team": "x"})
    sent = upstream.bodies[-1]
    assert (sent["max_tokens"], sent["temperature"], sent["stop"]) == (33, 0.7, ["END"])
    assert sent["messages"][0] == {"role": "system", "content": "be brief"}


@pytest.mark.parametrize("model", ["chat", "live"])
async def test_streamed_completion_ends_with_usage(gateway: str, model: str) -> None:
    async with client(gateway) as c:
        stream = await c.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "hello"}], stream=True,
            stream_options={"include_usage": True})
        chunks = [chunk async for chunk in stream]
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text == ANSWER
    assert chunks[0].choices[0].delta.role == "assistant"
    finals = [ch for ch in chunks if ch.choices and ch.choices[0].finish_reason]
    assert len(finals) == 1 and finals[0].choices[0].finish_reason == "stop"
    assert (finals[0].model_extra or {})["cascade"]["tier"] == "big"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.prompt_tokens == 14
    assert all(ch.id == chunks[0].id and ch.object == "chat.completion.chunk" for ch in chunks)
    assert sum(1 for ch in chunks if ch.choices and ch.choices[0].delta.content) > 3


async def test_stream_without_include_usage_has_no_usage_chunk(gateway: str) -> None:
    async with httpx.AsyncClient() as h:
        r = await h.post(f"{gateway}/chat/completions", headers={"authorization": f"Bearer {KEY}"},
                         json={"model": "chat", "stream": True,
                               "messages": [{"role": "user", "content": "hello"}]})
    events = [line[6:] for line in r.text.split("\n\n") if line.startswith("data: ")]
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    assert events[-1] == "[DONE]"
    assert all("usage" not in json.loads(e) for e in events[:-1])


async def test_a_stream_failing_before_any_byte_gets_its_status(gateway: str) -> None:
    async with client(gateway) as c:
        with pytest.raises(openai.APIStatusError) as caught:
            await c.chat.completions.create(
                model="chat", messages=[{"role": "user", "content": "fail"}], stream=True)
    assert caught.value.status_code == 502
    assert caught.value.body["code"] == "no_answer"  # type: ignore[index]


async def test_a_live_stream_cut_mid_answer_ends_with_an_error_event(gateway: str) -> None:
    async with httpx.AsyncClient() as h:
        r = await h.post(f"{gateway}/chat/completions", headers={"authorization": f"Bearer {KEY}"},
                         json={"model": "live", "stream": True,
                               "messages": [{"role": "user", "content": "cut"}]})
    events = [line[6:] for line in r.text.split("\n\n") if line.startswith("data: ")]
    assert r.status_code == 200 and events[-1] == "[DONE]"
    error = json.loads(events[-2])["error"]
    assert error["type"] == "upstream_error" and "before [DONE]" in error["message"]
    text = "".join(json.loads(e)["choices"][0]["delta"].get("content", "") for e in events[:-2])
    assert text == "echo: cut "


async def test_a_client_that_leaves_stops_the_live_upstream_stream(tmp_path: Path) -> None:
    async with StreamUpstream(chunk_delay_s=0.3) as up:
        config = GatewayConfig(models={"live": ModelRule(live=True)})
        with running(write_policies(tmp_path / "p", up.base_url), config) as url:
            async with client(url) as c:
                stream = await c.chat.completions.create(
                    model="live", stream=True, messages=[{"role": "user", "content": "hi"}])
                async for chunk in stream:
                    if chunk.choices and chunk.choices[0].delta.content:
                        break  # the first word: leave
                await stream.close()
            await anyio.sleep(3)  # the whole answer would take 2.4 s
        assert up.requests["hi"] == 2 and up.completed["hi"] == 0  # small (whole), big (cut)


async def test_models_list(gateway: str) -> None:
    async with client(gateway) as c:
        models = await c.models.list()
    assert [m.id for m in models.data] == ["chat", "live", "metered", "replay", "tools"]
    assert all(m.object == "model" and m.owned_by == "cascade" for m in models.data)


async def test_models_retrieve(gateway: str) -> None:
    async with client(gateway) as c, client(gateway, "sk-wrong") as wrong:
        model = await c.models.retrieve("chat")
        with pytest.raises(openai.NotFoundError) as caught:
            await c.models.retrieve("gpt-9")
        with pytest.raises(openai.AuthenticationError):
            await wrong.models.retrieve("chat")
    assert (model.id, model.object, model.owned_by) == ("chat", "model", "cascade")
    assert caught.value.code == "model_not_found"


async def test_neutral_fields_and_a_passed_back_assistant_message_are_accepted(
        gateway: str, upstream: StreamUpstream) -> None:
    """What client libraries send as they are: an earlier reply's message object (null
    refusal, annotations...), OpenAI's fields at their neutral values, safety_identifier."""
    async with client(gateway) as c:
        first = await c.chat.completions.create(model="chat",
                                                messages=[{"role": "user", "content": "hi"}])
        await c.chat.completions.create(
            model="chat", messages=[{"role": "user", "content": "hi"}, first.choices[0].message,
                                    {"role": "user", "content": "more"}],
            n=1, top_p=1, top_logprobs=0, service_tier="auto", modalities=["text"], store=False,
            safety_identifier="user-1")
    assert [m["role"] for m in upstream.bodies[-1]["messages"]] == ["user", "assistant", "user"]
    assert upstream.bodies[-1]["messages"][1]["content"] == first.choices[0].message.content


async def test_replay_tier_answers(gateway: str) -> None:
    async with client(gateway) as c:
        reply = await c.chat.completions.create(
            model="replay", messages=[{"role": "user", "content": "Question: What is 2+2?\nAnswer:"}])
    assert reply.choices[0].message.content == "4"
    assert (reply.model_extra or {})["cascade"]["cost_usd"] == pytest.approx(0.0001)


async def test_bad_key_is_authentication_error(gateway: str) -> None:
    async with client(gateway, "sk-wrong") as c:
        with pytest.raises(openai.AuthenticationError) as caught:
            await c.chat.completions.create(model="chat",
                                            messages=[{"role": "user", "content": "hi"}])
        with pytest.raises(openai.AuthenticationError):
            await c.models.list()
    assert caught.value.status_code == 401 and caught.value.code == "invalid_api_key"
    async with httpx.AsyncClient() as h:  # no key at all
        r = await h.get(f"{gateway}/models")
    assert r.status_code == 401 and set(r.json()["error"]) == {"message", "type", "param", "code"}


async def test_bad_request_is_bad_request_error(gateway: str) -> None:
    async with client(gateway) as c:
        with pytest.raises(openai.BadRequestError) as caught:
            await c.chat.completions.create(model="chat", temperature=5,
                                            messages=[{"role": "user", "content": "hi"}])
    assert caught.value.param == "temperature"


async def test_unknown_model_is_not_found(gateway: str) -> None:
    async with client(gateway) as c:
        with pytest.raises(openai.NotFoundError) as caught:
            await c.chat.completions.create(model="gpt-9",
                                            messages=[{"role": "user", "content": "hi"}])
        with pytest.raises(openai.NotFoundError, match="no learned router"):
            await c.chat.completions.create(model="router-mf-0.11593",
                                            messages=[{"role": "user", "content": "hi"}])
    assert caught.value.code == "model_not_found"


@pytest.mark.parametrize(("extra", "param"), [
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]}, "tools"),
    ({"response_format": {"type": "json_object"}}, "response_format"),
    ({"messages": [{"role": "user", "content": [
        {"type": "text", "text": "what is this"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA=="}}]}]},
     "messages[0].content[1]"),
])
async def test_unjudgeable_requests_are_refused_naming_the_field(gateway: str, extra: dict,
                                                                 param: str) -> None:
    body = {"messages": [{"role": "user", "content": "hi"}], **extra}
    async with client(gateway) as c:
        with pytest.raises(openai.BadRequestError) as caught:
            await c.chat.completions.create(model="chat", **body)
    assert caught.value.param == param and param in caught.value.message


TOOLS = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]


async def test_unjudgeable_requests_go_unverified_to_the_named_tier(
        gateway: str, upstream: StreamUpstream) -> None:
    async with client(gateway) as a, client(gateway, OTHER_KEY) as b:
        reply = await a.chat.completions.create(
            model="tools", tools=TOOLS, tool_choice="auto",  # type: ignore[arg-type]
            messages=[{"role": "user", "content": [
                {"type": "text", "text": "look"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA=="}}]}])
        sent = upstream.bodies[-1]
        assert sent["model"] == "big-m" and sent["tools"] == TOOLS  # as the client sent it
        assert sent["messages"][0]["content"][1]["type"] == "image_url"
        ext = (reply.model_extra or {})["cascade"]
        assert reply.model == "tools" and reply.choices[0].message.content == \
            "echo: look and a few more words"
        assert ext["tier"] == "big" and ext["accepted"] is False and ext["verified"] is False
        with pytest.raises(openai.BadRequestError) as streamed:
            await a.chat.completions.create(model="tools", tools=TOOLS, stream=True,  # type: ignore[arg-type]
                                            messages=[{"role": "user", "content": "x"}])
        assert streamed.value.param == "stream"
        await a.chat.completions.create(model="tools", tools=TOOLS,  # type: ignore[arg-type]
                                        messages=[{"role": "user", "content": "x"}])
        with pytest.raises(openai.RateLimitError):  # the key's budget counts these calls too
            await a.chat.completions.create(model="tools", tools=TOOLS,  # type: ignore[arg-type]
                                            messages=[{"role": "user", "content": "x"}])
        await b.chat.completions.create(model="tools", tools=TOOLS,  # type: ignore[arg-type]
                                        messages=[{"role": "user", "content": "x"}])


async def test_per_key_budget(gateway: str) -> None:
    async with client(gateway) as a, client(gateway, OTHER_KEY) as b:
        for _ in range(2):
            await a.chat.completions.create(model="metered",
                                            messages=[{"role": "user", "content": "hi"}])
        with pytest.raises(openai.RateLimitError) as caught:
            await a.chat.completions.create(model="metered",
                                            messages=[{"role": "user", "content": "hi"}])
        other = await b.chat.completions.create(model="metered",
                                                messages=[{"role": "user", "content": "hi"}])
        # a client cannot pose as another caller through metadata
        with pytest.raises(openai.RateLimitError):
            await a.chat.completions.create(model="metered", metadata={"caller": "team-c"},
                                            messages=[{"role": "user", "content": "hi"}])
    assert caught.value.code == "budget_exceeded" and "per-key" in caught.value.message
    assert other.choices[0].message.content == "echo: hi and a few more words"


async def test_health_and_readiness(gateway: str) -> None:
    base = gateway.removesuffix("/v1")
    async with httpx.AsyncClient() as h:
        health, ready = await h.get(f"{base}/healthz"), await h.get(f"{base}/readyz")
    assert health.status_code == 200 and health.json() == {"status": "ok"}
    assert ready.status_code == 200 and ready.json()["problems"] == []


async def test_readiness_reports_an_unreachable_upstream(tmp_path: Path) -> None:
    policies = tmp_path / "p"
    policies.mkdir()
    (policies / "down.yaml").write_text("tiers:\n" + _openai_tier("a", "http://127.0.0.1:9/v1") + "\n")
    with running(policies) as url:
        async with httpx.AsyncClient() as h:
            ready = await h.get(url.removesuffix("/v1") + "/readyz")
    assert ready.status_code == 503 and "down:" in ready.json()["problems"][0]


MALFORMED: list[tuple[str, bytes | dict, int]] = [
    ("not json", b"{nope", 400),
    ("json array", b"[1, 2]", 400),
    ("empty object", {}, 400),
    ("no messages", {"model": "chat"}, 400),
    ("model not a string", {"model": 5, "messages": [{"role": "user", "content": "hi"}]}, 400),
    ("messages not a list", {"model": "chat", "messages": "hi"}, 400),
    ("empty messages", {"model": "chat", "messages": []}, 400),
    ("message not an object", {"model": "chat", "messages": ["hi"]}, 400),
    ("bad role", {"model": "chat", "messages": [{"role": "wizard", "content": "hi"}]}, 400),
    ("content a number", {"model": "chat", "messages": [{"role": "user", "content": 5}]}, 400),
    ("content missing", {"model": "chat", "messages": [{"role": "user"}]}, 400),
    ("bad content part", {"model": "chat", "messages": [{"role": "user", "content": [{"x": 1}]}]}, 400),
    ("empty user turn", {"model": "chat", "messages": [{"role": "user", "content": "  "}]}, 400),
    ("only a system turn", {"model": "chat", "messages": [{"role": "system", "content": "x"}]}, 400),
    ("lone surrogate", b'{"model": "chat", "messages": [{"role": "user", "content": "\\ud800"}]}', 400),
    ("max_tokens a string", {"model": "chat", "max_tokens": "5", "messages": [{"role": "user", "content": "hi"}]}, 400),
    ("max_tokens zero", {"model": "chat", "max_tokens": 0, "messages": [{"role": "user", "content": "hi"}]}, 400),
    ("max_tokens true", {"model": "chat", "max_tokens": True, "messages": [{"role": "user", "content": "hi"}]}, 400),
    ("max_tokens huge", {"model": "chat", "max_tokens": 10**30, "messages": [{"role": "user", "content": "hi"}]}, 400),
    ("temperature NaN", b'{"model": "chat", "temperature": NaN, "messages": [{"role": "user", "content": "hi"}]}', 400),
    ("temperature 1e400", b'{"model": "chat", "temperature": 1e400, "messages": [{"role": "user", "content": "hi"}]}', 400),
    ("stop a number", {"model": "chat", "stop": 5, "messages": [{"role": "user", "content": "hi"}]}, 400),
    ("five stops", {"model": "chat", "stop": list("abcde"), "messages": [{"role": "user", "content": "hi"}]}, 400),
    ("stream a string", {"model": "chat", "stream": "yes", "messages": [{"role": "user", "content": "hi"}]}, 400),
    ("stream_options alone", {"model": "chat", "stream_options": {"include_usage": True}, "messages": [{"role": "user", "content": "hi"}]}, 400),
    ("metadata a list", {"model": "chat", "metadata": [1], "messages": [{"role": "user", "content": "hi"}]}, 400),
    ("metadata value a number", {"model": "chat", "metadata": {"a": 1}, "messages": [{"role": "user", "content": "hi"}]}, 400),
    ("user a number", {"model": "chat", "user": 5, "messages": [{"role": "user", "content": "hi"}]}, 400),
    ("n 2", {"model": "chat", "n": 2, "messages": [{"role": "user", "content": "hi"}]}, 400),
    ("n true", {"model": "chat", "n": True, "messages": [{"role": "user", "content": "hi"}]}, 400),
    ("reasoning_effort", {"model": "chat", "reasoning_effort": "low", "messages": [{"role": "user", "content": "hi"}]}, 400),
    ("prompt_cache_key", {"model": "chat", "prompt_cache_key": "k", "messages": [{"role": "user", "content": "hi"}]}, 400),
    ("safety_identifier a number", {"model": "chat", "safety_identifier": 5, "messages": [{"role": "user", "content": "hi"}]}, 400),
    ("message name", {"model": "chat", "messages": [{"role": "user", "content": "hi", "name": "bob"}]}, 400),
    ("message unknown field", {"model": "chat", "messages": [{"role": "user", "content": "hi", "mood": "x"}]}, 400),
    ("unknown field", {"model": "chat", "frobnicate": 1, "messages": [{"role": "user", "content": "hi"}]}, 400),
    ("deep nesting", b"[" * 100_000 + b"]" * 100_000, 413),
    ("deeply nested small", b'{"model": ' + b"[" * 2000 + b"]" * 2000 + b"}", 400),
    ("not utf-8", b'{"model": "chat", "messages": [{"role": "user", "content": "\xff"}]}', 400),
    ("too large", {"model": "chat", "messages": [{"role": "user", "content": "x" * 5000}]}, 413),
    ("unknown model", {"model": "nope", "messages": [{"role": "user", "content": "hi"}]}, 404),
    ("router name, bad threshold", {"model": "router-mf-abc", "messages": [{"role": "user", "content": "hi"}]}, 404),
]


async def test_malformed_requests_never_give_a_500(gateway: str) -> None:
    headers = {"authorization": f"Bearer {KEY}", "content-type": "application/json"}
    async with httpx.AsyncClient(timeout=30) as h:
        for name, body, status in MALFORMED:
            raw = body if isinstance(body, bytes) else json.dumps(body).encode()
            r = await h.post(f"{gateway}/chat/completions", content=raw, headers=headers)
            assert r.status_code == status, (name, r.status_code, r.text[:300])
            error = r.json()["error"]
            assert set(error) == {"message", "type", "param", "code"} and error["message"], name
        base = gateway.removesuffix("/v1")
        wrong_method = await h.get(f"{gateway}/chat/completions", headers=headers)
        no_path = await h.post(f"{base}/v2/whatever", headers=headers)
    assert wrong_method.status_code == 405 and "error" in wrong_method.json()
    assert no_path.status_code == 404 and "error" in no_path.json()


def test_router_model_names_and_key_hashes() -> None:
    assert parse_router_name("router-mf-0.11593") == ("mf", 0.11593)
    assert parse_router_name("router-knn-1") == ("knn", 1.0)
    assert parse_router_name("router-mf") is None and parse_router_name("chat") is None
    assert hash_key("k") == "8254c329a92850f6d539dd376f4816ee2764517da5e0235514af433164480d7a"
