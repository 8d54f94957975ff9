"""Which tenant a request belongs to: answers are never shared across tenants. One resolver decides it, for the
completions path, feedback and admin invalidation alike, and says what the tenant may use (its limits).

A client's key counts however the client presents it: ``Authorization`` with any scheme in any case
(``Bearer X`` and ``bearer X`` are one tenant), Azure's ``api-key`` or Anthropic-style ``x-api-key``. Only a hash of
the key is kept. Requests with no key at all share the anonymous tenant.

With ``tenants:`` configured (``TenantResolver``), in this order:

- ``tenants.trusted_header``, when the TCP peer (``request.remote``, not any forwarded-for header) is inside
  ``tenants.trusted_sources``: tenant ``tenant:<value>``, with the limits of the listed tenant of that name (else the
  default limits). From any other peer the header is ignored, not refused: the request goes on as if it were absent
  (a warning is logged once per peer address, and ``cachesvc_tenant_header_ignored`` counts each one).
- a key listed under a tenant (by SHA-256, or read from an environment variable at start-up): ``tenant:<name>``.
- any other key: ``key:<hash>``, no key: ``anonymous``, each with the default limits of its own; with
  ``tenants.require_known_key`` these get 401 ``invalid_api_key`` on every ``/v1/`` route instead.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass

from aiohttp import web

from cachesvc.config import TenantLimitsConfig, TenantsConfig
from cachesvc.metrics import Metrics
from cachesvc.openai.errors import RequestError
from cachesvc.openai.http import Handler

log = logging.getLogger(__name__)

ANONYMOUS = "anonymous"
KEY_HEADERS = ("api-key", "x-api-key")  # besides Authorization, in this order
_PREFIXES = ("tenant:", "key:", ANONYMOUS)


def api_key_of(headers: Mapping[str, str]) -> str | None:
    """The key a client sent: the credentials of ``Authorization`` (after its scheme), else ``api-key``, else
    ``x-api-key``; None when there is none."""
    auth = headers.get("Authorization", "").strip()
    if auth:
        scheme, _, credentials = auth.partition(" ")
        if credentials.strip():
            return credentials.strip()
        if scheme.lower() != "bearer":  # a bare key, sent without a scheme
            return scheme
    for name in KEY_HEADERS:
        value = headers.get(name, "").strip()
        if value:
            return value
    return None


def tenant_of(headers: Mapping[str, str], tenant_header: str | None = None) -> str:
    """The trusted tenant header when configured, else a hash of the client's key, else anonymous."""
    if tenant_header and headers.get(tenant_header):
        return "tenant:" + headers[tenant_header]
    key = api_key_of(headers)
    return ANONYMOUS if key is None else tenant_of_api_key(key)


def tenant_of_api_key(api_key: str) -> str:
    """The tenant of a client that sends ``api_key`` (any of the ways ``api_key_of`` reads)."""
    return "key:" + _digest(api_key)[:32]


def tenant_named(name: str) -> str:
    """A tenant as an operator or a trusted gateway names it: an id as ``tenant_of`` returns it, or a name."""
    return name if name.startswith(_PREFIXES) else "tenant:" + name


@dataclass(frozen=True)
class TenantLimits:
    """What a tenant may use; None: no limit."""

    max_entries: int | None = None
    requests_per_s: float | None = None
    burst: int = 1  # requests at once above requests_per_s
    tokens_per_min: int | None = None

    @classmethod
    def from_config(cls, config: TenantLimitsConfig) -> TenantLimits:
        rate = config.requests_per_s
        burst = config.burst if config.burst is not None else max(1, math.ceil(rate or 1))  # one second's worth
        return cls(config.max_entries, rate, burst, config.tokens_per_min)

    @property
    def rate_limited(self) -> bool:
        return self.requests_per_s is not None or self.tokens_per_min is not None


@dataclass(frozen=True)
class Tenant:
    id: str  # as entries hold it: tenant:<name>, key:<hash> or anonymous
    label: str  # for metrics and messages: a configured tenant's name, else "other" (never a key or its hash)
    limits: TenantLimits
    known: bool  # a listed key, or named by a trusted gateway


NO_TENANTS = TenantsConfig()
TENANT = web.RequestKey("cachesvc_tenant", Tenant)
_MAX_WARNED_PEERS = 256  # peers whose ignored tenant header was logged (then: counted only)


