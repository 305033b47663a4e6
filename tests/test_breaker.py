"""The circuit breaker as a state machine on a fake clock, and breakers shared via a Store."""

from __future__ import annotations

import math

import anyio
import anyio.lowlevel
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from cascade.errors import ConfigError
from cascade.resilience import (
    BreakerConfig,
    BreakerRegistry,
    BreakerState,
    CircuitBreaker,
    Permit,
    ResilienceConfigError,
    ResilienceValueError,
    SlidingWindow,
    open_until_key,
)
from cascade.state import MemoryStore, RedisStore, Store

CLOSED, OPEN, HALF_OPEN, FORCED = (BreakerState.CLOSED, BreakerState.OPEN,
                                   BreakerState.HALF_OPEN, BreakerState.FORCED_OPEN)


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make(**kw: object) -> tuple[CircuitBreaker, Clock]:
    clock = Clock()
    defaults: dict[str, object] = {"window_size": 10, "minimum_calls": 4, "failure_rate": 0.5,
                                       "open_s": 10.0, "open_multiplier": 2.0, "max_open_s": 35.0,
                                       "half_open_calls": 2, "slow_call_s": 5.0}
    defaults.update(kw)
    return CircuitBreaker(BreakerConfig(**defaults), clock), clock  # type: ignore[arg-type]


def call(breaker: CircuitBreaker, *, failure: bool, duration_s: float = 0.1) -> object:
    permit = breaker.acquire()
    assert permit is not None
    return breaker.record(permit, failure=failure, duration_s=duration_s)


def trip(breaker: CircuitBreaker) -> None:
    for _ in range(4):
        call(breaker, failure=True)
    assert breaker.state is OPEN


# --- config -------------------------------------------------------------------------------


@pytest.mark.parametrize(("field", "value"), [
    ("window_size", 0), ("window_size", 2.5), ("minimum_calls", 0), ("failure_rate", 0.0),
    ("failure_rate", 1.5), ("slow_call_rate", -0.1), ("slow_call_s", 0), ("open_s", -1),
    ("open_multiplier", 0.5), ("max_open_s", 1.0), ("half_open_calls", 0),
    ("failure_rate", float("nan")), ("window", "count"), ("half_open_calls", True),
])
def test_bad_config_names_the_field(field: str, value: object) -> None:
    with pytest.raises(ResilienceConfigError) as info:
        BreakerConfig(**{field: value})  # type: ignore[arg-type]
    assert info.value.field == field and field in str(info.value)
    assert isinstance(info.value, ValueError) and isinstance(info.value, ConfigError)


def test_minimum_calls_beyond_a_count_window_is_refused() -> None:
    with pytest.raises(ResilienceConfigError, match="minimum_calls"):
        BreakerConfig(window_size=5, minimum_calls=6)
    BreakerConfig(window=SlidingWindow.TIME, window_size=5, minimum_calls=6)  # seconds: fine


def test_open_time_grows_and_is_capped() -> None:
    config = BreakerConfig(open_s=10, open_multiplier=2, max_open_s=35)
    assert [config.open_time(n) for n in (1, 2, 3, 4, 10_000)] == [10, 20, 35, 35, 35]


# --- transitions ------------------------------------------------------------------------


def test_no_trip_before_minimum_calls_then_trip_on_failure_rate() -> None:
    breaker, clock = make()
    for _ in range(3):
        assert call(breaker, failure=True) is None
    assert breaker.state is CLOSED and breaker.snapshot().failure_rate == 1.0
    transition = call(breaker, failure=True)
    assert transition is not None and (transition.old, transition.new) == (CLOSED, OPEN)
    assert "failure rate 1.00 >= 0.5 over 4 calls" in transition.reason
    assert breaker.open_until == clock.now + 10.0
    assert breaker.acquire() is None
    assert breaker.drain() == (transition,) and breaker.drain() == ()


def test_failure_rate_below_threshold_stays_closed() -> None:
    breaker, _ = make()
    for failure in [True, False, False, False, True, False, False, False, False, True]:
        call(breaker, failure=failure)
    snap = breaker.snapshot()
    assert snap.state is CLOSED and snap.calls == 10 and snap.failure_rate == pytest.approx(0.3)


def test_count_window_forgets_old_calls() -> None:
    breaker, _ = make(window_size=4, minimum_calls=4, failure_rate=0.75)
    for failure in [True, True, False, False, False, False]:
        call(breaker, failure=failure)
    assert breaker.snapshot().failure_rate == 0.0 and breaker.snapshot().calls == 4
    call(breaker, failure=True)
    call(breaker, failure=True)
    assert breaker.state is CLOSED  # 2 of the last 4: 0.5 < 0.75
    assert call(breaker, failure=True) is not None  # 3 of the last 4
    assert breaker.state is OPEN


