"""Per-tenant rate limits: requests per second (with a burst) and upstream tokens per minute, refused with 429.

Both limits are one GCRA bucket each (the generic cell rate algorithm: a token bucket kept as a single number, the
*theoretical arrival time* ``tat``; a bucket whose ``tat`` is in the past is full, and forgetting it changes
nothing). Units drain at ``rate`` per second; a bucket holds ``capacity`` units:

- requests: every request to an upstream-backed route takes one unit: completions (cache hits included) and
  pass-through calls (embeddings, responses, files, ...); the request is refused when there is none left;
  capacity ``burst``, rate ``requests_per_s``.
- tokens: a request is refused while the bucket is empty (not even one token left), and the answer's tokens are
  charged after it came back (``usage.total_tokens``, else prompt + completion tokens), so one large answer may
  put the bucket in debt: the tenant then waits until it is paid off. Capacity ``tokens_per_min``, rate
  ``tokens_per_min / 60``. Only answers from upstream are charged: a cache hit (and an identical request that
  shared an answer in flight) cost no upstream tokens and are free; a stream without a usage chunk (an upstream
  with ``stream_usage: false``) charges nothing. A pass-through answer is charged what its JSON ``usage`` says
  (``openai/usage_tail.py`` finds it without holding the answer).

A refused request is an OpenAI-style 429 (``rate_limit_error`` / ``rate_limit_exceeded``, what the SDKs retry on)
with ``Retry-After`` in whole seconds (rounded up), ``retry-after-ms`` and ``x-ratelimit-{limit,remaining,reset}-
{requests,tokens}`` for the limit reached. Limiters are registered by name: ``memory`` (one replica's own buckets)
and ``redis`` (``rate_limits_redis.py``: one budget shared by every replica), used when ``cache.store.kind`` is
``redis``. A limiter that cannot reach its state fails open: the request is served, never refused or failed.
"""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from aiohttp import web

from cachesvc.config import Config
from cachesvc.metrics import Metrics
from cachesvc.openai.answer import Answer
from cachesvc.openai.errors import RequestError
from cachesvc.server.tenants import Tenant, TenantLimits

Clock = Callable[[], float]
_SLACK_S = 1e-6  # float noise: a bucket this little over its capacity is not over it


@dataclass(frozen=True)
class Limited:
    """A request refused: which limit (``requests`` or ``tokens``) and how long until it would pass."""

    limit: str
    wait_s: float


class RateLimiter(Protocol):
    """Buckets per tenant id; a tenant's limits come with it (``Tenant.limits``)."""

    name: str

    async def acquire(self, tenant: Tenant, requests: int = 1) -> Limited | None:
        """Take ``requests`` from the request bucket if the tenant has them and its token bucket is not empty;
        else take nothing and say what to wait for."""
        ...

    async def charge_tokens(self, tenant: Tenant, tokens: int) -> None:
        """Charge upstream tokens to the tenant's token bucket (it may go into debt)."""
        ...

    async def close(self) -> None:
        ...


LimiterFactory = Callable[[Config, Metrics], RateLimiter]
RATE_LIMITERS: dict[str, LimiterFactory] = {}


def register_rate_limiter(name: str) -> Callable[[LimiterFactory], LimiterFactory]:
    def wrap(factory: LimiterFactory) -> LimiterFactory:
        RATE_LIMITERS[name] = factory
        return factory
    return wrap


def limiter_name(config: Config) -> str:
    """``redis`` when the cache is shared through Redis (the replicas then share the budgets too), else ``memory``."""
    return "redis" if config.cache.store.kind == "redis" else "memory"


def create_rate_limiter(config: Config, metrics: Metrics) -> RateLimiter:
    name = limiter_name(config)
    if name == "redis":  # only then: importing redis-py costs start-up time the memory limiter need not pay
        from cachesvc.server import rate_limits_redis  # noqa: F401  (registration)
    return RATE_LIMITERS[name](config, metrics)


# ---- the arithmetic, shared by both limiters (the Redis script does the same in Lua) ----------------------


def take(tat: float, now: float, interval: float, capacity: float, units: float) -> tuple[float, float]:
    """GCRA: a bucket at ``tat`` (``interval`` seconds per unit, ``capacity`` units) asked for ``units`` at
    ``now``: (its tat after taking them, 0.0) when they fit, else (``tat`` unchanged, seconds until they fit)."""
    start = max(tat, now)
    after = start + units * interval
    over = after - now - capacity * interval
    return (after, 0.0) if over <= _SLACK_S else (tat, over)


def request_bucket(limits: TenantLimits) -> tuple[float, float] | None:
    """(interval, capacity) of the request bucket, None without a request limit."""
    if limits.requests_per_s is None:
        return None
    return 1.0 / limits.requests_per_s, float(limits.burst)


def token_bucket(limits: TenantLimits) -> tuple[float, float] | None:
    """(interval, capacity) of the token bucket, None without a token limit."""
    if limits.tokens_per_min is None:
        return None
    return 60.0 / limits.tokens_per_min, float(limits.tokens_per_min)


def tokens_of(answer: Answer) -> int:
    """The upstream tokens an answer cost (``tokens_of_usage`` of its usage); 0 without usage."""
    return tokens_of_usage(answer.usage or {})


