"""Rate limits shared by every replica: the tenants' buckets in the cache's Redis (``cache.store``: its URL,
password and prefix), so N replicas allow one budget, not N.

Each decision is one Lua script (atomic, one round trip) that reads the clock with Redis's ``TIME``: replicas whose
own clocks disagree still agree on every bucket. Keys, for a cache prefix P and a tenant id T::

    P rl:{T}:r   string: the request bucket's theoretical arrival time (microseconds of Redis's clock)
    P rl:{T}:t   string: the token bucket's, likewise

Both keys of a tenant carry the hash tag ``{T}`` (one Redis Cluster slot per tenant, tenants spread over the slots;
with ``cache.store.cluster`` the limiter uses a cluster client, which sends each tenant's script to its slot's
master and follows the slot map through reshards);
a tenant id that is long or holds other characters than ``[A-Za-z0-9:._-]`` is replaced by a hash in the key.
Every write sets a PX expiry to one second after the bucket is full again: an idle tenant leaves nothing behind.

Redis unreachable, slow (past ``tenants.limiter_timeout_s``) or failing: the request is served without a check
(fail open, ``cachesvc_rate_limiter_unavailable`` counts each), a warning is logged once per outage, and Redis is
left alone for ``RETRY_S`` before the next try, so an outage costs requests no waiting.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import re
import time
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import redis.exceptions
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from cachesvc.cache.stores.redis import RedisSettings, redact_url
from cachesvc.config import Config
from cachesvc.metrics import Metrics
from cachesvc.server.rate_limits import Limited, register_rate_limiter, request_bucket, token_bucket
from cachesvc.server.tenants import Tenant

log = logging.getLogger(__name__)

RETRY_S = 1.0  # after a failure, how long requests pass unchecked before Redis is tried again
_SAFE_ID = re.compile(r"[A-Za-z0-9:._-]{1,128}")
_UNAVAILABLE = (redis.exceptions.RedisError, OSError, TimeoutError)

# KEYS: request bucket, token bucket. ARGV: mode ('a': acquire, 'c': charge), units (requests, or tokens charged),
# request interval (us per request, 0: no limit), request capacity, token interval (us per token, 0: none), token
# capacity. Acquire: nil when taken, else {limit, microseconds to wait} (nothing taken). Charge: nil. The same
# arithmetic as rate_limits.take, in microseconds; 1 us of slack for float noise.
_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local units = tonumber(ARGV[2])
local function tat_of(key)
  local v = redis.call('GET', key)
  v = v and tonumber(v) or now
  if v < now then v = now end
  return v
end
local function store(key, tat)
  redis.call('SET', key, string.format('%.17g', tat), 'PX', math.ceil((tat - now) / 1000) + 1000)
end
local token_iv, token_cap = tonumber(ARGV[5]), tonumber(ARGV[6])
if ARGV[1] == 'c' then
  if token_iv > 0 and units > 0 then store(KEYS[2], tat_of(KEYS[2]) + units * token_iv) end
  return false
end
local request_iv, request_cap = tonumber(ARGV[3]), tonumber(ARGV[4])
local wait, limit, request_tat = 0, '', nil
if request_iv > 0 then
  request_tat = tat_of(KEYS[1]) + units * request_iv
  local over = request_tat - now - request_cap * request_iv
  if over > 1 then wait, limit = over, 'requests' end
end
if token_iv > 0 then
  local over = tat_of(KEYS[2]) + token_iv - now - token_cap * token_iv
  if over > 1 and over > wait then wait, limit = over, 'tokens' end
end
if wait > 0 then return {limit, math.ceil(wait)} end
if request_tat then store(KEYS[1], request_tat) end
return false
"""


