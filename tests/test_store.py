"""The Store contract on memory and on a real redis-server; failover to local state."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Sequence

import anyio
import pytest
from redis_server import RedisServer, free_port

from cascade.errors import CascadeError, ConfigError
from cascade.state import (
    Add,
    FailoverStore,
    InvalidAddError,
    MemoryStore,
    RedisStore,
    StateError,
    Store,
    StoreConfigError,
    StoreUnavailableError,
    redact_url,
)

pytestmark = pytest.mark.anyio

# Hundreds of concurrent calls on a busy 2-core machine keep the event loop late by more than
# the 0.5 s default: these tests are about atomicity, not timeouts.
LOADED = 5.0


class Clock:
    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[Store]:
    if request.param == "memory":
        yield MemoryStore()
        return
    url = request.getfixturevalue("redis_server")
    redis_store = RedisStore(url, prefix=f"t{uuid.uuid4().hex[:8]}:", timeout_s=LOADED)
    yield redis_store
    await redis_store.aclose()


# --- the contract, on both stores ----------------------------------------------------------


async def test_add_applies_all_or_nothing(store: Store) -> None:
    assert isinstance(store, Store)
    assert await store.add([Add("a", 1.5), Add("b", 2.0, limit=5.0)]) == (True, (1.5, 2.0))
    ok, values = await store.add([Add("a", 1.0), Add("b", 3.5, limit=5.0)])
    assert (ok, values) == (False, (1.5, 2.0))  # b would break: a is not applied either
    assert await store.get(["a", "b", "missing"]) == (1.5, 2.0, 0.0)
    assert await store.add([Add("b", 3.0, limit=5.0)]) == (True, (5.0,))  # up to the limit
    assert await store.add([]) == (True, ())


async def test_adds_to_one_key_are_checked_in_order(store: Store) -> None:
    ok, values = await store.add([Add("k", 3, limit=5), Add("k", 3, limit=5)])
    assert not ok and values == (0.0, 0.0)
    assert await store.add([Add("k", 3, limit=5), Add("k", 2, limit=5)]) == (True, (3.0, 5.0))


async def test_negative_adds_and_float_values(store: Store) -> None:
    await store.add([Add("x", 0.1), Add("x", 0.2)])
    await store.add([Add("x", -0.05)])
    (value,) = await store.get(["x"])
    assert value == pytest.approx(0.25)
    await store.add([Add("tiny", 1e-7), Add("big", 1e12)])
    assert await store.get(["tiny", "big"]) == (pytest.approx(1e-7), 1e12)


async def test_raise_to_never_lowers(store: Store) -> None:
    assert await store.raise_to("until", 100.0) == 100.0
    assert await store.raise_to("until", 50.0) == 100.0
    assert await store.raise_to("until", 100.25) == 100.25
    assert await store.get(["until"]) == (100.25,)


async def test_bad_values_are_typed_errors(store: Store) -> None:
    for kwargs, field in [({"key": "", "amount": 1}, "key"),
                          ({"key": "k", "amount": float("nan")}, "amount"),
                          ({"key": "k", "amount": 1, "limit": float("inf")}, "limit"),
                          ({"key": "k", "amount": 1, "ttl_s": 0}, "ttl_s"),
                          ({"key": 3, "amount": 1}, "key")]:
        with pytest.raises(InvalidAddError) as info:
            Add(**kwargs)  # type: ignore[arg-type]
        assert info.value.field == field and isinstance(info.value, CascadeError)
    with pytest.raises(InvalidAddError, match="value"):
        await store.raise_to("k", float("inf"))
    with pytest.raises(InvalidAddError, match="ttl_s"):
        await store.raise_to("k", 1.0, ttl_s=-1)
    with pytest.raises(TypeError, match="Add objects"):
        await store.add([("k", 1.0)])  # type: ignore[list-item]


async def test_concurrent_limited_adds_stop_exactly_at_the_limit(store: Store) -> None:
    granted = 0

    async def one() -> None:
        nonlocal granted
        ok, _ = await store.add([Add("pool", 1.0, limit=300.0), Add("count", 1.0)])
        granted += ok

    async with anyio.create_task_group() as group:
        for _ in range(500):
            group.start_soon(one)
    assert granted == 300
    assert await store.get(["pool", "count"]) == (300.0, 300.0)


# --- expiry ------------------------------------------------------------------------------------


async def test_memory_ttl_counts_from_creation_on_a_fake_clock() -> None:
    clock = Clock()
    store = MemoryStore(clock)
    await store.add([Add("bucket", 1.0, ttl_s=60.0)])
    clock.now = 30.0
    await store.add([Add("bucket", 1.0, ttl_s=60.0)])  # does not push the expiry back
    assert await store.get(["bucket"]) == (2.0,)
    clock.now = 60.0
    assert await store.get(["bucket"]) == (0.0,)
    assert await store.add([Add("bucket", 5.0, limit=5.0, ttl_s=60.0)]) == (True, (5.0,))
    assert repr(store) == "MemoryStore(keys=1)"


async def test_memory_raise_to_ttl_only_lengthens() -> None:
    clock = Clock()
    store = MemoryStore(clock)
    await store.raise_to("cool", 10.0, ttl_s=100.0)
    await store.raise_to("cool", 5.0, ttl_s=10.0)  # neither the value nor the life shrinks
    clock.now = 99.0
    assert await store.get(["cool"]) == (10.0,)
    await store.raise_to("cool", 1.0, ttl_s=50.0)  # lengthens the life to 149
    clock.now = 148.0
    assert await store.get(["cool"]) == (10.0,)
    clock.now = 149.0
    assert await store.get(["cool"]) == (0.0,)
    store.clear()
    assert store.value("cool") == 0.0


async def test_redis_ttl_is_set_on_creation(redis_server: str) -> None:
    store = RedisStore(redis_server, prefix=f"ttl{uuid.uuid4().hex[:6]}:")
    try:
        await store.add([Add("short", 1.0, ttl_s=0.3)])
        await store.add([Add("short", 1.0, ttl_s=100.0)])  # not extended by later adds
        await store.raise_to("max", 7.0, ttl_s=0.3)
        await store.raise_to("max", 3.0, ttl_s=0.01)  # does not shorten the life
        assert await store.get(["short", "max"]) == (2.0, 7.0)
        await anyio.sleep(0.45)
        assert await store.get(["short", "max"]) == (0.0, 0.0)
    finally:
        await store.aclose()


# --- redis specifics -----------------------------------------------------------------------------


async def test_redis_script_cache_flushed_falls_back_to_eval(redis_server: str) -> None:
    import redis.asyncio as aioredis

    store = RedisStore(redis_server, prefix=f"ns{uuid.uuid4().hex[:6]}:")
    admin = aioredis.Redis.from_url(redis_server)
    try:
        await store.add([Add("k", 1.0)])
        await admin.script_flush()
        assert await store.add([Add("k", 1.0)]) == (True, (2.0,))
        await admin.script_flush()
        assert await store.raise_to("m", 4.0) == 4.0
        await store.ping()
    finally:
        await admin.aclose()
        await store.aclose()


async def test_redis_two_clients_share_counters_with_prefix(redis_server: str) -> None:
    prefix = f"shared{uuid.uuid4().hex[:6]}:"
    a, b, other = (RedisStore(redis_server, prefix=prefix), RedisStore(redis_server, prefix=prefix),
                   RedisStore(redis_server, prefix=prefix + "x:"))
    try:
        await a.add([Add("n", 2.0)])
        assert await b.add([Add("n", 1.0, limit=3.0)]) == (True, (3.0,))
        assert await a.add([Add("n", 0.5, limit=3.0)]) == (False, (3.0,))
        assert await other.get(["n"]) == (0.0,)
    finally:
        for store in (a, b, other):
            await store.aclose()


async def test_redis_wrong_type_is_a_state_error(redis_server: str) -> None:
    import redis.asyncio as aioredis

    prefix = f"wt{uuid.uuid4().hex[:6]}:"
    admin = aioredis.Redis.from_url(redis_server)
    store = RedisStore(redis_server, prefix=prefix)
    try:
        await admin.lpush(prefix + "list", "x")
        with pytest.raises(StateError) as info:
            await store.add([Add("list", 1.0)])
        assert not isinstance(info.value, StoreUnavailableError)
    finally:
        await admin.aclose()
        await store.aclose()


async def test_redis_unreachable_is_typed_and_hides_the_password() -> None:
    url = f"redis://user:s3cret-pw@127.0.0.1:{free_port()}/0"
    store = RedisStore(url, timeout_s=0.2)
    try:
        for operation in (store.add([Add("k", 1.0)]), store.get(["k"]), store.raise_to("k", 1.0)):
            with anyio.fail_after(5), pytest.raises(StoreUnavailableError) as info:
                await operation
            assert "s3cret" not in str(info.value) and "127.0.0.1" in str(info.value)
        assert "s3cret" not in repr(store) and "***@127.0.0.1" in repr(store)
    finally:
        await store.aclose()
    assert redact_url("redis://:pw@host:1/2") == "redis://***@host:1/2"
    assert redact_url("redis://host:1") == "redis://host:1"


def test_redis_bad_settings_are_config_errors() -> None:
    with pytest.raises(StoreConfigError, match="invalid redis URL") as info:
        RedisStore("http://user:s3cret@host/0")
    assert "s3cret" not in str(info.value) and isinstance(info.value, ConfigError)
    with pytest.raises(StoreConfigError, match="timeout_s"):
        RedisStore("redis://127.0.0.1:1", timeout_s=0)
    with pytest.raises(StoreConfigError, match="max_connections"):
        RedisStore("redis://127.0.0.1:1", max_connections=0)


# --- failover ------------------------------------------------------------------------------------


class Flaky:
    """A store double that fails while ``down`` (unit test of FailoverStore's bookkeeping)."""

    def __init__(self) -> None:
        self.inner = MemoryStore()
        self.down = False
        self.calls = 0
        self.gate: anyio.Event | None = None  # adds wait for it
        self.raise_fails = 0  # this many raise_to calls fail even when up

    def _check(self) -> None:
        self.calls += 1
        if self.down:
            raise StoreUnavailableError("shared state store redis://h:1 unreachable (test)")

    async def add(self, adds: Sequence[Add]) -> tuple[bool, tuple[float, ...]]:
        self._check()
        if self.gate is not None:
            await self.gate.wait()
        return await self.inner.add(adds)

    async def get(self, keys: Sequence[str]) -> tuple[float, ...]:
        self._check()
        return await self.inner.get(keys)

    async def raise_to(self, key: str, value: float, ttl_s: float | None = None) -> float:
        self._check()
        if self.raise_fails:
            self.raise_fails -= 1
            raise StoreUnavailableError("down again")
        return await self.inner.raise_to(key, value, ttl_s)

    async def aclose(self) -> None:
        self.closed = True


async def test_failover_serves_locally_and_resynchronises(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    primary = Flaky()
    changes: list[bool] = []
    store = FailoverStore(primary, MemoryStore(clock), retry_s=5.0, clock=clock,
                          on_change=changes.append)
    await store.add([Add("spent", 4.0, limit=10.0)])
    await store.raise_to("until", 50.0)
    primary.down = True
    with caplog.at_level(logging.WARNING, logger="cascade.state"):
        # seeded with the last value seen: the limit still counts what was spent before
        assert await store.add([Add("spent", 5.0, limit=10.0)]) == (True, (9.0,))
        assert store.degraded and changes == [True]
        assert await store.add([Add("spent", 2.0, limit=10.0)]) == (False, (9.0,))
        assert await store.add([Add("requests", 1.0)]) == (True, (1.0,))
        assert await store.raise_to("until", 80.0) == 80.0
        assert await store.raise_to("until", 60.0) == 80.0
        assert await store.get(["spent", "until"]) == (9.0, 80.0)
        calls = primary.calls
        clock.now = 4.9
        await store.get(["spent"])
        assert primary.calls == calls  # no retry before retry_s
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert [r.getMessage().split(" (")[0] for r in warnings] == [
        "shared state unreachable; serving on local state"]
    # meanwhile another process moved the shared counters
    await primary.inner.add([Add("spent", 0.5), Add("requests", 3.0)])
    clock.now = 5.0
    await store.add([Add("spent", 2.0, limit=10.0)])  # still down at the retry: stays local
    assert store.degraded and changes == [True]
    primary.down = False
    clock.now = 9.9
    assert await store.get(["requests"]) == (1.0,)  # local until the next retry
    clock.now = 10.0
    with caplog.at_level(logging.WARNING, logger="cascade.state"):
        assert await store.get(["spent", "requests", "until"]) == (9.5, 4.0, 80.0)
    assert not store.degraded and changes == [True, False]
    assert "reachable again" in caplog.records[-1].getMessage()
    assert await primary.inner.get(["spent"]) == (9.5,)  # pushed once, not twice
    await store.aclose()
    assert primary.closed


async def test_failover_goes_down_again_after_recovery() -> None:
    clock = Clock()
    primary = Flaky()
    changes: list[bool] = []
    store = FailoverStore(primary, clock=clock, retry_s=1.0, on_change=changes.append)
    primary.down = True
    await store.add([Add("n", 1.0)])
    primary.down = False
    clock.now = 1.0
    await store.add([Add("n", 1.0)])
    primary.down = True
    await store.add([Add("n", 1.0)])
    primary.down = False
    clock.now = 2.0
    assert await store.get(["n"]) == (3.0,)
    assert changes == [True, False, True, False]
    with pytest.raises(StoreConfigError):
        FailoverStore(primary, retry_s=0)


async def test_failover_on_a_real_redis_killed_and_restarted(redis_process: RedisServer) -> None:
    clock = Clock()
    store = FailoverStore(RedisStore(redis_process.url, timeout_s=0.3), retry_s=1.0, clock=clock)
    try:
        await store.add([Add("n", 2.0), Add("budget", 1.0, limit=3.0)])
        redis_process.kill()
        with anyio.fail_after(5):
            ok = await store.add([Add("n", 1.0), Add("budget", 1.0, limit=3.0)])
            assert ok == (True, (3.0, 2.0))
            assert await store.add([Add("budget", 1.5, limit=3.0)]) == (False, (2.0,))
            await store.raise_to("until", 42.0)
        assert store.degraded
        redis_process.restart()  # empty: the local deltas are what comes back
        clock.now = 1.0
        with anyio.fail_after(5):
            assert await store.get(["n", "budget", "until"]) == (1.0, 1.0, 42.0)
        assert not store.degraded
    finally:
        await store.aclose()


async def test_failover_keeps_what_arrives_during_resynchronisation() -> None:
    clock = Clock()
    primary = Flaky()
    store = FailoverStore(primary, clock=clock, retry_s=1.0)
    primary.down = True
    await store.add([Add("n", 1.0)])
    primary.down = False
    gate = primary.gate = anyio.Event()
    clock.now = 1.0
    async with anyio.create_task_group() as group:
        group.start_soon(store.add, [Add("n", 1.0)])  # starts the resync, waits at the gate
        await anyio.wait_all_tasks_blocked()
        for _ in range(10):  # served locally meanwhile, to be pushed in the same resync
            assert (await store.add([Add("n", 1.0)]))[0]
        assert store.degraded
        gate.set()
    assert not store.degraded
    assert await primary.inner.get(["n"]) == (12.0,)


async def test_failover_does_not_push_twice_when_a_maximum_fails() -> None:
    clock = Clock()
    primary = Flaky()
    store = FailoverStore(primary, clock=clock, retry_s=1.0)
    primary.down = True
    await store.add([Add("n", 2.0)])
    await store.raise_to("m", 9.0)
    primary.down = False
    primary.raise_fails = 1
    clock.now = 1.0
    assert await store.get(["n"]) == (2.0,)  # counters pushed, the maximum failed: local
    assert store.degraded and await primary.inner.get(["n", "m"]) == (2.0, 0.0)
    clock.now = 2.0
    assert await store.get(["n", "m"]) == (2.0, 9.0)
    assert not store.degraded


async def test_redis_that_never_answers_times_out() -> None:
    from anyio.abc import SocketAttribute, SocketStream

    async def hold(stream: SocketStream) -> None:
        async with stream:
            await anyio.sleep_forever()

    async with await anyio.create_tcp_listener(local_host="127.0.0.1") as listener:
        port = listener.extra(SocketAttribute.local_port)
        async with anyio.create_task_group() as group:
            group.start_soon(listener.serve, hold)
            store = RedisStore(f"redis://127.0.0.1:{port}/0", timeout_s=0.2)
            start = anyio.current_time()
            with pytest.raises(StoreUnavailableError, match="unreachable"):
                await store.get(["k"])
            assert anyio.current_time() - start < 2.0
            await store.aclose()
            group.cancel_scope.cancel()
