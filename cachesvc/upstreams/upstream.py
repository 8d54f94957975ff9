"""One OpenAI-compatible model server behind the proxy: a pooled HTTP client that tracks the server's load."""

from __future__ import annotations

import posixpath
import string
import time
import unicodedata
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from urllib.parse import quote, unquote

import aiohttp
from yarl import URL

from cachesvc.config import LoadPolicyConfig, UpstreamConfig
from cachesvc.metrics import Metrics
from cachesvc.openai.errors import RequestError
from cachesvc.upstreams.load import UpstreamLoad

HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer", "trailers",
    "transfer-encoding", "upgrade", "host", "content-length", "content-encoding", "accept-encoding",
})


# What the proxy sends to an upstream on a client's behalf. TRACE would echo the request, the proxy's key included,
# back to the client; CONNECT and WebDAV-style verbs are nothing an OpenAI-compatible server serves.
FORWARDED_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
MAX_PATH_BYTES = 2048  # longer paths are refused with 414; no OpenAI path comes near it
_MAX_DECODE_ROUNDS = 4  # a segment still changing after this many percent-decodings is refused

_UNRESERVED = string.ascii_letters + string.digits + "-._~"
_PCHAR = frozenset(_UNRESERVED + "!$&'()*+,;=:@")  # RFC 3986 pchar, less the %XX escapes
_QUERY_CHARS = _PCHAR | frozenset("/?")
_HEX = frozenset(string.hexdigits)
_DOT_SEGMENTS = frozenset({".", ".."})


def _refuse(reason: str) -> RequestError:
    return RequestError(404, f"Not found: the proxy forwards no such path ({reason}).", code="not_found")


def _well_escaped(text: str, allowed: frozenset[str]) -> bool:
    """Every character is in ``allowed`` or starts a well-formed ``%XX`` escape."""
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch == "%":
            if text[i + 1:i + 2] not in _HEX or text[i + 2:i + 3] not in _HEX:
                return False
            i += 3
        elif ch in allowed:
            i += 1
        else:
            return False
    return True


def _fully_decoded(segment: str) -> str:
    """The segment percent-decoded until nothing changes (``%252e`` -> ``%2e`` -> ``.``), as strict UTF-8."""
    for _ in range(_MAX_DECODE_ROUNDS):
        try:
            decoded = unquote(segment, errors="strict")
        except UnicodeDecodeError:
            raise _refuse("a segment that is not UTF-8 once decoded") from None
        if decoded == segment:
            return segment
        segment = decoded
    raise _refuse("a segment encoded more times than any client encodes")


def _is_dot_segment(piece: str) -> bool:
    """``.``/``..`` as any server may read it: plainly, with ``;params`` cut off (Tomcat's ``..;``), or after Unicode
    compatibility folding (fullwidth ``．．``)."""
    return (piece in _DOT_SEGMENTS or piece.split(";", 1)[0] in _DOT_SEGMENTS
            or unicodedata.normalize("NFKC", piece) in _DOT_SEGMENTS)


def checked_path(path: str) -> str:
    """``path`` (relative to an upstream's base path, percent-encoded as it goes on the wire) if it stays under the
    base however a server decodes it; else a 404 RequestError (414 past MAX_PATH_BYTES). Returned unchanged: what is
    checked is exactly what is sent.

    Refused: an empty path, a leading ``/`` or an empty segment (``a//b``; one trailing ``/`` is kept), any raw
    character outside RFC 3986's pchar (backslash, space, control characters, non-ASCII, ``?``, ``#``) or a
    malformed ``%`` escape; and any segment which, percent-decoded until it stops changing (double encoding:
    ``%252e``) as strict UTF-8, contains a backslash or a control character (``%00``), or splits on ``/`` into an
    empty piece or a dot segment (``.``, ``..``, ``..;x``, fullwidth dots). An encoded slash inside a segment
    (``models/org%2Fname``) is forwarded still encoded, never decoded into a separator, and only when both readings
    (``org%2Fname`` as one segment, ``org/name`` as two) are safe.
    """
    if len(path.encode("utf-8", "surrogateescape")) > MAX_PATH_BYTES:
        raise RequestError(414, f"The path is longer than {MAX_PATH_BYTES} bytes.", code="path_too_long")
    if not path:
        raise _refuse("an empty path")
    segments = path.split("/")
    if segments[-1] == "" and len(segments) > 1:
        segments.pop()  # one trailing slash
    for segment in segments:
        if not segment:
            raise _refuse("an empty segment")
        if not _well_escaped(segment, _PCHAR):
            raise _refuse("a character that must be percent-encoded, or a malformed escape")
        decoded = _fully_decoded(segment)
        if "\\" in decoded or any(unicodedata.category(ch) == "Cc" for ch in decoded):
            raise _refuse("a backslash or a control character")
        for piece in decoded.split("/"):
            if not piece:
                raise _refuse("an empty segment")
            if _is_dot_segment(piece):
                raise _refuse("a dot segment")
    return path


def requoted_query(query: str) -> str:
    """A raw query string as sent, but with every character that may not appear in a query (space, ``#``, control
    characters, non-ASCII, a ``%`` that starts no escape) percent-encoded, so it can neither end the request line
    nor reach the path. Existing ``%XX`` escapes are kept, never decoded."""
    out: list[str] = []
    i, n = 0, len(query)
    while i < n:
        ch = query[i]
        if ch == "%" and query[i + 1:i + 2] in _HEX and query[i + 2:i + 3] in _HEX:
            out.append(query[i:i + 3])
            i += 3
            continue
        out.append(ch if ch in _QUERY_CHARS else quote(ch, safe="", errors="surrogateescape"))
        i += 1
    return "".join(out)


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

    def url_for(self, path: str, query: str = "") -> URL:
        """The URL for ``path`` under the base path, exactly as checked: ``path`` must pass checked_path (else a
        404/414 RequestError) and is put on the wire as given, percent escapes and all (built ``encoded=True``, so
        yarl neither unquotes nor resolves dot segments on the way out). ``query`` is the raw query string, kept
        as sent but for what requoted_query escapes."""
        path = checked_path(path)
        full = f"{self._base_path}/{path}"
        # Belt and braces: however decoded, the normalised path is still under the base path.
        decoded = unquote(full)
        for _ in range(_MAX_DECODE_ROUNDS):
            decoded = unquote(decoded)
        if not posixpath.normpath(decoded).startswith(f"{self._base_path}/"):
            raise _refuse("outside the upstream's base path")
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