def test_time_window_forgets_calls_older_than_its_seconds() -> None:
    breaker, clock = make(window=SlidingWindow.TIME, window_size=10, minimum_calls=4)
    for _ in range(3):
        call(breaker, failure=True)
    clock.now += 10.0  # those three leave the window
    for _ in range(3):
        call(breaker, failure=False)
    assert breaker.snapshot().calls == 3
    assert call(breaker, failure=True) is None  # 1 of 4
    assert breaker.state is CLOSED
    clock.now += 5.0
    assert call(breaker, failure=True) is None  # 2 of 5
    transition = call(breaker, failure=True)  # 3 of 6 = the threshold
    assert transition is not None and "over 6 calls" in transition.reason


def test_time_window_trips_at_the_threshold() -> None:
    breaker, clock = make(window=SlidingWindow.TIME, window_size=10, minimum_calls=4)
    for failure in (False, False, True):
        call(breaker, failure=failure)
        clock.now += 3.0
    assert breaker.state is CLOSED
    transition = call(breaker, failure=True)  # 2 of 4 within the last 10 s
    assert transition is not None and breaker.state is OPEN


def test_slow_calls_trip_on_slow_call_rate() -> None:
    breaker, _ = make(slow_call_rate=0.5, slow_call_s=5.0)
    call(breaker, failure=False, duration_s=5.0)  # not slower than the threshold: not slow
    call(breaker, failure=False, duration_s=1.0)
    call(breaker, failure=False, duration_s=6.0)
    assert breaker.state is CLOSED and breaker.snapshot().slow_call_rate == pytest.approx(1 / 3)
    transition = call(breaker, failure=False, duration_s=9.0)
    assert transition is not None and "slow-call rate 0.50" in transition.reason


def test_open_then_half_open_then_closed() -> None:
    breaker, clock = make()
    trip(breaker)
    clock.now += 9.999
    assert breaker.acquire() is None and breaker.state is OPEN
    clock.now += 0.001
    first = breaker.acquire()
    assert first is not None and first.half_open and breaker.state is HALF_OPEN
    second = breaker.acquire()
    assert second is not None and breaker.acquire() is None  # exactly half_open_calls probes
    assert breaker.snapshot().half_open_in_flight == 2
    assert breaker.record(first, failure=False, duration_s=0.1) is None
    assert breaker.acquire() is None  # the slot of a succeeded probe is not handed out again
    closed = breaker.record(second, failure=False, duration_s=0.1)
    assert closed is not None and (closed.old, closed.new) == (HALF_OPEN, CLOSED)
    assert [t.new for t in breaker.drain()] == [OPEN, HALF_OPEN, CLOSED]
    assert breaker.snapshot().trips == 0 and breaker.snapshot().calls == 0


def test_failing_probe_reopens_with_grown_capped_open_time() -> None:
    breaker, clock = make()
    trip(breaker)
    expected = [20.0, 35.0, 35.0]
    for grown in expected:
        clock.now = breaker.open_until  # type: ignore[assignment]
        probe = breaker.acquire()
        assert probe is not None and probe.half_open
        transition = breaker.record(probe, failure=True, duration_s=0.1)
        assert transition is not None and transition.new is OPEN
        assert breaker.open_until == clock.now + grown
    assert breaker.snapshot().trips == 4 and breaker.snapshot().total_trips == 4
    # a successful round resets the growth
    clock.now = breaker.open_until  # type: ignore[assignment]
    for probe in [breaker.acquire(), breaker.acquire()]:
        assert probe is not None
        breaker.record(probe, failure=False, duration_s=0.1)
    assert breaker.state is CLOSED
    trip(breaker)
    assert breaker.open_until == clock.now + 10.0


def test_slow_probes_reopen() -> None:
    breaker, clock = make(slow_call_rate=0.5)
    trip(breaker)
    clock.now += 10
    probes = [breaker.acquire(), breaker.acquire()]
    breaker.record(probes[0], failure=False, duration_s=0.1)  # type: ignore[arg-type]
    transition = breaker.record(probes[1], failure=False, duration_s=60)  # type: ignore[arg-type]
    assert transition is not None and transition.new is OPEN and "slow" in transition.reason