class TenantResolver:
    """Maps a request (its headers and TCP peer) to its tenant and limits, from ``tenants:`` in the config. Keys
    named by ``api_key_env`` are read here, once: a variable that is missing or empty is an error naming it."""

    def __init__(self, config: TenantsConfig = NO_TENANTS, metrics: Metrics | None = None, *,
                 environ: Mapping[str, str] | None = None) -> None:
        environ = os.environ if environ is None else environ
        self._config = config
        self._metrics = metrics
        self.default_limits = TenantLimits.from_config(config.default)
        self._by_name = {t.name: TenantLimits.from_config(t) for t in config.entries}
        self._by_digest: dict[str, str] = {}  # full hex SHA-256 of a key -> tenant name
        for i, tenant in enumerate(config.entries):
            for digest in tenant.api_key_sha256:
                self._by_digest[digest] = tenant.name
            for j, variable in enumerate(tenant.api_key_env):
                key = environ.get(variable, "").strip()
                if not key:
                    raise ValueError(f"tenants.entries[{i}].api_key_env[{j}]: environment variable {variable} is "
                                     f"{'empty' if variable in environ else 'not set'}")
                digest = _digest(key)
                if self._by_digest.setdefault(digest, tenant.name) != tenant.name:
                    raise ValueError(f"tenants.entries[{i}].api_key_env[{j}]: the key in {variable} is already a key "
                                     f"of tenant {self._by_digest[digest]!r}")
        self._sources = [ipaddress.ip_network(s, strict=False) for s in config.trusted_sources]
        self._warned_peers: set[str] = set()

    def resolve(self, headers: Mapping[str, str], peer: str | None) -> Tenant:
        """The tenant of a request with these headers from this TCP peer address (None: unknown, e.g. a unix
        socket)."""
        header = self._config.trusted_header
        if header:
            named = headers.get(header, "")
            if named:
                if self.trusted(peer):
                    return self._named(named)
                self._ignored_header(peer)
        key = api_key_of(headers)
        if key is None:
            return Tenant(ANONYMOUS, "other", self.default_limits, known=False)
        digest = _digest(key)
        name = self._by_digest.get(digest)
        if name is not None:
            return Tenant("tenant:" + name, name, self._by_name[name], known=True)
        return Tenant("key:" + digest[:32], "other", self.default_limits, known=False)

    def of_request(self, request: web.Request) -> Tenant:
        """The request's tenant (resolved once per request); 401 ``invalid_api_key`` for a tenant not known when
        ``tenants.require_known_key`` is on."""
        tenant = request.get(TENANT)
        if tenant is None:
            tenant = self.resolve(request.headers, request.remote)
            if self._config.require_known_key and not tenant.known:
                missing = tenant.id == ANONYMOUS
                if self._metrics is not None:
                    self._metrics.record_tenant_rejected("missing_key" if missing else "unknown_key")
                raise RequestError(401, "You didn't provide an API key." if missing else
                                   "Incorrect API key provided.", code="invalid_api_key")
            request[TENANT] = tenant
        return tenant

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Every ``/v1/`` route: the tenant resolved up front, so that an unknown key is refused before any work."""
        if request.path.startswith("/v1/"):
            self.of_request(request)
        return await handler(request)

    def of_api_key(self, api_key: str) -> str:
        """The tenant id of a client sending ``api_key`` (admin invalidation by key)."""
        name = self._by_digest.get(_digest(api_key))
        return "tenant:" + name if name is not None else tenant_of_api_key(api_key)

    def max_entries(self, tenant: str) -> int | None:
        """The most cache entries tenant id ``tenant`` may hold (None: no quota of its own): a listed tenant's
        ``max_entries``, else ``tenants.default.max_entries``."""
        name = tenant.removeprefix("tenant:") if tenant.startswith("tenant:") else None
        limits = self._by_name.get(name, self.default_limits) if name is not None else self.default_limits
        return limits.max_entries

    def trusted(self, peer: str | None) -> bool:
        """The peer address is inside ``tenants.trusted_sources`` (an IPv4-mapped IPv6 address counts as IPv4)."""
        if not peer:
            return False
        try:
            address = ipaddress.ip_address(peer.partition("%")[0])  # no zone index
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in network for network in self._sources)

    def _named(self, name: str) -> Tenant:
        limits = self._by_name.get(name)
        if limits is None:
            return Tenant("tenant:" + name, "other", self.default_limits, known=True)
        return Tenant("tenant:" + name, name, limits, known=True)

    def _ignored_header(self, peer: str | None) -> None:
        if self._metrics is not None:
            self._metrics.record_tenant_header_ignored()
        where = peer or "an unknown peer"
        if where not in self._warned_peers and len(self._warned_peers) < _MAX_WARNED_PEERS:
            self._warned_peers.add(where)
            log.warning("ignoring the %s header from %s: not in tenants.trusted_sources (logged once per peer)",
                        self._config.trusted_header, where)


def _digest(api_key: str) -> str:
    return hashlib.sha256(api_key.encode("utf-8", "surrogateescape")).hexdigest()
