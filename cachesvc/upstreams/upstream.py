"""One OpenAI-compatible model server behind the proxy: a pooled HTTP client that tracks the server's load, retries
where it is safe and fails fast behind a circuit breaker; and the attempt loop that also fails over between several.

``Upstream.request`` (and ``FailoverUpstream.request``, upstreams/failover.py) send one request and yield the
upstream's response once its headers arrived. Before that, and only before that, an attempt that failed may be
made again (``UpstreamRetryConfig``: a retried status after its Retry-After or a full-jitter backoff, a connection
that could not be made) or handed to the next candidate upstream; once the response is yielded nothing is
retried, since the client may already have bytes of it. An attempt whose upstream's breaker is open is not made:
the next candidate gets it, and with none left the request fails fast with a 503 ``upstream_circuit_open`` that
carries a Retry-After (``UpstreamUnavailable.headers``). Every attempt counts in the upstream's load and metrics.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import posixpath
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Literal
from urllib.parse import unquote

import aiohttp
from yarl import URL

from cachesvc.config import LoadPolicyConfig, UpstreamConfig
from cachesvc.metrics import Metrics
from cachesvc.openai.errors import RequestError
from cachesvc.upstreams.circuit_breaker import CircuitBreaker
from cachesvc.upstreams.load import UpstreamLoad
from cachesvc.upstreams.paths import FORWARDED_METHODS, MAX_DECODE_ROUNDS, checked_path, refuse, requoted_query
from cachesvc.upstreams.retry_policy import RetryPolicy, parse_retry_after

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


class UpstreamUnavailable(RequestError):
    """No upstream answered the request; ``headers`` go on the client's response (a Retry-After)."""

    def __init__(self, status: int, message: str, *, code: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(status, message, code=code)
        self.headers = dict(headers or {})


@dataclass
class UpstreamTrace:
    """What sending one request took, for the caller's response headers: filled in by ``request``."""

    attempts: int = 0  # attempts made (sent, or refused by a connection error), over all candidates
    answered_by: str | None = None  # the upstream whose response was yielded
    sent: float | None = None  # time.perf_counter() when that response's attempt was sent


AttemptKind = Literal["answer", "connect", "unanswered"]


@dataclass
class _Attempt:
    """One attempt: a response (``answer``), or no response with its error (``connect``: nothing reached the
    upstream; ``unanswered``: sent, no response headers)."""

    upstream: Upstream
    kind: AttemptKind
    started: float  # time.monotonic(), for the load's latency
    sent: float  # time.perf_counter()
    response: aiohttp.ClientResponse | None = None
    error: RequestError | None = None
    retry_after_s: float | None = None

    @property
    def reason(self) -> str:
        """The metrics label of what failed: the status, connect_error or unanswered."""
        if self.response is not None:
            return str(self.response.status)
        return "connect_error" if self.kind == "connect" else "unanswered"

    def discard(self) -> None:
        """Done with this attempt's response unread (a retry or another upstream answers instead)."""
        if self.response is not None:
            self.response.release()
            self.upstream._finished(self.started, self.response.status)


class Upstream:
    def __init__(self, config: UpstreamConfig, load: LoadPolicyConfig, metrics: Metrics) -> None:
        self.config = config
        self.name = config.name
        self.load = UpstreamLoad(load)
        self.retry = RetryPolicy(config.retry)
        self.breaker = CircuitBreaker(config.breaker.failures, config.breaker.open_s)
        self._reported_state = ""
        self._metrics = metrics
        self._session: aiohttp.ClientSession | None = None
        base = URL(config.url)
        self._base = base
        self._base_path = base.raw_path.rstrip("/")  # "/v1"; "" for a server at the root

    async def open(self) -> None:
        self._report_breaker()
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
                "overload_signals": load.overload_signals, "breaker": self.breaker.state}

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
        params: Mapping[str, str] | None = None, query: str = "", idempotent: bool = True,
        trace: UpstreamTrace | None = None,
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """Send a request, retrying where safe (see the module); yields the response once its headers arrived.

        Connection failures and time-outs become 502/504 RequestErrors, an open breaker a 503
        ``upstream_circuit_open`` (an ``UpstreamUnavailable`` with a Retry-After); a retried status that may not
        be retried again (retries spent, a Retry-After past the cap or the budget) is yielded as the answer.
        ``idempotent=False`` (a pass-through POST or PATCH) retries only connection failures and 429. ``trace``,
        if given, learns who answered after how many attempts.

        ``path`` is relative to the upstream's base URL and percent-encoded as it is to be sent; one that could
        leave the base path (checked_path) is refused with a 404 RequestError, and a method outside
        FORWARDED_METHODS with a 405, before any header (the configured API key among them) is built or anything
        is sent. ``query`` is a raw query string, ``params`` a mapping that aiohttp encodes; neither can change the
        path."""
        async with send_with_failover([self], method, path, data=data, client_headers=client_headers,
                                      params=params, query=query, idempotent=idempotent, trace=trace) as response:
            yield response

    # ---- one attempt -----------------------------------------------------------------------------------

    def _prepare(self, method: str, path: str, query: str,
                 client_headers: Mapping[str, str]) -> tuple[URL, dict[str, str]]:
        """The checked URL and the headers to send, or a 404/405 RequestError before any header is built."""
        if self._session is None:
            raise RuntimeError("Upstream used before open()")
        if method.upper() not in FORWARDED_METHODS:
            raise RequestError(405, f"The proxy does not forward {method} requests.", code="method_not_allowed")
        url = self.url_for(path, query)
        return url, self.headers_for(client_headers)

    def _admit(self) -> bool:
        """May an attempt go to this upstream now (its breaker closed, or this is the half-open probe)?"""
        allowed = self.breaker.allow()
        self._report_breaker()
        if not allowed:
            self._metrics.record_upstream_short_circuit(self.name)
        return allowed

    def circuit_open_error(self) -> UpstreamUnavailable:
        wait = max(1, math.ceil(self.breaker.retry_after_s()))
        return UpstreamUnavailable(503, f"Upstream {self.name!r} is failing; the proxy stopped sending it requests "
                                        f"for a while (circuit open). Try again in {wait} s.",
                                   code="upstream_circuit_open", headers={"Retry-After": str(wait)})

    async def _attempt(self, method: str, url: URL, headers: dict[str, str], data: bytes | None,
                       params: Mapping[str, str] | None) -> _Attempt:
        """Send once. A response is an ``answer``; a failure before one is recorded and returned, not raised."""
        assert self._session is not None
        self.load.started()
        self._metrics.record_upstream_started(self.name)
        started, sent = time.monotonic(), time.perf_counter()
        kind: AttemptKind
        try:
            response = await self._session.request(method, url, data=data, headers=headers, params=params,
                                                   allow_redirects=False)
        except aiohttp.ConnectionTimeoutError:  # before TimeoutError: a connect timeout sent nothing
            kind, error = "connect", RequestError(504, f"Upstream {self.name!r} did not answer in time.",
                                                  code="upstream_timeout")
        except TimeoutError:
            kind, error = "unanswered", RequestError(504, f"Upstream {self.name!r} did not answer in time.",
                                                     code="upstream_timeout")
        except aiohttp.ClientError as exc:
            kind = "connect" if isinstance(exc, aiohttp.ClientConnectorError) else "unanswered"
            error = RequestError(502, f"Upstream {self.name!r} is unreachable: {exc.__class__.__name__}.",
                                 code="upstream_unavailable")
        except BaseException:  # cancelled (the client left): no verdict on the upstream
            self._finished(started, 0)
            self.breaker.release()
            self._report_breaker()
            raise
        else:
            status = response.status
            if self.retry.retries_status(status) and status != 429:
                self.breaker.record_failure()
            else:
                self.breaker.record_success()  # any other answer, an error included, says the upstream is up
            self._report_breaker()
            retry_after = parse_retry_after(response.headers.get("Retry-After")) if status >= 400 else None
            return _Attempt(self, "answer", started, sent, response=response, retry_after_s=retry_after)
        self._finished(started, error.status)
        self.breaker.record_failure()
        self._report_breaker()
        return _Attempt(self, kind, started, sent, error=error)

    def _retries(self, attempt: _Attempt, idempotent: bool) -> bool:
        """Is this failed attempt one that may be made again (here, or at the next candidate)?"""
        if attempt.response is not None:
            return self.retry.retries_status(attempt.response.status, idempotent=idempotent)
        if attempt.kind == "connect":
            return self.config.retry.connect_errors
        return self.config.retry.unanswered and idempotent

    def _finished(self, started: float, status: int) -> None:
        self.load.finished(time.monotonic() - started, status)
        self._metrics.record_upstream_finished(self.name, status, self.load.level())

    def _report_breaker(self) -> None:
        state = self.breaker.state
        if state != self._reported_state:
            self._reported_state = state
            self._metrics.set_upstream_breaker_state(self.name, state)