@register_rate_limiter("redis")
class RedisRateLimiter:
    """One Lua script per decision on a small connection pool of its own; fails open."""

    name = "redis"

    def __init__(self, config: Config, metrics: Metrics, *, settings: RedisSettings | None = None) -> None:
        s = settings if settings is not None else RedisSettings.from_config(config.cache.store)
        s.validate()
        self._metrics = metrics
        self._url = redact_url(s.url)
        self._prefix = s.prefix + "rl:"
        self._timeout = config.tenants.limiter_timeout_s
        parts = urlsplit(s.url)
        options: dict[str, Any] = {"socket_timeout": self._timeout,
                                   "socket_connect_timeout": min(s.connect_timeout_s, self._timeout),
                                   "retry": Retry(NoBackoff(), 0)}  # no retries: a failure fails open at once
        passwords = [parts.password or ""] + [v for k, v in parse_qsl(parts.query) if k.lower() == "password"]
        if s.password_env and parts.password is None:
            password = os.environ.get(s.password_env)
            if password is None:
                raise ValueError(f"cache.store.password_env: environment variable {s.password_env} is not set")
            options["password"] = password
            passwords.append(password)
        self._secrets = {p for raw in passwords for p in (raw, unquote(raw)) if p}  # scrubbed from log lines
        self._client: Redis | RedisCluster
        try:
            if s.cluster:  # each tenant's slot has its own master: a cluster client follows the slot map
                self._client = RedisCluster.from_url(s.url, max_connections=min(s.max_connections, 16),
                                                     health_check_interval=30, **options)
            else:
                pool = BlockingConnectionPool.from_url(s.url, max_connections=min(s.max_connections, 16),
                                                       timeout=self._timeout, health_check_interval=30, **options)
                self._client = Redis.from_pool(pool)
        except ValueError as exc:
            raise ValueError(f"cache.store.url {self._url}: {exc}".replace(s.url, self._url)) from None
        self._script = self._client.register_script(_SCRIPT)
        self._retry_at = 0.0  # monotonic time before which Redis is not asked (after a failure)
        self._down = False

    def keys(self, tenant_id: str) -> list[str]:
        """The tenant's request and token bucket keys."""
        tag = tenant_id if _SAFE_ID.fullmatch(tenant_id) else "h:" + hashlib.sha256(
            tenant_id.encode("utf-8", "surrogateescape")).hexdigest()[:32]
        return [f"{self._prefix}{{{tag}}}:r", f"{self._prefix}{{{tag}}}:t"]

    async def acquire(self, tenant: Tenant, requests: int = 1) -> Limited | None:
        reply = await self._run(tenant, "a", requests)
        if not reply:  # taken, or Redis unavailable (fail open)
            return None
        limit, wait_us = reply
        return Limited(limit.decode() if isinstance(limit, bytes) else str(limit), int(wait_us) / 1e6)

    async def charge_tokens(self, tenant: Tenant, tokens: int) -> None:
        if tokens > 0 and tenant.limits.tokens_per_min is not None:
            await self._run(tenant, "c", tokens)

    async def close(self) -> None:
        await self._client.aclose()

    async def _run(self, tenant: Tenant, mode: str, units: int) -> Any:
        """The script's reply; None when Redis could not answer (counted, logged once per outage)."""
        if time.monotonic() < self._retry_at:
            self._metrics.record_rate_limiter_unavailable()
            return None
        requests, tokens = request_bucket(tenant.limits), token_bucket(tenant.limits)
        args = [mode, units, *(_micro(requests) if requests else (0, 0)), *(_micro(tokens) if tokens else (0, 0))]
        try:
            async with asyncio.timeout(self._timeout):
                reply = await self._script(keys=self.keys(tenant.id), args=args)
        except _UNAVAILABLE as exc:
            self._retry_at = time.monotonic() + RETRY_S
            self._metrics.record_rate_limiter_unavailable()
            if not self._down:
                self._down = True
                log.warning("rate limits: redis at %s unavailable (%s); serving without rate limits until it "
                            "answers", self._url, self._scrub(exc))
            return None
        if self._down:
            self._down = False
            log.info("rate limits: redis at %s answers again", self._url)
        return reply

    def _scrub(self, exc: BaseException) -> str:
        message = f"{type(exc).__name__}: {exc}"
        for secret in self._secrets:
            message = message.replace(secret, "***")
        return message


def _micro(bucket: tuple[float, float]) -> tuple[float, float]:
    """(interval in microseconds, capacity) for the script."""
    interval, capacity = bucket
    return interval * 1e6, capacity
