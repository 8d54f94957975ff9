"""One OpenAI-compatible model server behind the proxy: a pooled HTTP client that tracks the server's load."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

import aiohttp

from cachesvc.config import LoadPolicyConfig, UpstreamConfig
from cachesvc.metrics import Metrics
from cachesvc.openai.errors import RequestError
from cachesvc.upstreams.load import UpstreamLoad

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

    def serves(self, model: str) -> bool:
        return not self.config.models or model in self.config.models

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

    @asynccontextmanager
    async def request(
        self, method: str, path: str, *, data: bytes | None, client_headers: Mapping[str, str],
        params: Mapping[str, str] | None = None,
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """Send a request; connection failures and time-outs become 502/504 RequestErrors, load is tracked."""
        if self._session is None:
            raise RuntimeError("Upstream used before open()")
        url = f"{self.config.url}/{path.lstrip('/')}"
        self.load.started()
        self._metrics.record_upstream_started(self.name)
        started = time.monotonic()
        status = 0
        try:
            try:
                response = await self._session.request(
                    method, url, data=data, headers=self.headers_for(client_headers), params=params,
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