def tokens_of_usage(usage: dict[str, Any]) -> int:
    """The tokens a ``usage`` object reports: ``total_tokens``, else prompt + completion (chat, completions,
    embeddings), else input + output (the Responses API)."""
    total = _count(usage.get("total_tokens"))
    if total is not None:
        return total
    chat = sum(_count(usage.get(name)) or 0 for name in ("prompt_tokens", "completion_tokens"))
    return chat or sum(_count(usage.get(name)) or 0 for name in ("input_tokens", "output_tokens"))


def _count(value: object) -> int | None:
    """A token count as usage holds it (a non-negative number), else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        return None
    return int(value)


# ---- one replica's buckets --------------------------------------------------------------------------------


@register_rate_limiter("memory")
class MemoryRateLimiter:
    """Buckets in this process (per replica: N replicas allow N times the budget). Full buckets are forgotten
    when the table grows, so unknown keys cannot grow it without bound for longer than their buckets refill."""

    name = "memory"

    def __init__(self, config: Config | None = None, metrics: Metrics | None = None, *,
                 clock: Clock = time.monotonic) -> None:
        self._clock = clock
        self._buckets: dict[str, list[float]] = {}  # tenant id -> [request tat, token tat]
        self._sweep_at = 4096

    async def acquire(self, tenant: Tenant, requests: int = 1) -> Limited | None:
        now = self._clock()
        state = self._buckets.get(tenant.id) or [now, now]
        limited: Limited | None = None
        request_tat = state[0]
        if (bucket := request_bucket(tenant.limits)) is not None:
            request_tat, wait = take(state[0], now, *bucket, requests)
            if wait > 0:
                limited = Limited("requests", wait)
        if (bucket := token_bucket(tenant.limits)) is not None:
            _, wait = take(state[1], now, *bucket, 1)  # a look only: tokens are charged after the answer
            if wait > 0 and (limited is None or wait > limited.wait_s):
                limited = Limited("tokens", wait)
        if limited is None:
            state[0] = request_tat
            self._keep(tenant.id, state, now)
        return limited

    async def charge_tokens(self, tenant: Tenant, tokens: int) -> None:
        bucket = token_bucket(tenant.limits)
        if bucket is None or tokens <= 0:
            return
        now = self._clock()
        state = self._buckets.get(tenant.id) or [now, now]
        state[1] = max(state[1], now) + tokens * bucket[0]
        self._keep(tenant.id, state, now)

    async def close(self) -> None:
        self._buckets.clear()

    def _keep(self, tenant_id: str, state: list[float], now: float) -> None:
        self._buckets[tenant_id] = state
        if len(self._buckets) >= self._sweep_at:
            self._buckets = {k: v for k, v in self._buckets.items() if max(v) > now}
            self._sweep_at = max(4096, 2 * len(self._buckets))


# ---- what the completions path calls ----------------------------------------------------------------------


class RateLimited(RequestError):
    """429 with the headers that say when to come back."""

    def __init__(self, tenant: Tenant, limited: Limited) -> None:
        limits = tenant.limits
        if limited.limit == "requests":
            what, limit = f"{limits.requests_per_s:g} requests per second (burst {limits.burst})", limits.burst
        else:
            what, limit = f"{limits.tokens_per_min} tokens per minute", limits.tokens_per_min or 0
        whose = f" of tenant {tenant.label!r}" if tenant.label != "other" else ""
        super().__init__(429, f"Rate limit reached for {limited.limit}{whose}: {what}. "
                              f"Please try again in {limited.wait_s:.3g}s.", code="rate_limit_exceeded")
        self.limited = limited
        self.headers = {
            "Retry-After": str(max(1, math.ceil(limited.wait_s))),
            "retry-after-ms": str(max(1, math.ceil(limited.wait_s * 1000))),
            f"x-ratelimit-limit-{limited.limit}": str(limit),
            f"x-ratelimit-remaining-{limited.limit}": "0",
            f"x-ratelimit-reset-{limited.limit}": f"{limited.wait_s:.3f}s",
        }


class TenantRateLimits:
    """The configured limiter, behind two calls: ``admit`` before a request, ``charge`` after its answer. Tenants
    without limits never reach the limiter (no Redis round trip)."""

    def __init__(self, limiter: RateLimiter, metrics: Metrics) -> None:
        self.limiter = limiter
        self._metrics = metrics

    @classmethod
    def from_config(cls, config: Config, metrics: Metrics) -> TenantRateLimits:
        return cls(create_rate_limiter(config, metrics), metrics)

    async def admit(self, tenant: Tenant) -> None:
        """Count one request; raises ``RateLimited`` when the tenant is over a limit."""
        if not tenant.limits.rate_limited:
            return
        limited = await self.limiter.acquire(tenant)
        if limited is not None:
            self._metrics.record_rate_limited(limited.limit, tenant.label)
            raise RateLimited(tenant, limited)

    async def charge(self, tenant: Tenant, answer: Answer) -> None:
        """Charge an upstream answer's tokens to the tenant."""
        await self.charge_usage(tenant, answer.usage or {})

    async def charge_usage(self, tenant: Tenant, usage: dict[str, Any]) -> None:
        """Charge the tokens an upstream's ``usage`` object reports (a pass-through answer's) to the tenant."""
        if tenant.limits.tokens_per_min is None:
            return
        tokens = tokens_of_usage(usage)
        if tokens > 0:
            self._metrics.record_tenant_tokens(tenant.label, tokens)
            await self.limiter.charge_tokens(tenant, tokens)

    async def lifetime(self, app: web.Application) -> AsyncIterator[None]:
        """A ``cleanup_ctx`` entry: the limiter's connections close with the app."""
        yield
        await self.limiter.close()
