"""One OpenAI-compatible model server behind the proxy: a pooled HTTP client that tracks the server's load."""

from __future__ import annotations

import posixpath
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from urllib.parse import unquote

import aiohttp
from yarl import URL

from cachesvc.config import LoadPolicyConfig, UpstreamConfig
from cachesvc.metrics import Metrics
from cachesvc.openai.errors import RequestError
from cachesvc.upstreams.load import UpstreamLoad
from cachesvc.upstreams.paths import FORWARDED_METHODS, MAX_DECODE_ROUNDS, checked_path, refuse, requoted_query

HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer", "trailers",
    "transfer-encoding", "upgrade", "host", "content-length", "content-encoding", "accept-encoding",
})


def forwardable_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """Headers to pass on: all but hop-by-hop ones and the proxy's own controls."""
    return {
        k: v for k, v in headers.items()
        if k.lower() not in HOP_BY_HOP and not k.lower().startswith("x-cachesvc-") and k.lower() != "cache-control"
    }


class Upstream:
    def __init__(self, config: UpstreamConfig, load: LoadPolicyConfig, metrics: Metrics) -> None:
        self.config = config
        self.name = config.name
        self.load = UpstreamLoad(load)
        self._metrics = metrics
        self._session: aiohttp.ClientSession | None = None
        base = URL(config.url)
        self._base = base
        self._base_path = base.raw_path.rstrip("/")  # "/v1"; "" for a server at the root

    async def open(self) -> None:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self.config.max_connections, ttl_dns_cache=300),
            timeout=aiohttp.ClientTimeout(
                total=None, connect=self.config.connect_timeout_s, sock_read=self.config.read_timeout_s
            ),
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def stats(self) -> dict[str, object]:
        """What admin shows of this upstream: where it is and how loaded."""
        load = self.load
        return {"url": self.config.url, "inflight": load.inflight, "load": round(load.level(), 3),
                "pressure": round(load.pressure(), 3), "latency_ewma_s": round(load.latency_ewma_s, 4),
                "overload_signals": load.overload_signals}

    def headers_for(self, client_headers: Mapping[str, str]) -> dict[str, str]:
        headers = forwardable_headers(client_headers)
        if self.config.api_key:
            headers = {k: v for k, v in headers.items() if k.lower() != "authorization"}
            headers["Authorization"] = f"Bearer {self.config.api_key}"
        return headers

    def url_for(self, path: str, query: str = "") -> URL:
        """The URL for ``path`` under the base path, exactly as checked: ``path`` must pass checked_path (else a
        404/414 RequestError) and is put on the wire as given, percent escapes and all (built ``encoded=True``, so
        yarl neither unquotes nor resolves dot segments on the way out). ``query`` is the raw query string, kept
        as sent but for what requoted_query escapes."""
        path = checked_path(path)
        full = f"{self._base_path}/{path}"
        # Belt and braces: however decoded, the normalised path is still under the base path.
        decoded = unquote(full)
        for _ in range(MAX_DECODE_ROUNDS):
            decoded = unquote(decoded)
        if not posixpath.normpath(decoded).startswith(f"{self._base_path}/"):
            raise refuse("outside the upstream's base path")
        base = self._base
        return URL.build(scheme=base.scheme, authority=base.raw_authority, path=full,
                         query_string=requoted_query(query), encoded=True)

    @asynccontextmanager
    async def request(
        self, method: str, path: str, *, data: bytes | None, client_headers: Mapping[str, str],
        params: Mapping[str, str] | None = None, query: str = "",
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """Send a request; connection failures and time-outs become 502/504 RequestErrors, load is tracked.

        ``path`` is relative to the upstream's base URL and percent-encoded as it is to be sent; one that could
        leave the base path (checked_path) is refused with a 404 RequestError, and a method outside
        FORWARDED_METHODS with a 405, before any header (the configured API key among them) is built or anything
        is sent. ``query`` is a raw query string, ``params`` a mapping that aiohttp encodes; neither can change the
        path."""
        if self._session is None:
            raise RuntimeError("Upstream used before open()")
        if method.upper() not in FORWARDED_METHODS:
            raise RequestError(405, f"The proxy does not forward {method} requests.", code="method_not_allowed")
        url = self.url_for(path, query)
        headers = self.headers_for(client_headers)
        self.load.started()
        self._metrics.record_upstream_started(self.name)
        started = time.monotonic()
        status = 0
        try:
            try:
                response = await self._session.request(
                    method, url, data=data, headers=headers, params=params,
                    allow_redirects=False,
                )
            except TimeoutError:
                status = 504
                raise RequestError(504, f"Upstream {self.name!r} did not answer in time.",
                                   code="upstream_timeout") from None
            except aiohttp.ClientError as exc:
                status = 502
                raise RequestError(502, f"Upstream {self.name!r} is unreachable: {exc.__class__.__name__}.",
                                   code="upstream_unavailable") from None
            status = response.status
            try:
                yield response
            finally:
                response.release()
        finally:
            self.load.finished(time.monotonic() - started, status)
            self._metrics.record_upstream_finished(self.name, status, self.load.level())
