"""The observer seam: what observers are told and in which order, an observer that raises
never fails a run (logged once, counted), and observers named in the policy."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import ClassVar

import anyio
import pytest
from scripted import FakeTime, Fixed, Flaky, Scripted

from cascade import Cascade, NoAnswerError, ProviderHTTPError, Tier, parse_policy
from cascade.errors import ConfigError, PolicyError, ServerError
from cascade.policy import LoadBalancing, ResilienceSpec
from cascade.resilience import Deployment, Resilience
from cascade.telemetry import (
    AttemptInfo,
    EstimateInfo,
    FallbackEvent,
    RetryEvent,
    RunInfo,
    RunObserver,
)
from cascade.types import Attempt, Result

pytestmark = pytest.mark.anyio
FIXTURE = Path(__file__).parent / "fixtures" / "tiny_routerbench.csv"


class Recorder(RunObserver):
    """Writes down every call (the policy test names it as ``test_observers:Recorder``)."""

    made: ClassVar[list[Recorder]] = []

    def __init__(self) -> None:
        self.log: list[tuple[str, object]] = []
        self.runs: dict[RunInfo, list[str]] = {}
        type(self).made.append(self)

    def run_started(self, run: RunInfo) -> None:
        self.log.append(("run_started", run.feature))
        self.runs[run] = []

    def attempt_started(self, attempt: AttemptInfo) -> None:
        self.log.append(("attempt_started", attempt.tier_name))
        self.runs[attempt.run].append(attempt.tier_name)

    def estimate_made(self, attempt: AttemptInfo, estimate: EstimateInfo) -> None:
        self.log.append(("estimate_made", (attempt.tier_name, estimate.confidence,
                                           estimate.accepted)))

    def attempt_finished(self, attempt: AttemptInfo, record: Attempt) -> None:
        self.log.append(("attempt_finished", (attempt.tier_name, record.decision.value)))

    def run_finished(self, run: RunInfo, result: Result | None,
                     error: BaseException | None) -> None:
        self.log.append(("run_finished", result.tier_name if result else type(error).__name__))

    def retry(self, run: RunInfo, event: RetryEvent) -> None:
        self.log.append(("retry", event.deployment))

    def fallback(self, run: RunInfo, event: FallbackEvent) -> None:
        self.log.append(("fallback", (event.deployment, event.error)))


class Broken(RunObserver):
    def run_started(self, run: RunInfo) -> None:
        raise RuntimeError("observer bug")

    def attempt_finished(self, attempt: AttemptInfo, record: Attempt) -> None:
        raise KeyError("another")


async def test_observers_hear_a_run_in_order() -> None:
    recorder = Recorder()
    tiers = [Tier("a", "model-a", Scripted("x"), Fixed(0.2), 0.5),
             Tier("b", "model-b", Scripted("y"), Fixed(0.9), 0.5)]
    result = await Cascade(tiers, feature="faq", observers=[recorder]).run("q")
    assert result.tier_name == "b"
    assert recorder.log == [
        ("run_started", "faq"),
        ("attempt_started", "a"), ("estimate_made", ("a", 0.2, False)),
        ("attempt_finished", ("a", "escalate")),
        ("attempt_started", "b"), ("estimate_made", ("b", 0.9, True)),
        ("attempt_finished", ("b", "accept")),
        ("run_finished", "b")]


async def test_a_run_that_raises_and_a_deadline_are_reported() -> None:
    recorder = Recorder()
    failing = Scripted(fail=ProviderHTTPError("scripted@a", 503, "busy"))
    with pytest.raises(NoAnswerError):
        await Cascade([Tier("a", "m", failing)], observers=[recorder]).run("q")
    assert recorder.log[-2:] == [("attempt_finished", ("a", "error")),
                                 ("run_finished", "NoAnswerError")]
    recorder.log.clear()
    slow = Scripted("late", delay=5.0)
    with pytest.raises(Exception, match="deadline"):
        await Cascade([Tier("a", "m", slow)], observers=[recorder]).run("q", deadline_s=0.05)
    assert recorder.log[-2:] == [("attempt_finished", ("a", "timeout")),
                                 ("run_finished", "DeadlineExceededError")]


async def test_an_observer_that_raises_never_fails_a_run(caplog: pytest.LogCaptureFixture) -> None:
    broken, recorder = Broken(), Recorder()
    engine = Cascade([Tier("a", "m", Scripted("x"))], observers=[broken, recorder])
    with caplog.at_level(logging.ERROR, logger="cascade.telemetry"):
        for _ in range(3):
            assert (await engine.run("q")).answer == "x"
    assert engine.observers.failures == {"Broken.run_started": 3, "Broken.attempt_finished": 3}
    logged = [r for r in caplog.records if r.name == "cascade.telemetry"]
    assert len(logged) == 2 and "Broken.run_started" in logged[0].getMessage()
    assert [e for e, _ in recorder.log].count("run_finished") == 3  # the others still hear


async def test_concurrent_runs_are_kept_apart() -> None:
    recorder = Recorder()
    tiers = [Tier("a", "model-a", Scripted("x", delay=0.01), Fixed(0.2), 0.5),
             Tier("b", "model-b", Scripted("y", delay=0.01), Fixed(0.9), 0.5)]
    engine = Cascade(tiers, observers=[recorder])
    async with anyio.create_task_group() as tg:
        for _ in range(5):
            tg.start_soon(engine.run, "q")
    assert len(recorder.runs) == 5 and all(v == ["a", "b"] for v in recorder.runs.values())


async def test_seam_events_reach_observers() -> None:
    time = FakeTime()
    a = Flaky("from a", name="a", script=[ServerError("scripted@a", 500, "boom")] * 2)
    b = Flaky("from b", name="b", script=[ServerError("scripted@b", 500, "boom")])
    resilience = Resilience(ResilienceSpec(), clock=time, wall_clock=time, sleep=time.sleep)
    tier = Tier("t", "m", a, deployments=(Deployment(a), Deployment(b)),
                load_balancing=LoadBalancing.LEAST_IN_FLIGHT)
    recorder = Recorder()
    result = await Cascade([tier], resilience=resilience, observers=[recorder]).run("q")
    assert result.accepted
    seam = [entry for entry in recorder.log if entry[0] in ("retry", "fallback")]
    assert seam[0] == ("fallback", ("scripted@a", "ServerError"))
    assert ("retry", "scripted@b") in seam or ("retry", "scripted@a") in seam


def test_a_non_observer_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="not a RunObserver"):
        Cascade([Tier("a", "m", Scripted())], observers=[object()])  # type: ignore[list-item]


def _policy(telemetry: str) -> str:
    return (f"tiers:\n  - {{name: only, model: cheap-model, provider: {{kind: replay, "
            f"data: '{FIXTURE}'}}}}\ntelemetry: {telemetry}\n")


async def test_policy_names_observers_and_switches_content_and_metrics() -> None:
    Recorder.made.clear()
    policy = parse_policy(_policy("{observers: ['test_observers:Recorder'], metrics: false, "
                                  "record_content: true}"))
    async with Cascade.from_policy(policy) as engine:
        await engine.run("Question: What is 2+2?\nAnswer:")
    [made] = Recorder.made
    assert made.log[0][0] == "run_started" and made.log[-1] == ("run_finished", "only")
    kinds = [type(o).__name__ for o in engine.observers.observers]
    assert kinds == ["TracingObserver", "Recorder"]
    assert engine.observers.observers[0].record_content is True  # type: ignore[attr-defined]


@pytest.mark.parametrize(("path", "match"), [
    ("test_observers:Missing", "cannot import 'test_observers:Missing'"),
    ("no_such_module_xyz:Thing", "cannot import"),
    ("test_observers:FIXTURE", "is not a class or factory"),
    ("test_observers:Path", "not a RunObserver"),
])
def test_bad_observer_names_are_config_errors(path: str, match: str) -> None:
    policy = parse_policy(_policy(f"{{observers: ['{path}']}}"))
    with pytest.raises(ConfigError, match=match):
        Cascade.from_policy(policy)


def test_an_observer_name_that_is_not_an_import_path_is_a_policy_error() -> None:
    with pytest.raises(PolicyError, match="telemetry.observers"):
        parse_policy(_policy("{observers: ['not a path']}"))
    with pytest.raises(PolicyError, match="telemetry.colour"):
        parse_policy(_policy("{colour: blue}"))
