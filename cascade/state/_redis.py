"""Redis store: every operation is one Lua script, so it is atomic across processes."""

from __future__ import annotations

import hashlib
import importlib
from collections.abc import Awaitable, Callable, Sequence
from types import ModuleType
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

from cascade.state._store import (
    Add,
    StateError,
    StoreConfigError,
    StoreUnavailableError,
    check_key,
    check_number,
    check_seconds,
    check_ttl,
)

T = TypeVar("T")

# KEYS: one per add. ARGV: per add (amount, limit or '', ttl in ms or ''). Returns {ok, v1, ...}
# with values as strings (a Lua number returned to Redis would be truncated to an integer).
_ADD = """
local pending = {}
local ok = true
for i = 1, #KEYS do
  local k = KEYS[i]
  local cur = pending[k]
  if cur == nil then cur = tonumber(redis.call('GET', k) or '0') end
  local amount = tonumber(ARGV[3 * i - 2])
  local limit = ARGV[3 * i - 1]
  if limit ~= '' and cur + amount > tonumber(limit) then ok = false end
  pending[k] = cur + amount
end
local out = {}
if not ok then
  out[1] = 0
  for i = 1, #KEYS do out[i + 1] = redis.call('GET', KEYS[i]) or '0' end
  return out
end
out[1] = 1
for i = 1, #KEYS do
  local k = KEYS[i]
  out[i + 1] = redis.call('INCRBYFLOAT', k, ARGV[3 * i - 2])
  local ttl = ARGV[3 * i]
  if ttl ~= '' and redis.call('PTTL', k) == -1 then redis.call('PEXPIRE', k, ttl) end
end
return out
"""

# KEYS[1]; ARGV: value, ttl in ms or ''. Returns the maximum as a string.
_RAISE = """
local k = KEYS[1]
local cur = redis.call('GET', k)
local new = ARGV[1]
if cur and tonumber(cur) >= tonumber(new) then
  new = cur
else
  redis.call('SET', k, new, 'KEEPTTL')
end
if ARGV[2] ~= '' then
  local ttl = tonumber(ARGV[2])
  local left = redis.call('PTTL', k)
  if (not cur) or (left >= 0 and left < ttl) then redis.call('PEXPIRE', k, ARGV[2]) end
end
return new
"""


def redact_url(url: str) -> str:
    """The URL with its password (and user name) replaced, for messages and reprs."""
    try:
        parts = urlsplit(url)
        if parts.password is None and parts.username is None:
            return url
        host = parts.hostname or ""
        if parts.port is not None:
            host = f"{host}:{parts.port}"
        return urlunsplit((parts.scheme, f"***@{host}", parts.path, "", ""))
    except ValueError:
        return "<unparsable redis URL>"


def _import_redis() -> tuple[ModuleType, ModuleType]:
    try:
        return importlib.import_module("redis.asyncio"), importlib.import_module("redis.exceptions")
    except ImportError as exc:
        raise StoreConfigError(
            "RedisStore needs redis-py: pip install 'cascade-engine[redis]'") from exc


def _ms(ttl_s: float | None) -> str:
    return "" if ttl_s is None else str(max(1, round(ttl_s * 1000)))