def test_release_frees_a_half_open_slot_and_counts_nothing() -> None:
    breaker, clock = make()
    trip(breaker)
    clock.now += 10
    a, b = breaker.acquire(), breaker.acquire()
    assert a is not None and b is not None and breaker.acquire() is None
    breaker.release(a)
    c = breaker.acquire()
    assert c is not None and c.half_open
    breaker.release(a)  # releasing twice cannot free a slot that is not held
    assert breaker.snapshot().half_open_in_flight == 2 and breaker.acquire() is None
    assert breaker.record(a, failure=True, duration_s=0.1) is None  # nor can a released probe
    assert breaker.state is HALF_OPEN
    for permit in (b, c):
        breaker.record(permit, failure=False, duration_s=0.1)
    assert breaker.state is CLOSED


def test_release_in_closed_state_counts_nothing() -> None:
    breaker, _ = make()
    permit = breaker.acquire()
    assert permit is not None
    breaker.release(permit)
    assert breaker.snapshot().calls == 0


def test_stale_permits_are_ignored() -> None:
    breaker, clock = make()
    old = [breaker.acquire() for _ in range(3)]
    trip(breaker)
    for permit in old:  # results from before the trip
        assert permit is not None
        assert breaker.record(permit, failure=True, duration_s=0.1) is None
    assert breaker.snapshot().calls == 0
    clock.now += 10
    probe = breaker.acquire()
    assert probe is not None
    breaker.record(old[0], failure=False, duration_s=0.1)  # type: ignore[arg-type]
    assert breaker.snapshot().half_open_in_flight == 1 and breaker.state is HALF_OPEN
    with pytest.raises(TypeError):
        breaker.record("permit", failure=False, duration_s=0.1)  # type: ignore[arg-type]


def test_trip_never_shortens_and_reopens_a_closed_breaker() -> None:
    breaker, clock = make()
    transition = breaker.trip(clock.now + 50, "Retry-After: 50")
    assert transition is not None and transition.new is OPEN
    assert transition.reason == "Retry-After: 50"
    assert breaker.trip(clock.now + 5, "shorter") is None
    assert breaker.open_until == clock.now + 50
    assert breaker.trip(clock.now + 80, "longer") is None  # extended, no new transition
    assert breaker.open_until == clock.now + 80
    assert breaker.trip(clock.now - 1, "past") is None
    clock.now += 79.9
    assert breaker.acquire() is None
    clock.now += 0.1
    assert breaker.acquire() is not None
    assert breaker.snapshot().trips == 0  # outside cooldowns do not grow the open time


def test_internal_trip_does_not_shorten_an_outside_cooldown() -> None:
    breaker, clock = make()
    clock.now += 0
    breaker.trip(clock.now + 100, "Retry-After")
    clock.now += 100
    probe = breaker.acquire()
    assert probe is not None
    breaker.trip(clock.now + 300, "quota")  # while half-open: back to open, later
    assert breaker.state is OPEN and breaker.open_until == clock.now + 300
    assert breaker.record(probe, failure=True, duration_s=0.1) is None  # stale
    assert breaker.open_until == clock.now + 300


def test_past_trip_on_half_open_does_nothing() -> None:
    breaker, clock = make()
    trip(breaker)
    clock.now += 10
    assert breaker.acquire() is not None
    assert breaker.trip(clock.now, "now") is None and breaker.state is HALF_OPEN


def test_force_open_until_reset() -> None:
    breaker, clock = make()
    transition = breaker.force_open("401 from upstream")
    assert transition is not None and transition.new is FORCED and breaker.open_until == math.inf
    assert breaker.force_open("again") is None
    clock.now += 1e9
    assert breaker.acquire() is None
    assert breaker.trip(clock.now + 5, "retry-after") is None and breaker.state is FORCED
    reset = breaker.reset()
    assert reset is not None and (reset.old, reset.new) == (FORCED, CLOSED)
    assert breaker.acquire() is not None and breaker.reset() is None
    with pytest.raises(ResilienceValueError, match="until"):
        breaker.trip(float("nan"), "bad")
    permit = breaker.acquire()
    assert permit is not None
    for duration in (-1.0, float("nan"), "1"):
        with pytest.raises(ResilienceValueError, match="duration_s"):
            breaker.record(permit, failure=False, duration_s=duration)  # type: ignore[arg-type]


def _in_state(state: BreakerState) -> tuple[CircuitBreaker, Clock]:
    breaker, clock = make()
    match state:
        case BreakerState.OPEN:
            trip(breaker)
        case BreakerState.HALF_OPEN:
            trip(breaker)
            clock.now += 10
            assert breaker.acquire() is not None
        case BreakerState.FORCED_OPEN:
            breaker.force_open("auth")
        case BreakerState.CLOSED:
            pass
    assert breaker.state is state
    breaker.drain()
    return breaker, clock