@asynccontextmanager
async def send_with_failover(
    candidates: Sequence[Upstream], method: str, path: str, *, data: bytes | None,
    client_headers: Mapping[str, str], params: Mapping[str, str] | None = None, query: str = "",
    idempotent: bool = True, trace: UpstreamTrace | None = None,
) -> AsyncIterator[aiohttp.ClientResponse]:
    """The attempt loop behind ``request``: each candidate in turn, with its own retries, until one answers.

    A candidate whose breaker is open is skipped; a connection that cannot be made goes to the next candidate at
    once (retried on the last one only); a retried status is retried on its upstream until its retries are
    spent, then the next candidate gets the request. A failure that may not be retried (a read timeout, say)
    ends the loop. With every candidate spent, the last retried-status answer is yielded if there was one, else
    the failures are raised as one RequestError."""
    trace = trace if trace is not None else UpstreamTrace()
    answer = await _first_answer(candidates, method, path, data=data, client_headers=client_headers,
                                 params=params, query=query, idempotent=idempotent, trace=trace)
    assert answer.response is not None
    trace.answered_by, trace.sent = answer.upstream.name, answer.sent
    status = answer.response.status
    try:
        yield answer.response
    finally:
        answer.response.release()
        answer.upstream._finished(answer.started, status)


async def _first_answer(
    candidates: Sequence[Upstream], method: str, path: str, *, data: bytes | None,
    client_headers: Mapping[str, str], params: Mapping[str, str] | None, query: str, idempotent: bool,
    trace: UpstreamTrace,
) -> _Attempt:
    # Every candidate checks the path and method, and builds its headers, before anything is sent anywhere.
    prepared = [(upstream, *upstream._prepare(method, path, query, client_headers)) for upstream in candidates]
    began = time.monotonic()
    kept: _Attempt | None = None  # the latest answer with a retried status: passed on if nobody does better
    failures: list[tuple[str, RequestError]] = []
    try:
        for index, (upstream, url, headers) in enumerate(prepared):
            more = index + 1 < len(prepared)
            last: _Attempt | None = None
            for retry in itertools.count():
                if not upstream._admit():
                    if last is None:
                        failures.append((upstream.name, upstream.circuit_open_error()))
                    break  # opened by this request's own failures: its last real one stands
                last = await upstream._attempt(method, url, headers, data, params)
                trace.attempts += 1
                if not upstream._retries(last, idempotent):  # the answer, or a failure that ends the loop
                    if last.response is None and kept is not None:
                        return kept  # an earlier real answer beats none
                    if kept is not None:
                        kept.discard()
                        kept = None
                    if last.error is not None:
                        raise last.error
                    return last
                if last.response is not None:
                    if kept is not None:
                        kept.discard()
                    kept = last
                else:
                    assert last.error is not None
                    failures.append((upstream.name, last.error))
                    if last.kind == "connect" and more:
                        break  # nobody there: the next candidate now, not this one again later
                delay = upstream.retry.delay_s(retry, last.retry_after_s, time.monotonic() - began)
                if delay is None:
                    break
                upstream._metrics.record_upstream_retry(upstream.name, last.reason)
                await asyncio.sleep(delay)
            if more:
                reason = last.reason if last is not None else "circuit_open"
                upstream._metrics.record_upstream_failover(upstream.name, reason)
        if kept is not None:
            return kept
        raise _all_failed(failures)
    except BaseException:
        if kept is not None:
            kept.discard()
        raise