class RedisStore:
    """A ``Store`` on Redis (redis-py's asyncio client). ``add`` and ``raise_to`` are single
    Lua scripts (EVALSHA, falling back to EVAL when the server does not have it cached), so
    they are atomic across every process sharing the server. Keys get ``prefix``; keys of one
    ``add`` must live on one node (plain Redis, or a hash tag in a cluster).

    Connection errors and timeouts (``timeout_s`` for connecting and for each reply;
    ``pool_timeout_s`` for the wait for one of the ``max_connections`` pooled connections, which
    under a burst of concurrent calls is a queue, not an outage) raise
    ``StoreUnavailableError``; other Redis errors ``StateError``.
    redis-py's own retries are off: the caller (``FailoverStore``) decides. The URL's password
    never appears in messages or reprs. A ``client`` passed in is used as is and not closed."""

    def __init__(self, url: str, *, prefix: str = "cascade:", client: Any = None,
                 timeout_s: float = 0.5, max_connections: int = 64,
                 pool_timeout_s: float = 5.0) -> None:
        if not isinstance(prefix, str):
            raise StoreConfigError(f"prefix must be a string, got {prefix!r}")
        check_seconds("timeout_s", timeout_s)
        check_seconds("pool_timeout_s", pool_timeout_s)
        if isinstance(max_connections, bool) or not isinstance(max_connections, int) \
                or max_connections < 1:
            raise StoreConfigError(
                f"max_connections must be an integer >= 1, got {max_connections!r}")
        self._where = redact_url(url)
        self._prefix = prefix
        aioredis, self._errors = _import_redis()
        self._owns_client = client is None
        if client is None:
            client = self._build_client(aioredis, url, timeout_s, max_connections, pool_timeout_s)
        self._client = client
        self._shas = {script: hashlib.sha1(script.encode()).hexdigest()
                      for script in (_ADD, _RAISE)}

    def _build_client(self, aioredis: ModuleType, url: str, timeout_s: float,
                      max_connections: int, pool_timeout_s: float) -> Any:
        retry = importlib.import_module("redis.asyncio.retry")
        backoff = importlib.import_module("redis.backoff")
        no_retry = retry.Retry(backoff.NoBackoff(), 0)
        try:
            pool = aioredis.BlockingConnectionPool.from_url(
                url, max_connections=max_connections, timeout=pool_timeout_s,
                socket_timeout=timeout_s, socket_connect_timeout=timeout_s, retry=no_retry)
        except ValueError as exc:  # redis-py says what is wrong with the URL, not the URL
            raise StoreConfigError(f"invalid redis URL {self._where}: {exc}") from None
        return aioredis.Redis(connection_pool=pool, retry=no_retry)

    def __repr__(self) -> str:
        return f"RedisStore({self._where!r}, prefix={self._prefix!r})"

    async def _call(self, op: Callable[[], Awaitable[T]]) -> T:
        errors = self._errors
        try:
            return await op()
        except (errors.ConnectionError, errors.TimeoutError, OSError, TimeoutError) as exc:
            raise StoreUnavailableError(
                f"shared state store {self._where} unreachable ({type(exc).__name__})") from exc
        except errors.RedisError as exc:
            raise StateError(f"shared state store {self._where} failed: {exc}") from exc

    async def _script(self, script: str, keys: list[str], args: list[str]) -> Any:
        async def run() -> Any:
            try:
                return await self._client.evalsha(self._shas[script], len(keys), *keys, *args)
            except self._errors.NoScriptError:
                return await self._client.eval(script, len(keys), *keys, *args)

        return await self._call(run)

    async def add(self, adds: Sequence[Add]) -> tuple[bool, tuple[float, ...]]:
        for item in adds:
            if not isinstance(item, Add):
                raise TypeError(f"Store.add takes Add objects, got {type(item).__name__}")
        if not adds:
            return True, ()
        keys = [self._prefix + item.key for item in adds]
        args: list[str] = []
        for item in adds:
            limit = "" if item.limit is None else repr(float(item.limit))
            args += [repr(float(item.amount)), limit, _ms(item.ttl_s)]
        reply = await self._script(_ADD, keys, args)
        return bool(int(reply[0])), tuple(float(v) for v in reply[1:])

    async def get(self, keys: Sequence[str]) -> tuple[float, ...]:
        names = [self._prefix + check_key(key) for key in keys]
        if not names:
            return ()
        values = await self._call(lambda: self._client.mget(names))
        return tuple(0.0 if v is None else float(v) for v in values)

    async def raise_to(self, key: str, value: float, ttl_s: float | None = None) -> float:
        check_key(key)
        value = check_number("value", value)
        ttl_s = check_ttl(ttl_s)
        reply = await self._script(_RAISE, [self._prefix + key], [repr(value), _ms(ttl_s)])
        return float(reply)

    async def ping(self) -> None:
        """Round trip to the server; raises ``StoreUnavailableError`` if it is not there."""
        await self._call(self._client.ping)

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()


__all__ = ["RedisStore", "redact_url"]
