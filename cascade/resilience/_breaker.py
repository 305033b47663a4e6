"""Circuit breaker per deployment: a pure, synchronous state machine on an injected clock."""

from __future__ import annotations

import enum
import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from cascade.errors import CascadeError, ConfigError


class ResilienceValueError(CascadeError, ValueError):
    """A value a breaker, budget or retry budget cannot use. ``field`` names it."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(f"{field}: {message}")


class ResilienceConfigError(ResilienceValueError, ConfigError):
    """A breaker, budget or retry-budget setting that cannot be used. ``field`` names it."""


def _number(field: str, value: object, *, low: float, high: float = math.inf,
            low_open: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        raise ResilienceConfigError(field, f"a number is needed, got {value!r}")
    if value < low or (low_open and value == low) or value > high:
        lower = f"> {low}" if low_open else f">= {low}"
        upper = "" if high == math.inf else f" and <= {high}"
        raise ResilienceConfigError(field, f"must be {lower}{upper}, got {value!r}")


def _integer(field: str, value: object, *, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ResilienceConfigError(field, f"an integer >= {low} is needed, got {value!r}")


class BreakerState(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"
    FORCED_OPEN = "forced_open"


class SlidingWindow(enum.Enum):
    COUNT = "count"  # the last ``window_size`` calls
    TIME = "time"  # the calls of the last ``window_size`` seconds (1-second buckets)


@dataclass(frozen=True, slots=True)
class BreakerConfig:
    """Breaker settings (Resilience4j's, same meaning). Bad values raise
    ``ResilienceConfigError`` (a ``ValueError``) naming the field."""

    window: SlidingWindow = SlidingWindow.COUNT
    window_size: int = 20  # calls (COUNT) or seconds (TIME)
    minimum_calls: int = 10  # no rate is judged before this many calls are in the window
    failure_rate: float = 0.5  # trip when failures / calls >= this
    slow_call_rate: float = 1.0  # trip when slow calls / calls >= this
    slow_call_s: float = 30.0  # a call longer than this is slow
    open_s: float = 30.0  # first open time
    open_multiplier: float = 2.0  # open time grows by this on each consecutive trip
    max_open_s: float = 300.0  # ... up to this
    half_open_calls: int = 3  # probes in a half-open round

    def __post_init__(self) -> None:
        if not isinstance(self.window, SlidingWindow):
            raise ResilienceConfigError("window", f"a SlidingWindow is needed, got {self.window!r}")
        _integer("window_size", self.window_size, low=1)
        _integer("minimum_calls", self.minimum_calls, low=1)
        if self.window is SlidingWindow.COUNT and self.minimum_calls > self.window_size:
            raise ResilienceConfigError(
                "minimum_calls", f"{self.minimum_calls} can never be reached in a count window "
                f"of {self.window_size} calls")
        _number("failure_rate", self.failure_rate, low=0.0, high=1.0, low_open=True)
        _number("slow_call_rate", self.slow_call_rate, low=0.0, high=1.0, low_open=True)
        _number("slow_call_s", self.slow_call_s, low=0.0, low_open=True)
        _number("open_s", self.open_s, low=0.0, low_open=True)
        _number("open_multiplier", self.open_multiplier, low=1.0)
        _number("max_open_s", self.max_open_s, low=self.open_s)
        _integer("half_open_calls", self.half_open_calls, low=1)

    def open_time(self, consecutive_trips: int) -> float:
        """Open time after the n-th consecutive trip (n >= 1), capped at ``max_open_s``."""
        exponent = max(0, consecutive_trips - 1)
        try:
            grown = self.open_s * self.open_multiplier ** exponent
        except OverflowError:
            return self.max_open_s
        return min(grown, self.max_open_s)


@dataclass(frozen=True, slots=True)
class Permit:
    """Leave to make one call. Hand it back exactly once, with ``record`` or ``release``
    (in a ``finally``: the breaker keeps the tokens of permits not yet handed back until its
    next transition). ``token`` tells permits apart: a permit handed back twice counts once."""

    half_open: bool
    generation: int
    token: int = 0


@dataclass(frozen=True, slots=True)
class Transition:
    old: BreakerState
    new: BreakerState
    at: float
    reason: str


@dataclass(frozen=True, slots=True)
class BreakerSnapshot:
    """``trips``: consecutive trips since the breaker last closed (they grow the open time);
    ``total_trips``: every trip since it was built. ``open_until``: None unless OPEN or
    FORCED_OPEN (``math.inf``). Rates are over the window (0.0 when it is empty)."""

    state: BreakerState
    failure_rate: float
    slow_call_rate: float
    calls: int
    open_until: float | None
    trips: int
    half_open_in_flight: int
    total_trips: int = 0


class _Window:
    """Outcomes over the last N calls or the last N seconds, with running totals."""

    __slots__ = ("_buckets", "_size", "_time", "calls", "failures", "slow")

    def __init__(self, kind: SlidingWindow, size: int) -> None:
        self._time = kind is SlidingWindow.TIME
        self._size = size
        self._buckets: deque[list[int]] = deque()  # COUNT: [f, s]; TIME: [second, n, f, s]
        self.calls = self.failures = self.slow = 0

    def clear(self) -> None:
        self._buckets.clear()
        self.calls = self.failures = self.slow = 0

    def expire(self, now: float) -> None:
        if not self._time:
            return
        oldest = math.floor(now) - self._size + 1
        while self._buckets and self._buckets[0][0] < oldest:
            _, n, f, s = self._buckets.popleft()
            self.calls -= n
            self.failures -= f
            self.slow -= s

    def add(self, now: float, failure: bool, slow: bool) -> None:
        f, s = int(failure), int(slow)
        if self._time:
            self.expire(now)
            second = math.floor(now)
            if self._buckets and self._buckets[-1][0] == second:
                bucket = self._buckets[-1]
                bucket[1] += 1
                bucket[2] += f
                bucket[3] += s
            else:
                self._buckets.append([second, 1, f, s])
        else:
            self._buckets.append([f, s])
            if len(self._buckets) > self._size:
                old_f, old_s = self._buckets.popleft()
                self.calls -= 1
                self.failures -= old_f
                self.slow -= old_s
        self.calls += 1
        self.failures += f
        self.slow += s

    def rates(self) -> tuple[float, float]:
        if self.calls == 0:
            return 0.0, 0.0
        return self.failures / self.calls, self.slow / self.calls


_MAX_PENDING = 10_000  # undrained transitions kept; older ones are counted as dropped


class CircuitBreaker:
    """One deployment's breaker (see docs/resilience-state.md for the rules).

    Pure and synchronous: no I/O, and the time comes only from ``clock`` (monotonic seconds).
    Transitions are returned by the call that caused them and also queued for ``drain()``
    (OPEN -> HALF_OPEN happens inside ``acquire``, so it is only seen through ``drain``)."""

    def __init__(self, config: BreakerConfig, clock: Callable[[], float]) -> None:
        if not isinstance(config, BreakerConfig):
            raise ResilienceConfigError("config", f"a BreakerConfig is needed, got {config!r}")
        self.config = config
        self._clock = clock
        self._state = BreakerState.CLOSED
        self._generation = 0
        self._window = _Window(config.window, config.window_size)
        self._open_until = -math.inf
        self._trips = 0
        self._total_trips = 0
        self._outstanding: set[int] = set()  # tokens of this generation's permits not handed back
        self._next_token = 0
        self._probes_ok = 0
        self._probes_slow = 0
        self._pending: deque[Transition] = deque()
        self.dropped_transitions = 0

    def __repr__(self) -> str:
        return f"CircuitBreaker(state={self._state.value}, trips={self._trips})"

    # --- reading -------------------------------------------------------------------------

    @property
    def state(self) -> BreakerState:
        """The state as last moved; an OPEN breaker past ``open_until`` turns HALF_OPEN on
        the next ``acquire``."""
        return self._state

    @property
    def open_until(self) -> float | None:
        """Clock time the breaker opens until; ``math.inf`` when forced open; None when it
        is not open."""
        match self._state:
            case BreakerState.OPEN:
                return self._open_until
            case BreakerState.FORCED_OPEN:
                return math.inf
            case _:
                return None

    def snapshot(self) -> BreakerSnapshot:
        self._window.expire(self._clock())
        failure_rate, slow_rate = self._window.rates()
        return BreakerSnapshot(self._state, failure_rate, slow_rate, self._window.calls,
                               self.open_until, self._trips,
                               len(self._outstanding) if self._state is BreakerState.HALF_OPEN else 0,
                               self._total_trips)

    def drain(self) -> tuple[Transition, ...]:
        """Every transition since the last drain, oldest first."""
        if not self._pending:
            return ()
        out = tuple(self._pending)
        self._pending.clear()
        return out

    # --- moving ----------------------------------------------------------------------------

    def _move(self, new: BreakerState, reason: str) -> Transition:
        transition = Transition(self._state, new, self._clock(), reason)
        self._state = new
        self._generation += 1
        self._outstanding.clear()
        self._probes_ok = self._probes_slow = 0
        if len(self._pending) >= _MAX_PENDING:
            self._pending.popleft()
            self.dropped_transitions += 1
        self._pending.append(transition)
        return transition

    def _open(self, reason: str) -> Transition:
        self._trips += 1
        self._total_trips += 1
        until = self._clock() + self.config.open_time(self._trips)
        self._open_until = max(self._open_until, until)
        self._window.clear()
        return self._move(BreakerState.OPEN, reason)

    def _close(self, reason: str) -> Transition:
        self._trips = 0
        self._window.clear()
        return self._move(BreakerState.CLOSED, reason)

    # --- the call protocol -------------------------------------------------------------------

    def acquire(self) -> Permit | None:
        """A permit for one call, or None: OPEN (before ``open_until``), FORCED_OPEN, or all
        ``half_open_calls`` probes of the half-open round handed out."""
        match self._state:
            case BreakerState.CLOSED:
                self._next_token += 1
                self._outstanding.add(self._next_token)
                return Permit(False, self._generation, self._next_token)
            case BreakerState.FORCED_OPEN:
                return None
            case BreakerState.OPEN:
                if self._clock() < self._open_until:
                    return None
                self._move(BreakerState.HALF_OPEN, "open time elapsed")
                return self._probe()
            case BreakerState.HALF_OPEN:
                return self._probe()

    def _probe(self) -> Permit | None:
        if len(self._outstanding) + self._probes_ok >= self.config.half_open_calls:
            return None
        self._next_token += 1
        self._outstanding.add(self._next_token)
        return Permit(True, self._generation, self._next_token)

    def _current(self, permit: Permit) -> bool:
        if not isinstance(permit, Permit):
            raise TypeError(f"a Permit is needed, got {type(permit).__name__}")
        return permit.generation == self._generation

    def record(self, permit: Permit, *, failure: bool, duration_s: float) -> Transition | None:
        """The outcome of a permitted call. Stale permits (from before the last transition)
        are ignored. Returns the transition it caused, if any."""
        if isinstance(duration_s, bool) or not isinstance(duration_s, int | float) \
                or not duration_s >= 0:
            raise ResilienceValueError("duration_s", f"seconds >= 0, got {duration_s!r}")
        if not self._current(permit) or permit.token not in self._outstanding:
            return None  # stale, or handed back already
        self._outstanding.discard(permit.token)
        slow = duration_s > self.config.slow_call_s
        if permit.half_open:
            return self._record_probe(failure, slow)
        now = self._clock()
        self._window.add(now, failure, slow)
        window = self._window
        if window.calls < self.config.minimum_calls:
            return None
        failure_rate, slow_rate = window.rates()
        if failure_rate >= self.config.failure_rate:
            return self._open(f"failure rate {failure_rate:.2f} >= {self.config.failure_rate} "
                              f"over {window.calls} calls")
        if slow_rate >= self.config.slow_call_rate:
            return self._open(f"slow-call rate {slow_rate:.2f} >= {self.config.slow_call_rate} "
                              f"over {window.calls} calls")
        return None

    def _record_probe(self, failure: bool, slow: bool) -> Transition | None:
        if failure:
            return self._open("a half-open probe failed")
        self._probes_ok += 1
        self._probes_slow += int(slow)
        if self._probes_ok < self.config.half_open_calls:
            return None
        slow_rate = self._probes_slow / self._probes_ok
        if slow_rate >= self.config.slow_call_rate:
            return self._open(f"half-open probes slow-call rate {slow_rate:.2f} >= "
                              f"{self.config.slow_call_rate}")
        return self._close(f"{self._probes_ok} half-open probes succeeded")

    def release(self, permit: Permit) -> None:
        """Hand back a permit whose call was abandoned or whose outcome is not the
        deployment's fault (cancelled, 400): frees a half-open slot, counts nothing."""
        if self._current(permit):
            self._outstanding.discard(permit.token)

    # --- from outside --------------------------------------------------------------------------

    def trip(self, until: float, reason: str) -> Transition | None:
        """Open until ``until`` (clock time) for an outside reason (Retry-After, another
        process's breaker). Never shortens a later ``open_until``; an ``until`` already
        past does nothing; a forced-open breaker stays forced open."""
        if isinstance(until, bool) or not isinstance(until, int | float) or math.isnan(until):
            raise ResilienceValueError("until", f"a clock time is needed, got {until!r}")
        match self._state:
            case BreakerState.FORCED_OPEN:
                self._open_until = max(self._open_until, until)
                return None
            case BreakerState.OPEN:
                self._open_until = max(self._open_until, until)
                return None
            case BreakerState.CLOSED | BreakerState.HALF_OPEN:
                if until <= self._clock():
                    return None
                self._open_until = max(self._open_until, until)
                self._total_trips += 1
                return self._move(BreakerState.OPEN, reason)

    def force_open(self, reason: str) -> Transition | None:
        """Out until ``reset()`` (e.g. the deployment's credentials were refused)."""
        if self._state is BreakerState.FORCED_OPEN:
            return None
        return self._move(BreakerState.FORCED_OPEN, reason)

    def reset(self, reason: str = "reset") -> Transition | None:
        """Back to CLOSED with an empty window and no trips; None if it already was closed."""
        self._trips = 0
        self._window.clear()
        self._open_until = -math.inf
        if self._state is BreakerState.CLOSED:
            return None
        return self._move(BreakerState.CLOSED, reason)


__all__ = [
    "BreakerConfig",
    "BreakerSnapshot",
    "BreakerState",
    "CircuitBreaker",
    "Permit",
    "ResilienceConfigError",
    "ResilienceValueError",
    "SlidingWindow",
    "Transition",
]