@pytest.mark.parametrize("state", list(BreakerState))
def test_force_open_and_reset_from_every_state(state: BreakerState) -> None:
    breaker, clock = _in_state(state)
    forced = breaker.force_open("credentials refused")
    assert (forced is None) == (state is FORCED)
    assert breaker.state is FORCED and breaker.acquire() is None
    clock.now += 1e6
    assert breaker.acquire() is None
    reset = breaker.reset("operator")
    assert reset is not None and reset.new is CLOSED and reset.reason == "operator"
    snap = breaker.snapshot()
    assert (snap.state, snap.trips, snap.calls, snap.open_until) == (CLOSED, 0, 0, None)
    assert breaker.acquire() is not None


# --- a hypothesis state machine -------------------------------------------------------------


class BreakerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.clock = Clock()
        self.config = BreakerConfig(window_size=6, minimum_calls=3, failure_rate=0.5,
                                    slow_call_rate=0.8, slow_call_s=1.0, open_s=2.0,
                                    open_multiplier=3.0, max_open_s=20.0, half_open_calls=2)
        self.breaker = CircuitBreaker(self.config, self.clock)
        self.permits: list[Permit] = []
        self.returned: list[Permit] = []  # handed back already
        self.open_until_seen: float | None = None

    @rule(failure=st.booleans())
    def acquire(self, failure: bool) -> None:
        before = self.breaker.state
        permit = self.breaker.acquire()
        if before is BreakerState.OPEN and self.breaker.state is BreakerState.HALF_OPEN:
            assert self.open_until_seen is not None and self.clock.now >= self.open_until_seen
        if before is BreakerState.FORCED_OPEN:
            assert permit is None
        if permit is not None:
            self.permits.append(permit)

    @precondition(lambda self: self.permits)
    @rule(data=st.data(), failure=st.booleans(), duration=st.floats(0, 3))
    def record(self, data: st.DataObject, failure: bool, duration: float) -> None:
        permit = self.permits.pop(data.draw(st.integers(0, len(self.permits) - 1)))
        self.breaker.record(permit, failure=failure, duration_s=duration)
        self.returned.append(permit)

    @precondition(lambda self: self.returned)
    @rule(data=st.data(), failure=st.booleans())
    def hand_back_twice(self, data: st.DataObject, failure: bool) -> None:
        permit = data.draw(st.sampled_from(self.returned))
        before = self.breaker.snapshot()
        if data.draw(st.booleans()):
            assert self.breaker.record(permit, failure=failure, duration_s=0.1) is None
        else:
            self.breaker.release(permit)
        after = self.breaker.snapshot()
        assert (after.state, after.calls, after.half_open_in_flight) == (
            before.state, before.calls, before.half_open_in_flight)

    @precondition(lambda self: self.permits)
    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        permit = self.permits.pop(data.draw(st.integers(0, len(self.permits) - 1)))
        self.breaker.release(permit)
        self.returned.append(permit)

    @rule(seconds=st.floats(0, 25))
    def advance(self, seconds: float) -> None:
        self.clock.now += seconds

    @rule(ahead=st.floats(-5, 40))
    def trip(self, ahead: float) -> None:
        before = self.breaker.open_until
        self.breaker.trip(self.clock.now + ahead, "outside")
        after = self.breaker.open_until
        if before is not None and self.breaker.state is BreakerState.OPEN:
            assert after is not None and after >= before  # never shortened

    @rule()
    def force_open(self) -> None:
        self.breaker.force_open("auth")

    @rule()
    def reset(self) -> None:
        self.breaker.reset()

    @invariant()
    def consistent(self) -> None:
        snap = self.breaker.snapshot()
        assert snap.state in set(BreakerState)
        assert 0 <= snap.half_open_in_flight <= self.config.half_open_calls
        assert 0.0 <= snap.failure_rate <= 1.0 and 0.0 <= snap.slow_call_rate <= 1.0
        assert snap.calls <= self.config.window_size
        if snap.state is BreakerState.OPEN:
            assert snap.open_until is not None and snap.open_until > -math.inf
        if snap.state is not BreakerState.HALF_OPEN:
            assert snap.half_open_in_flight == 0
        self.open_until_seen = snap.open_until if snap.state is BreakerState.OPEN else None
        for transition in self.breaker.drain():
            assert transition.old is not transition.new


TestBreakerMachine = BreakerMachine.TestCase
TestBreakerMachine.settings = settings(max_examples=100, stateful_step_count=60, deadline=None)


