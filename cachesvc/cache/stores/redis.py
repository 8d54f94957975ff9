"""Shared store: entries in one Redis, so that several proxy replicas serve and fill one cache.

Key layout, for a cache named by ``prefix`` P (default ``cachesvc:``); every key carries the hash tag ``{P}``::

    {P}e:<entry_id>    hash, one per entry, four fields:
                         meta       JSON: entry_id, the EntryScope fields (partition, exact_key, tenant, namespace,
                                    category, model), query (null: none), created_at, ttl_s, expires_at
                         answer     Answer.to_json(), as the sqlite store writes it
                         vector     float32 bytes (absent: None)
                         exact_key  the scope's exact key again, for the scripts (which read no JSON)
                       PEXPIREAT at the entry's expires_at: Redis drops it by itself. Few, large fields: a scan
                       parses 3 bulk strings per entry, not one per scope field (redis-py's parser is the cost).
    {P}x:<exact_key>   string: the entry_id of the newest entry put under that exact key; same expiry as the entry.
    {P}ids             sorted set of every entry_id, scored by expires_at: scan walks it (ZSCAN), count counts it;
                       members whose score passed are dropped first, members whose hash is gone are dropped lazily.
    {P}feed            stream, the change feed: one record per applied put (``op p``) and per delete of an entry that
                       existed (``op d``), fields ``id`` and ``o`` (the writing store's origin id), written by the same
                       script as the change itself (a change is in the feed if and only if it happened), trimmed to
                       about ``feed_max_len`` records. Its record ids are Redis's clock in ms: the propagation delay.
                       Expiry writes nothing: every replica drops an entry at the ``expires_at`` all of them hold.
    {P}layout          string: the version of this layout ("2"), so that a different layout is refused, not misread.

One put, one delete and one exact lookup are each a Lua script (atomic, one round trip): an entry is written whole or
not at all, and a replaced or deleted entry's exact-key mapping moves or goes with it. A script must name its keys in
one Redis Cluster slot, and a put touches the entry, its exact key and the index together, so the tag is per cache,
not per entry: under Cluster one cache lives in one slot (shard it by running caches under several prefixes). The
scripts also reach ``{P}x:`` and ``{P}e:`` keys they compute from a stored field: same tag, hence the same slot.

Redis evicting under ``maxmemory`` must take entries only: run it with a ``volatile-*`` policy (``volatile-ttl``, the
soonest to expire first), which never evicts the index or the layout key (they have no expiry); an ``allkeys-*``
policy could drop the index, and a rebuild would then miss entries still stored. ``open`` warns about such a policy.

Entries hold tenants as ``server.tenants`` names them (``key:`` + a hash of the API key, or a trusted name), never an
API key; nothing here logs an entry's content. Errors talking to Redis raise ``StoreUnavailable`` with the URL's
password redacted.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, fields
from typing import Any, Literal, TypeVar, cast
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

import redis.exceptions
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.commands.core import AsyncScript

from cachesvc.cache.entry import SCOPE_FIELDS, CacheEntry, EntryScope
from cachesvc.cache.stores import register_store
from cachesvc.cache.stores.base import StoreUnavailable
from cachesvc.cache.stores.change_feed import START, Change, FeedBatch
from cachesvc.config import StoreConfig
from cachesvc.openai import codec
from cachesvc.openai.answer import Answer

log = logging.getLogger(__name__)
T = TypeVar("T")

LAYOUT_VERSION = b"2"  # 2: the change feed
_RETRIES = 1  # one reconnect per command: rides out a restarted server or a stale pooled connection, no more

# KEYS: entry hash, exact-key string, index, feed. ARGV: entry_id, expiry (unix ms), score (expires_at), exact-key
# prefix, origin, feed length, then field, value, ... of the hash. A PEXPIREAT/PXAT in the past deletes at once; its
# index member goes at the next scan or count.
_PUT = """
local old = redis.call('HGET', KEYS[1], 'exact_key')
if old then
  local old_key = ARGV[4] .. old
  if old_key ~= KEYS[2] and redis.call('GET', old_key) == ARGV[1] then redis.call('DEL', old_key) end
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], unpack(ARGV, 7))
redis.call('PEXPIREAT', KEYS[1], ARGV[2])
redis.call('SET', KEYS[2], ARGV[1], 'PXAT', ARGV[2])
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[1])
redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[6], '*', 'op', 'p', 'id', ARGV[1], 'o', ARGV[5])
return 1
"""

# KEYS: entry hash, index, feed. ARGV: entry_id, exact-key prefix, origin, feed length. Returns 1 if the entry existed
# (and only then writes to the feed).
_DELETE = """
redis.call('ZREM', KEYS[2], ARGV[1])
local exact = redis.call('HGET', KEYS[1], 'exact_key')
if exact then
  local exact_key = ARGV[2] .. exact
  if redis.call('GET', exact_key) == ARGV[1] then redis.call('DEL', exact_key) end
