"""Cascade.stream: deltas then the Result, after acceptance and live; SSE parsing; a cut or
stalled stream after its first byte is never retried (against a real loopback upstream)."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest
from hypothesis import given
from hypothesis import strategies as st
from stream_upstream import StreamUpstream

from cascade import Cascade, InvalidRequestError, NoAnswerError
from cascade._stream import Delta, Done, StreamStateError, split_deltas
from cascade.errors import ProviderResponseError, StreamInterruptedError, StreamStalledError
from cascade.policy import load_policy
from cascade.providers._sse import SSEState
from cascade.types import Decision, Message, ModelCall, StopReason

pytestmark = pytest.mark.anyio

ESCALATES = "estimator: {kind: agreement, answer: exact}, threshold: never"


def policy(tmp_path: Path, url: str, *, two: bool = True, last_extra: str = "",
           retries: int = 2) -> Cascade:
    tiers = [f"  - {{name: big, model: big-m, timeout_s: 1, provider: {{kind: openai, base_url: '{url}'}}"
             + (f", {last_extra}" if last_extra else "") + "}"]
    if two:
        tiers.insert(0, f"  - {{name: small, model: small-m, provider: {{kind: openai, "
                        f"base_url: '{url}'}}, {ESCALATES}}}")
    text = ("feature: s\nresilience: {retry: {max_attempts: " + str(retries) +
            ", initial_backoff_s: 0.01, max_backoff_s: 0.01}}\ntiers:\n" + "\n".join(tiers) + "\n")
    (tmp_path / "p.yaml").write_text(text)
    return Cascade.from_policy(load_policy(tmp_path / "p.yaml"), base_dir=tmp_path)


async def collect(cascade: Cascade, prompt: str, **kw: object) -> tuple[list[str], Done]:
    deltas: list[str] = []
    async with cascade.stream(prompt, **kw) as stream:  # type: ignore[arg-type]
        items = [item async for item in stream]
        assert stream.result is items[-1].result  # type: ignore[union-attr]
    for item in items[:-1]:
        assert isinstance(item, Delta)
        deltas.append(item.text)
    assert isinstance(items[-1], Done)
    return deltas, items[-1]


@given(st.text())
def test_deltas_join_to_the_answer(text: str) -> None:
    assert "".join(split_deltas(text)) == text


async def test_after_acceptance_streams_the_accepted_answer(tmp_path: Path) -> None:
    async with StreamUpstream() as up, \
            policy(tmp_path, up.base_url, two=False) as cascade:
        deltas, done = await collect(cascade, "hello", max_tokens=20)
    assert len(deltas) > 1 and "".join(deltas) == done.result.answer == \
        "echo: hello and a few more words"
    assert done.result.accepted and done.result.stop_reason is StopReason.ACCEPTED
    assert not up.bodies[0].get("stream")  # judged as a whole: no upstream stream


async def test_live_streams_the_last_tier_as_it_comes(tmp_path: Path) -> None:
    async with StreamUpstream(chunk_delay_s=0.05) as up, \
            policy(tmp_path, up.base_url) as cascade:
        times: list[float] = []
        async with cascade.stream("hi", live=True) as stream:
            async for item in stream:
                times.append(anyio.current_time())
        result = stream.result
    assert result.answer == "echo: hi and a few more words" and result.tier_name == "big"
    assert [a.decision for a in result.attempts] == [Decision.ESCALATE, Decision.ACCEPT]
    assert result.escalations == 1 and result.accepted
    live = up.bodies[-1]
    assert live["stream"] is True and live["stream_options"] == {"include_usage": True}
    assert result.attempts[1].input_tokens == 7  # from the final usage chunk
    assert times[-1] - times[0] >= 0.2  # deltas arrived spread out, not all at the end


async def test_live_refused_when_an_estimator_judges_the_last_tier(tmp_path: Path) -> None:
    async with StreamUpstream() as up, \
            policy(tmp_path, up.base_url, last_extra=ESCALATES) as cascade:
        with pytest.raises(InvalidRequestError, match="estimator"):
            await collect(cascade, "hi", live=True)
    assert sum(up.requests.values()) == 0


async def test_a_stream_cut_after_bytes_is_not_retried(tmp_path: Path) -> None:
    async with StreamUpstream() as up, \
            policy(tmp_path, up.base_url, two=False, retries=3) as cascade:
        got: list[str] = []
        with pytest.raises(StreamInterruptedError):
            async with cascade.stream("cut", live=True) as stream:
                async for item in stream:
                    assert isinstance(item, Delta)
                    got.append(item.text)
    assert "".join(got) == "echo: cut "
    assert up.requests["cut"] == 1  # never retried once a byte was sent
    assert StreamInterruptedError.retryable is False and StreamInterruptedError.fallback is False


async def test_a_stalled_stream_after_bytes_is_a_timeout_not_retried(tmp_path: Path) -> None:
    async with StreamUpstream(stall_s=5) as up, \
            policy(tmp_path, up.base_url, two=False, retries=3) as cascade:
        with pytest.raises(StreamStalledError) as caught:
            await collect(cascade, "stall", live=True)
    assert caught.value.phase == "read" and up.requests["stall"] == 1


async def test_a_failure_before_any_byte_is_retried(tmp_path: Path) -> None:
    async with StreamUpstream() as up, \
            policy(tmp_path, up.base_url, two=False, retries=3) as cascade:
        with pytest.raises(NoAnswerError):
            await collect(cascade, "fail", live=True)
        with pytest.raises(NoAnswerError):
            await collect(cascade, "fail")  # after acceptance: the same run error
    assert up.requests["fail"] >= 4  # 3 tries live (nothing sent yet), then the plain run


async def test_result_before_done_and_iteration_outside_with(tmp_path: Path) -> None:
    async with StreamUpstream() as up, \
            policy(tmp_path, up.base_url, two=False) as cascade:
        stream = cascade.stream("hi")
        with pytest.raises(StreamStateError):
            stream.__aiter__()
        with pytest.raises(StreamStateError):
            _ = stream.result


def test_sse_usage_from_the_final_chunk_else_estimated() -> None:
    call = ModelCall("m", (Message("user", "q"),), 10)
    state = SSEState("d")
    assert state.feed('{"choices":[{"index":0,"delta":{"content":"a b"}}]}') == "a b"
    state.feed('{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}')
    state.feed('{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2}}')
    state.feed("[DONE]")
    done = state.completion(call)
    assert (done.text, done.input_tokens, done.output_tokens, done.usage_estimated) == \
        ("a b", 3, 2, False)
    bare = SSEState("d")
    bare.feed('{"choices":[{"index":0,"delta":{"content":"a b"},"finish_reason":"length"}]}')
    estimated = bare.completion(call)
    assert estimated.usage_estimated and estimated.choices[0].truncated


@pytest.mark.parametrize("payload", ["not json", "[1]", '{"choices": 3}',
                                     '{"choices":[{"index":0,"delta":{"content":5}}]}',
                                     '{"error": {"message": "x"}}', '{"usage": 4}'])
def test_sse_malformed_chunks_are_response_errors(payload: str) -> None:
    with pytest.raises(ProviderResponseError):
        SSEState("d").feed(payload)