def _all_failed(failures: list[tuple[str, RequestError]]) -> RequestError:
    """One error for a request that no candidate answered: the only one's own, else all of them named."""
    if not failures:  # not reached: every candidate either failed or answered
        return RequestError(502, "No upstream serving this request answered.", code="upstream_unavailable")
    if len({name for name, _ in failures}) == 1:
        return failures[-1][1]
    real = [(name, error) for name, error in failures if error.code != "upstream_circuit_open"]
    if not real:  # every candidate's breaker is open: come back when the first may be tried
        waits = [int(e.headers.get("Retry-After", "1")) for _, e in failures if isinstance(e, UpstreamUnavailable)]
        wait = min(waits, default=1)
        return UpstreamUnavailable(503, "Every upstream serving this request is failing; the proxy stopped sending "
                                        f"them requests for a while (circuit open). Try again in {wait} s.",
                                   code="upstream_circuit_open", headers={"Retry-After": str(wait)})
    named = " ".join(error.message for error in _last_per_upstream(failures))
    status, code = real[-1][1].status, real[-1][1].code or "upstream_unavailable"
    return RequestError(status, f"No upstream serving this request answered. {named}", code=code)


def _last_per_upstream(failures: list[tuple[str, RequestError]]) -> list[RequestError]:
    last: dict[str, RequestError] = {}
    for name, error in failures:
        last[name] = error
    return list(last.values())