end
local removed = redis.call('DEL', KEYS[1])
if removed == 1 then
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[4], '*', 'op', 'd', 'id', ARGV[1], 'o', ARGV[3])
end
return removed
"""

# KEYS: index. ARGV: cursor, count, entry-key prefix, then the fields to read. One ZSCAN step: the next cursor, then
# id, field values... for each member whose entry exists; members without one are removed from the index.
_SCAN = """
local step = redis.call('ZSCAN', KEYS[1], ARGV[1], 'COUNT', ARGV[2])
local out = {step[1]}
local members = step[2]
local stale = {}
for i = 1, #members, 2 do
  local id = members[i]
  local row = redis.call('HMGET', ARGV[3] .. id, unpack(ARGV, 4))
  if row[1] then
    out[#out + 1] = id
    for j = 1, #row do out[#out + 1] = row[j] end
  else
    stale[#stale + 1] = id
  end
end
if #stale > 0 then redis.call('ZREM', KEYS[1], unpack(stale)) end
return out
"""

# The hash fields get and scan read, in this order (meta first: its absence means the entry is gone).
_READ_FIELDS = ("meta", "answer", "vector")

# KEYS: exact-key string. ARGV: entry-key prefix, then the fields to read. Their values (HMGET), or nil.
_GET_EXACT = """
local id = redis.call('GET', KEYS[1])
if not id then return false end
return redis.call('HMGET', ARGV[1] .. id, unpack(ARGV, 2))
"""

# Errors that mean "Redis cannot serve this now" (all of redis-py's, and the sockets' own).
_UNAVAILABLE = (redis.exceptions.RedisError, OSError)


__all__ = ["EntryTooLarge", "RedisSettings", "RedisStore", "StoreUnavailable", "redact_url"]


@dataclass(frozen=True)
class _Scripts:
    """The store's Lua scripts, registered on its client (EVALSHA, loaded again if the server lost them)."""

    put: AsyncScript
    delete: AsyncScript
    exact: AsyncScript
    scan: AsyncScript


class EntryTooLarge(ValueError):
    """An answer over the store's limit: refused whole rather than stored in part."""


@dataclass(frozen=True, repr=False)
class RedisSettings:
    """What the Redis store needs from `cache.store`; read with defaults, so a config without these fields works."""

    url: str = "redis://127.0.0.1:6379/0"  # redis://[user:password@]host:port/db, rediss:// (TLS) or unix://
    password_env: str | None = None  # name of the environment variable holding the password (never the password)
    prefix: str = "cachesvc:"  # names the cache: caches under different prefixes on one server never meet
    scan_batch: int = 500  # index members per scan step (one script call), puts per put_many round trip
    connect_timeout_s: float = 2.0
    timeout_s: float = 5.0  # one command's reply, a scan batch's included
    max_connections: int = 64  # pooled; a command waits up to timeout_s for a free one
    max_entry_bytes: int = 1024 * 1024  # largest answer (its JSON) stored, as cache.max_entry_bytes
    cluster: bool = False  # url names a node of a Redis Cluster
    feed_max_len: int = 100_000  # change-feed records kept (approximately: Redis trims whole nodes)

    def __repr__(self) -> str:
        """The settings with the URL's password redacted: safe to log."""
        values = ", ".join(f"{f.name}={redact_url(self.url) if f.name == 'url' else getattr(self, f.name)!r}"
                           for f in fields(self))
        return f"RedisSettings({values})"

    @classmethod
    def from_config(cls, config: StoreConfig) -> RedisSettings:
        """The settings from `cache.store`, each field defaulted where the config does not have it."""
        values: dict[str, Any] = {}
        for f in fields(cls):
            value = getattr(config, f.name, None)
            if value is not None:
                values[f.name] = value
        return cls(**values)

    def validate(self) -> None:
        """Refuse settings the store cannot honour, naming the field."""
        if urlsplit(self.url).scheme not in ("redis", "rediss", "unix"):
            raise ValueError(f"cache.store.url must be a redis://, rediss:// or unix:// URL: {redact_url(self.url)}")
        if not self.prefix or any(c in self.prefix for c in "{}"):
            raise ValueError(f"cache.store.prefix must be non-empty and free of braces, got {self.prefix!r}")
        for name in ("scan_batch", "connect_timeout_s", "timeout_s", "max_connections", "max_entry_bytes",
                     "feed_max_len"):
            if not getattr(self, name) > 0:
                raise ValueError(f"cache.store.{name} must be > 0")


def redact_url(url: str) -> str:
    """The URL with any password (in the authority or a ``password=`` query parameter) replaced by ``***``."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if parts.password is not None:
            user, _, host = netloc.rpartition("@")
            name = user.partition(":")[0]
            netloc = f"{name}:***@{host}"
        query = parts.query
        if query:
            pairs = parse_qsl(query, keep_blank_values=True)
            query = urlencode([(k, "***" if k.lower() == "password" else v) for k, v in pairs], safe="*")
        # by hand: urlunsplit drops the empty authority of unix:///path
        return (f"{parts.scheme}://{netloc}{parts.path}" + (f"?{query}" if query else "")
                + (f"#{parts.fragment}" if parts.fragment else ""))
    except ValueError:
        return "<unparseable redis URL>"


@register_store("redis")
class RedisStore:
    """Async through redis.asyncio on a bounded connection pool; every Redis error becomes StoreUnavailable."""

    name = "redis"

    def __init__(self, config: StoreConfig, settings: RedisSettings | None = None) -> None:
        self.settings = settings if settings is not None else RedisSettings.from_config(config)
        self.settings.validate()
        self._url = redact_url(self.settings.url)
        tag = "{" + self.settings.prefix + "}"
        self._entry_prefix = tag + "e:"
        self._exact_prefix = tag + "x:"
        self._ids = tag + "ids"
        self._layout = tag + "layout"
        self._feed = tag + "feed"
        self.origin = secrets.token_hex(8)  # names this instance's writes in the change feed
        self._client: Redis | None = None
        self._scripts: _Scripts | None = None
        parts = urlsplit(self.settings.url)
        passwords = [parts.password or ""] + [v for k, v in parse_qsl(parts.query) if k.lower() == "password"]
        self._secrets = {p for raw in passwords for p in (raw, unquote(raw)) if p}  # scrubbed from error messages

    # ---- connection ---------------------------------------------------------------------------------------

    async def open(self) -> None:
        """Connect, check that Redis answers and that the prefix holds this layout (or nothing yet)."""
        s = self.settings
        extra: dict[str, Any] = {}
        if s.password_env and urlsplit(s.url).password is None:
            password = os.environ.get(s.password_env)
            if password is None:
                raise ValueError(f"cache.store.password_env: environment variable {s.password_env} is not set")
            extra["password"] = password
            if password:
                self._secrets.add(password)
        retry = Retry(ExponentialBackoff(cap=0.5, base=0.05), _RETRIES)
        url = await self._slot_owner_url(extra) if s.cluster else s.url
        try:
            pool = BlockingConnectionPool.from_url(
                url, max_connections=s.max_connections, timeout=s.timeout_s, socket_timeout=s.timeout_s,
                socket_connect_timeout=s.connect_timeout_s, retry=retry, health_check_interval=30, **extra)
        except ValueError as exc:
            raise ValueError(f"cache.store.url {self._url}: {exc}".replace(s.url, self._url)) from None
        client = Redis.from_pool(pool)
        try:
            with self._guard():
                await client.ping()
                await client.set(self._layout, LAYOUT_VERSION, nx=True)
                layout = await client.get(self._layout)
        except BaseException:
            await client.aclose()
            raise
        if layout != LAYOUT_VERSION:
            await client.aclose()
            raise ValueError(f"redis store at {self._url}: prefix {s.prefix!r} holds layout {layout!r}, "
                             f"this build reads {LAYOUT_VERSION!r}; use another cache.store.prefix")
        await self._check_eviction_policy(client)
        self._client = client
        self._scripts = _Scripts(client.register_script(_PUT), client.register_script(_DELETE),
                                 client.register_script(_GET_EXACT), client.register_script(_SCAN))

    async def _slot_owner_url(self, extra: dict[str, Any]) -> str:
        """Redis Cluster: the URL of the master that owns this cache's slot (every key carries one hash tag, so
        one node serves the whole cache, scripts and pipelines included), found through the configured node."""
        s = self.settings
        probe = Redis.from_url(s.url, socket_timeout=s.timeout_s, socket_connect_timeout=s.connect_timeout_s,
                               **extra)
        try:
            with self._guard():
                slot = int(await probe.execute_command("CLUSTER", "KEYSLOT", self._layout))
                ranges = await probe.execute_command("CLUSTER", "SLOTS")
        finally:
            await probe.aclose()
        for start, end, master, *_ in ranges:
            if int(start) <= slot <= int(end):
                host, port = master[0], int(master[1])
                host = host.decode() if isinstance(host, bytes) else str(host)
                parts = urlsplit(s.url)
                auth = parts.netloc.rpartition("@")[0]
                netloc = (auth + "@" if auth else "") + (f"[{host}]" if ":" in host else host) + f":{port}"
                return parts._replace(netloc=netloc).geturl()
        raise StoreUnavailable(f"redis store at {self._url}: no master owns slot {slot} of the cache")

    async def _check_eviction_policy(self, client: Redis) -> None:
        """Warn when Redis may evict keys without an expiry (the index); managed servers that hide CONFIG are left
        alone."""
        try:
            reply: Any = await client.config_get("maxmemory-policy")  # str or bytes values, as the client decodes
            policy = reply.get("maxmemory-policy") or reply.get(b"maxmemory-policy")
        except _UNAVAILABLE:
            return
        if isinstance(policy, bytes):
            policy = policy.decode()
        if isinstance(policy, str) and policy.startswith("allkeys-"):
            log.warning("redis store at %s: maxmemory-policy %s may evict the entry index; use volatile-ttl",
                        self._url, policy)

    async def close(self) -> None:
        """Close the pool's connections; the entries stay in Redis."""
        client, self._client, self._scripts = self._client, None, None
        if client is not None:
            with self._guard():
                await client.aclose()

    @property
    def client(self) -> Redis:
        """The open client; a clear error when used before open()."""
        if self._client is None:
            raise RuntimeError("RedisStore used before open()")
        return self._client

    @property
    def scripts(self) -> _Scripts:
        """The Lua scripts, registered on the open client."""
        if self._scripts is None:
            raise RuntimeError("RedisStore used before open()")
        return self._scripts

    @contextmanager
    def _guard(self) -> Iterator[None]:
        """Turn a Redis or socket error into StoreUnavailable naming the redacted URL (the cause is not chained:
        nothing of the connection's arguments reaches a traceback)."""
        try:
            yield
        except _UNAVAILABLE as exc:
            message = str(exc)
            for secret in self._secrets:
                message = message.replace(secret, "***")
            raise StoreUnavailable(f"redis store at {self._url}: {type(exc).__name__}: {message}") from None

    async def _call(self, awaitable: Awaitable[T]) -> T:
        """Await one Redis command under the guard."""
        with self._guard():
            return await awaitable

    def _key(self, entry_id: int) -> str:
        return f"{self._entry_prefix}{int(entry_id)}"

    # ---- the protocol -------------------------------------------------------------------------------------

    async def put(self, entry: CacheEntry) -> None:
        """Insert or replace by entry_id, atomically; the exact key now names this entry, with its expiry."""
        args = self._put_args(entry)
        await self._call(self.scripts.put(keys=self._put_keys(entry), args=args, client=self.client))

    def _put_keys(self, entry: CacheEntry) -> list[str]:
        return [self._key(entry.entry_id), self._exact_prefix + entry.scope.exact_key, self._ids, self._feed]

    def _put_args(self, entry: CacheEntry) -> list[bytes | str | int | float]:
        """The put script's arguments; EntryTooLarge before anything is sent."""
        answer = entry.answer.to_json()
        if len(answer) > self.settings.max_entry_bytes:
            raise EntryTooLarge(f"answer of {len(answer)} bytes is over the store's {self.settings.max_entry_bytes}")
        meta = {"entry_id": int(entry.entry_id), **{name: getattr(entry.scope, name) for name in SCOPE_FIELDS},
                "query": entry.query, "created_at": float(entry.created_at), "ttl_s": float(entry.ttl_s),
                "expires_at": float(entry.expires_at)}
        mapping: list[bytes | str | int | float] = ["meta", codec.dumps(meta), "answer", answer,
                                                    "exact_key", entry.scope.exact_key]
        vector = entry.vector_bytes()
        if vector is not None:
            mapping += ["vector", vector]
        expires_ms = math.ceil(entry.expires_at * 1000)
        return [int(entry.entry_id), expires_ms, repr(float(entry.expires_at)), self._exact_prefix, self.origin,
                self.settings.feed_max_len, *mapping]

    async def put_many(self, entries: Iterable[CacheEntry]) -> None:
        """Put each entry (each atomically) in pipelined batches of scan_batch: bulk loads and benchmarks."""
        put = self.scripts.put
        batch: list[CacheEntry] = []

        async def flush() -> None:
            async with self.client.pipeline(transaction=False) as pipe:
                for e in batch:
                    await put(keys=self._put_keys(e), args=self._put_args(e), client=pipe)  # queued
                await self._call(pipe.execute())
            batch.clear()

        for entry in entries:
            batch.append(entry)
            if len(batch) >= self.settings.scan_batch:
                await flush()
        if batch:
            await flush()

    async def get(self, entry_id: int) -> CacheEntry | None:
        """The entry, or None when it is absent or expired (Redis expires it on access)."""
        row = cast("list[bytes | None]", await self._call(self.client.hmget(self._key(entry_id), _READ_FIELDS)))
        return self._entry(entry_id, row)

    async def get_by_exact_key(self, exact_key: str) -> CacheEntry | None:
        """The newest entry put under the exact key, in one round trip."""
        reply = await self._call(self.scripts.exact(
            keys=[self._exact_prefix + exact_key], args=[self._entry_prefix, *_READ_FIELDS], client=self.client))
        entry = self._entry(None, reply) if reply else None
        return entry if entry is not None and entry.scope.exact_key == exact_key else None

    async def delete(self, entry_ids: Iterable[int]) -> int:
        """Remove entries with their exact-key mappings and index members; returns how many existed."""
        ids = [int(i) for i in entry_ids]
        delete = self.scripts.delete
        removed = 0
        step = self.settings.scan_batch
        for start in range(0, len(ids), step):
            async with self.client.pipeline(transaction=False) as pipe:
                for entry_id in ids[start:start + step]:
                    await delete(  # queued on the pipeline
                        keys=[self._key(entry_id), self._ids, self._feed],
                        args=[entry_id, self._exact_prefix, self.origin, self.settings.feed_max_len], client=pipe)
                replies = await self._call(pipe.execute())
            removed += sum(int(r) for r in replies)
        return removed

    async def scan(self) -> AsyncIterator[CacheEntry]:
        """Every live entry once, scan_batch index members per step, each step one script call (ZSCAN and the
        entries' fields in one reply), the next step asked for while this one is decoded; ids whose entry is gone
        are dropped from the index by the script, malformed ones here."""
        client = self.client
        await self._call(client.zremrangebyscore(self._ids, "-inf", time.time()))

        async def step(cursor: bytes) -> list[Any]:
            reply: list[Any] = await self._call(self.scripts.scan(
                keys=[self._ids], args=[cursor, self.settings.scan_batch, self._entry_prefix, *_READ_FIELDS],
                client=client))
            return reply

        seen: set[int] = set()  # ZSCAN may return a member twice (the set rehashing under it)
        pending: asyncio.Task[list[Any]] | None = asyncio.ensure_future(step(b"0"))
        try:
            while pending is not None:
                reply = await pending
                cursor = reply[0]
                pending = asyncio.ensure_future(step(cursor)) if cursor != b"0" else None
                entries, malformed = [], []
                for i in range(1, len(reply), 4):
                    member = reply[i]
                    entry_id = int(member) if member.isdigit() else None
                    if entry_id in seen:
                        continue
                    entry = None if entry_id is None else self._entry(entry_id, reply[i + 1:i + 4])
                    if entry is None:
                        malformed.append(member)
                    else:
                        seen.add(entry.entry_id)
                        entries.append(entry)
                if malformed:
                    await self._call(client.zrem(self._ids, *malformed))
                for entry in entries:
                    yield entry
        finally:
            if pending is not None and not pending.done():
                pending.cancel()
                with suppress(asyncio.CancelledError, StoreUnavailable):
                    await pending

    async def count(self) -> int:
        """Entries in the index once expired ones are dropped (an entry Redis evicted under maxmemory still counts
        until a scan finds its hash gone)."""
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.zremrangebyscore(self._ids, "-inf", time.time())
            pipe.zcard(self._ids)
            _, count = await self._call(pipe.execute())
        return int(count)

    # ---- the change feed (SharedStore) ---------------------------------------------------------------------

    async def ping(self) -> None:
        """Return when Redis answers PING; StoreUnavailable when it does not. Under Cluster, a node that no longer
        owns the cache's slot (answers MOVED) is left for the one that does."""
        await self._call(self.client.ping())
        if not self.settings.cluster:
            return
        moved = False
        with self._guard():
            try:
                await self.client.get(self._layout)
            except redis.exceptions.MovedError:  # resharded, or failed over: the slot has another owner
                moved = True
        if moved:  # the old client stays until the new owner answers, so a failed open leaves a usable store
            old = self._client
            await self.open()
            if old is not None and old is not self._client:
                with self._guard():
                    await old.aclose()

    async def get_many(self, entry_ids: Iterable[int]) -> list[CacheEntry | None]:
        """The entries (None for each that is gone), pipelined in one round trip per scan_batch ids."""
        ids = [int(i) for i in entry_ids]
        found: list[CacheEntry | None] = []
        step = self.settings.scan_batch
        for start in range(0, len(ids), step):
            chunk = ids[start:start + step]
            async with self.client.pipeline(transaction=False) as pipe:
                for entry_id in chunk:
                    pipe.hmget(self._key(entry_id), _READ_FIELDS)
                rows = await self._call(pipe.execute())
            found += [self._entry(i, row) for i, row in zip(chunk, rows, strict=True)]
        return found

    async def _feed_info(self) -> _FeedInfo | None:
        """What XINFO STREAM says of the feed; None when it does not exist (nothing written yet, or data lost)."""
        try:
            with self._guard():
                info = await self.client.xinfo_stream(self._feed)
        except StoreUnavailable as exc:
            if "no such key" in str(exc).lower():
                return None
            raise
        first = info.get("first-entry")
        return _FeedInfo(last=_position(info["last-generated-id"]),
                         first=_position(first[0]) if first else None,
                         trimmed=int(info.get("entries-added", 0)) > int(info.get("length", 0)))

    async def feed_position(self) -> str:
        """The newest change's position (START before any)."""
        info = await self._feed_info()
        return START if info is None else _format(info.last)

    async def read_feed(self, position: str, *, block_s: float, count: int) -> FeedBatch:
        """Changes after ``position`` (XREAD, blocking up to ``block_s``). A gap when the feed does not reach back
        to ``position`` (trimmed past it: conservatively, whenever its first record is newer and records were
        trimmed) or when Redis no longer has it (restarted without persistence, flushed: its newest id is older)."""
        asked = _position(position)
        info = await self._feed_info()
        if info is None:
            if asked != (0, 0):
                return FeedBatch((), START, gap=True)
        elif info.last < asked or (info.trimmed and info.first is not None and info.first > asked):
            return FeedBatch((), _format(info.last), gap=True)
        block = max(1, int(block_s * 1000)) if block_s > 0 else None
        reply = cast("list[Any]", await self._call(self.client.xread({self._feed: position}, count=count,
                                                                        block=block)))
        changes: list[Change] = []
        for _stream, records in reply or ():
            for record_id, record in records:
                position = record_id.decode() if isinstance(record_id, bytes) else str(record_id)
                change = _change(position, record)
                if change is not None:
                    changes.append(change)
        return FeedBatch(changes, position)

    # ---- decoding -----------------------------------------------------------------------------------------

    def _entry(self, entry_id: int | None, row: list[bytes | None]) -> CacheEntry | None:
        """The entry from its hash's _READ_FIELDS (``entry_id``: the id it must have); None when the hash is gone,
        and when it is not one this layout wrote (logged by id, never by content)."""
        if row[0] is None:
            return None
        try:
            entry = _decode(row)
        except (KeyError, TypeError, ValueError):
            log.warning("redis store: entry %s under %r is malformed; skipped", entry_id, self.settings.prefix)
            return None
        return entry if entry_id is None or entry.entry_id == entry_id else None


@dataclass(frozen=True)
class _FeedInfo:
    last: tuple[int, int]  # the newest record id Redis generated
    first: tuple[int, int] | None  # the oldest record still kept
    trimmed: bool  # some records were trimmed away


def _position(value: bytes | str) -> tuple[int, int]:
    """A stream id ``ms-seq`` as a comparable pair; ValueError when it is not one."""
    text = value.decode() if isinstance(value, bytes) else value
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


def _format(position: tuple[int, int]) -> str:
    return f"{position[0]}-{position[1]}"


_OPS: dict[bytes, Literal["put", "delete"]] = {b"p": "put", b"d": "delete"}


def _change(record_id: str, record: dict[bytes, bytes]) -> Change | None:
    """A feed record as a Change; None (skipped) for a record this layout did not write."""
    try:
        return Change(_OPS[record[b"op"]], int(record[b"id"]), record.get(b"o", b"").decode(),
                      _position(record_id)[0] / 1000)
    except (KeyError, ValueError):
        return None


def _decode(row: list[bytes | None]) -> CacheEntry:
    """A CacheEntry from its meta, answer and vector; KeyError, TypeError or ValueError when one is malformed."""
    meta_bytes, answer_bytes, vector_bytes = row
    if meta_bytes is None or answer_bytes is None:
        raise KeyError("meta/answer")
    meta = codec.loads(meta_bytes)
    if vector_bytes is not None and len(vector_bytes) % 4:
        raise ValueError("vector bytes are not float32")
    query = meta["query"]
    if not isinstance(query, str | None):
        raise TypeError("query")
    return CacheEntry(
        entry_id=int(meta["entry_id"]), scope=EntryScope(**{name: str(meta[name]) for name in SCOPE_FIELDS}),
        query=query, answer=Answer.from_json(answer_bytes), vector=CacheEntry.vector_from_bytes(vector_bytes),
        created_at=float(meta["created_at"]), ttl_s=float(meta["ttl_s"]), expires_at=float(meta["expires_at"]))