# --- concurrency ------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_1000_concurrent_tasks_against_a_half_open_breaker_exactly_n_probes_pass() -> None:
    breaker, clock = make(half_open_calls=5)
    trip(breaker)
    clock.now += 10
    passed: list[Permit] = []
    refused = 0
    go = anyio.Event()

    async def task() -> None:
        nonlocal refused
        await anyio.lowlevel.checkpoint()
        permit = breaker.acquire()
        if permit is None:
            refused += 1
            return
        passed.append(permit)
        await go.wait()  # the probe is in flight while the other tasks try
        breaker.record(permit, failure=False, duration_s=0.1)

    async with anyio.create_task_group() as group:
        for _ in range(1000):
            group.start_soon(task)
        while len(passed) + refused < 1000:
            await anyio.lowlevel.checkpoint()
        assert len(passed) == 5 and refused == 995
        assert all(p.half_open for p in passed)
        assert breaker.snapshot().half_open_in_flight == 5
        go.set()
    assert breaker.state is CLOSED


# --- shared breakers ------------------------------------------------------------------------


async def _shared_breakers(store_a: Store, store_b: Store) -> None:
    mono_a, mono_b, wall = Clock(100.0), Clock(5000.0), Clock(1_700_000_000.0)

    def wall_clock() -> float:
        return wall.now

    config = BreakerConfig(window_size=4, minimum_calls=4, open_s=30.0)
    a = BreakerRegistry(config, clock=mono_a, wall_clock=wall_clock, store=store_a, sync_s=1.0)
    b = BreakerRegistry(config, clock=mono_b, wall_clock=wall_clock, store=store_b, sync_s=1.0)
    assert await b.sync("dep") is None
    for _ in range(4):
        call(a.get("dep"), failure=True)
    assert a.get("dep").state is OPEN
    shared = await a.publish("dep")
    assert shared == pytest.approx(wall.now + 30.0)
    assert await b.sync("dep") is None  # synced less than sync_s ago: no I/O, no change
    for clock in (mono_a, mono_b, wall):
        clock.now += 1.0
    transition = await b.sync("dep")
    assert transition is not None and transition.new is OPEN
    assert "another process" in transition.reason
    assert b.get("dep").open_until == pytest.approx(mono_b.now + 29.0)
    assert b.get("dep").acquire() is None
    assert await a.sync("dep") is None  # its own cooldown: no change
    # a later local trip in b is published and never shortened by a's earlier one
    b.get("dep").trip(mono_b.now + 100.0, "Retry-After")
    assert await b.publish("dep") == pytest.approx(wall.now + 100.0)
    for clock in (mono_a, mono_b, wall):
        clock.now += 1.0
    await a.sync("dep")
    assert a.get("dep").open_until == pytest.approx(mono_a.now + 99.0)
    await a.publish("dep")
    assert (await store_b.get([open_until_key("dep")]))[0] == pytest.approx(wall.now + 99.0)
    assert set(a.snapshots()) == {"dep"} and a.snapshots()["dep"].state is OPEN


@pytest.mark.anyio
async def test_two_registries_share_breakers_through_one_memory_store() -> None:
    store = MemoryStore()
    await _shared_breakers(store, store)


@pytest.mark.anyio
async def test_two_registries_share_breakers_through_redis(redis_server: str) -> None:
    a = RedisStore(redis_server, prefix="test-breaker:")
    b = RedisStore(redis_server, prefix="test-breaker:")
    try:
        await _shared_breakers(a, b)
    finally:
        await a.aclose()
        await b.aclose()


def test_registry_configs_and_bad_values() -> None:
    special = BreakerConfig(open_s=1.0, max_open_s=1.0)
    registry = BreakerRegistry(configs={"slow": special})
    assert registry.get("slow").config is special and registry.get("x").config == BreakerConfig()
    assert registry.get("x") is registry.get("x")
    with pytest.raises(ResilienceConfigError, match="sync_s"):
        BreakerRegistry(sync_s=-1)
    with pytest.raises(ResilienceConfigError, match="deployment"):
        registry.get("")
    with pytest.raises(ResilienceConfigError, match=r"configs\['a'\]: a BreakerConfig"):
        BreakerRegistry(configs={"a": {"open_s": 1}})  # type: ignore[dict-item]


@pytest.mark.anyio
async def test_publish_without_open_breaker_or_store_does_nothing() -> None:
    registry = BreakerRegistry(store=MemoryStore())
    assert await registry.publish("dep") is None
    registry.get("dep").force_open("auth")
    assert await registry.publish("dep") is None  # forced open stays local
    assert await BreakerRegistry().sync("dep") is None
