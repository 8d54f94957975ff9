"""Runtime LoRA "pagers": one small driver per kind of model server that loads, unloads and lists adapters.

The adapter cache controller of the adapter-paging issue (``/work/shared/docs/adapter-routing.md``) keeps K of N
adapters resident on a server; a pager is how it talks to that server. The protocol is ``AdapterPager``: ``load`` (and
how long the server took), ``unload``, ``loaded`` (what the server lists now, to reconcile after a restart) and
``model_field`` (what a request puts in ``"model"`` to use an adapter). The drivers, registered by name in ``PAGERS``:

- ``vllm`` and ``cachesvc``: ``vllm_pager.VllmPager`` (the reference model server implements vLLM's runtime LoRA API);
- ``sglang``: ``sglang_pager.SglangPager``.

``make_pager(kind, url)`` builds one from an upstream's OpenAI base URL as configured (``http://host:8000/v1``); each
driver finds its endpoints from the server root (``server_root``: the URL without its trailing ``/v1``).

Every failure is a ``PagerError`` whose ``kind`` says what a caller can do about it: ``duplicate`` (the name is
taken), ``not_found`` (no adapter at the path), ``unknown_adapter`` (unload of a name the server does not hold),
``refused`` (any other answer that is not a success: a load that failed, a full server, a bad key, a missing
endpoint), ``timeout``, ``unreachable`` (no connection) and ``bad_response`` (an answer that cannot be read: not the
promised JSON, or larger than the bound). ``status`` is the server's HTTP status when it answered, ``message`` its own
message when it gave one.

Bounds: every call runs under a timeout (``load_timeout_s`` for a load, ``timeout_s`` for the rest); every response
body is read up to a limit and no further (``MAX_BODY_BYTES`` for load/unload answers, ``MAX_LISTING_BYTES`` for a
model listing): past it the connection is dropped, not drained. Redirects are not followed (the key stays with the
configured server). The API key, when given, goes out as ``Authorization: Bearer``; it is never written into an
exception or a log line, and a server message that echoes it has it replaced by ``[redacted]``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, ClassVar, Literal, Protocol, Self, TypeVar, get_args, runtime_checkable

import aiohttp
from yarl import URL

from cachesvc.openai import codec

log = logging.getLogger(__name__)

PagerErrorKind = Literal["duplicate", "not_found", "refused", "unknown_adapter", "timeout", "unreachable",
                         "bad_response"]
ERROR_KINDS: tuple[str, ...] = get_args(PagerErrorKind)

DEFAULT_LOAD_TIMEOUT_S = 60.0  # a load reads the weights and may wait behind a batch: seconds are normal
DEFAULT_TIMEOUT_S = 10.0  # unload and list
MAX_BODY_BYTES = 64 * 1024  # a load/unload answer: a line of text or a small JSON object
MAX_LISTING_BYTES = 1024 * 1024  # a model listing: a vLLM card is ~300 bytes, so thousands of adapters
MAX_MESSAGE_CHARS = 500
REDACTED = "[redacted]"


def bounded(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """``text`` cut to ``limit`` characters (an ellipsis marks the cut)."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


class PagerError(Exception):
    """A load, unload or listing that failed, classified (see the module docstring for the kinds)."""

    def __init__(self, kind: PagerErrorKind, message: str, *, status: int | None = None, operation: str = "",
                 server: str = "", adapter: str | None = None) -> None:
        if kind not in ERROR_KINDS:
            raise ValueError(f"unknown PagerError kind {kind!r}")
        self.kind: PagerErrorKind = kind
        self.status = status
        self.message = bounded(message)
        self.operation = operation
        self.adapter = adapter
        what = f"{operation} of {adapter!r}" if adapter is not None else operation or "call"
        where = f" on {server}" if server else ""
        http = f" (HTTP {status})" if status is not None else ""
        super().__init__(f"{what}{where}: {kind}{http}: {self.message}")


@runtime_checkable
class AdapterPager(Protocol):
    """What the adapter cache controller needs of one server's runtime LoRA API."""

    kind: str  # "vllm" | "sglang" | "cachesvc"

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def load(self, name: str, path: str) -> float:
        """Load the adapter at ``path`` (a path on the server's side) as ``name``; the seconds the call took.
        Raises PagerError."""
        ...

    async def unload(self, name: str) -> None:
        """Drop adapter ``name`` from the server. Raises PagerError."""
        ...

    async def loaded(self) -> set[str]:
        """The adapter names the server lists now. Raises PagerError."""
        ...

    def model_field(self, base_model: str, adapter: str) -> str:
        """What a request puts in ``"model"`` to be served by ``adapter`` on top of ``base_model``."""
        ...

    def lost_adapter(self, status: int, message: str) -> bool:
        """A completion's error answer (its status and message) says the server does not hold the adapter the
        request named: it restarted, or dropped it, since the proxy loaded it. Nothing was generated then."""
        ...


def server_root(url: str) -> URL:
    """The server's root from an OpenAI base URL: query and fragment dropped, a trailing ``/v1`` (and slashes) taken
    off the path, so ``http://h:8000/v1`` -> ``http://h:8000`` and ``http://gw/vllm/v1/`` -> ``http://gw/vllm``."""
    parsed = URL(url)
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ValueError(f"an adapter pager needs an http(s) URL with a host, got {_display(parsed)!r}")
    path = parsed.path.rstrip("/")
    path = path.removesuffix("/v1")
    return parsed.with_query(None).with_fragment(None).with_path(path or "/")


def _display(url: URL) -> str:
    """A URL fit for messages: no user, no password, no query."""
    return str(url.with_user(None).with_password(None).with_query(None).with_fragment(None)).rstrip("/")


@dataclass(frozen=True)
class Reply:
    """A server's answer, read up to a bound."""

    status: int
    body: bytes  # at most the bound
    truncated: bool  # the server sent more than the bound; the rest was never read
    seconds: float  # from sending the request to the last byte read

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def json(self) -> Any:
        """The body as JSON, or None when it is not JSON (or was cut)."""
        if self.truncated:
            return None
        try:
            return codec.loads(self.body)
        except codec.JSONDecodeError:
            return None

    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


async def read_bounded(response: aiohttp.ClientResponse, limit: int) -> tuple[bytes, bool]:
    """At most ``limit`` bytes of the body, and whether there was more (one byte past the limit is read to tell)."""
    chunks: list[bytes] = []
    size = 0
    while size <= limit:
        chunk = await response.content.read(limit + 1 - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    body = b"".join(chunks)
    return body[:limit], size > limit


def error_text(reply: Reply) -> str:
    """The server's own message in an error answer: SGLang's ``error_message``, OpenAI's and vLLM's
    ``{"error": {"message"}}``, older vLLM's flat ``{"message"}``, FastAPI's ``{"detail"}``, the auth middleware's
    ``{"error": "Unauthorized"}``; else the body as text."""
    body = reply.json()
    if isinstance(body, dict):
        error = body.get("error")
        for value in (body.get("error_message"), error.get("message") if isinstance(error, dict) else error,
                      body.get("message"), body.get("detail")):
            if isinstance(value, str) and value:
                return value
            if isinstance(value, list | dict) and value:
                return codec.dumps(value).decode()
    text = reply.text().strip()
    return text + (" …" if reply.truncated else "") if text else f"HTTP {reply.status} with an empty body"


H = TypeVar("H", bound="HttpPager")
PAGERS: dict[str, type[HttpPager]] = {}


def register_pager(cls: type[H]) -> type[H]:
    """Class decorator: ``cls`` drives the server kinds it names in ``kinds``."""
    for kind in cls.kinds:
        if kind in PAGERS:
            raise ValueError(f"adapter pager kind {kind!r} is registered twice")
        PAGERS[kind] = cls
    return cls


class HttpPager(ABC):
    """What the drivers share: one pooled HTTP session, the key, bounded reads under a timeout, transport failures
    classified. A driver implements the four calls of AdapterPager with ``_call`` and classifies its server's
    answers."""

    kinds: ClassVar[tuple[str, ...]] = ()  # the server kinds this class drives; the first is its default

    def __init__(self, url: str, *, kind: str | None = None, api_key: str | None = None,
                 timeout_s: float = DEFAULT_TIMEOUT_S, load_timeout_s: float = DEFAULT_LOAD_TIMEOUT_S,
                 max_body_bytes: int = MAX_BODY_BYTES, max_listing_bytes: int = MAX_LISTING_BYTES) -> None:
        kind = kind or self.kinds[0]
        if kind not in self.kinds:
            raise ValueError(f"{type(self).__name__} drives {', '.join(self.kinds)}, not {kind!r}")
        if timeout_s <= 0 or load_timeout_s <= 0:
            raise ValueError("timeouts must be positive")
        if max_body_bytes < 1 or max_listing_bytes < 1:
            raise ValueError("body bounds must be positive")
        self.kind = kind
        self.root = server_root(url)
        if api_key and (self.root.user or self.root.password):
            raise ValueError("give the server's credentials either in the URL or as api_key, not both")
        self.server = _display(self.root)
        self.timeout_s = timeout_s
        self.load_timeout_s = load_timeout_s
        self.max_body_bytes = max_body_bytes
        self.max_listing_bytes = max_listing_bytes
        self._api_key = api_key or None
        self._session: aiohttp.ClientSession | None = None

    def __repr__(self) -> str:  # never the key
        return f"{type(self).__name__}(kind={self.kind!r}, server={self.server!r})"

    async def open(self) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=8), timeout=aiohttp.ClientTimeout(total=None))

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    @abstractmethod
    async def load(self, name: str, path: str) -> float: ...

    @abstractmethod
    async def unload(self, name: str) -> None: ...

    @abstractmethod
    async def loaded(self) -> set[str]: ...

    @abstractmethod
    def model_field(self, base_model: str, adapter: str) -> str: ...

    @abstractmethod
    def lost_adapter(self, status: int, message: str) -> bool: ...

    # -- for the drivers --------------------------------------------------------------------------------------

    def redact(self, text: str) -> str:
        """``text`` without the API key (a server or an error may echo it)."""
        return text.replace(self._api_key, REDACTED) if self._api_key else text

    def error(self, kind: PagerErrorKind, message: str, *, operation: str, adapter: str | None = None,
              status: int | None = None) -> PagerError:
        return PagerError(kind, self.redact(message), status=status, operation=operation, server=self.server,
                          adapter=adapter)

    def refusal(self, kind: PagerErrorKind, reply: Reply, *, operation: str, adapter: str | None = None
                ) -> PagerError:
        """A PagerError carrying the server's status and its own message."""
        return self.error(kind, error_text(reply), operation=operation, adapter=adapter, status=reply.status)

    async def _call(self, method: str, path: str, *, operation: str, adapter: str | None = None,
                    body: Mapping[str, Any] | None = None, timeout_s: float | None = None,
                    limit: int | None = None) -> Reply:
        """Send ``method path`` (relative to the server root) with ``body`` as JSON and read the answer, bounded;
        a timeout, a failed connection or an unreadable answer becomes a PagerError, any status is returned."""
        if self._session is None:
            raise RuntimeError(f"{self!r} used before open()")
        timeout_s = self.timeout_s if timeout_s is None else timeout_s
        limit = self.max_body_bytes if limit is None else limit
        url = self.root.with_path(f"{self.root.path.rstrip('/')}/{path.lstrip('/')}")
        headers = {"Accept": "application/json, text/plain"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        data = None
        if body is not None:
            data = codec.dumps(body)
            headers["Content-Type"] = "application/json"
        started = time.perf_counter()
        try:
            async with asyncio.timeout(timeout_s):
                async with self._session.request(method, url, data=data, headers=headers,
                                                 allow_redirects=False) as response:
                    raw, truncated = await read_bounded(response, limit)
                    if truncated:
                        response.close()  # drop the connection: the rest is never read
                    status = response.status
        except TimeoutError:  # asyncio's, and aiohttp's own timeouts (subclasses of it)
            raise self.error("timeout", f"no complete answer within {timeout_s:g} s", operation=operation,
                             adapter=adapter) from None
        except aiohttp.ClientConnectionError as exc:
            raise self.error("unreachable", f"{type(exc).__name__}: {exc}", operation=operation,
                             adapter=adapter) from None
        except aiohttp.ClientError as exc:
            raise self.error("bad_response", f"unreadable answer: {type(exc).__name__}: {exc}",
                             operation=operation, adapter=adapter) from None
        reply = Reply(status, raw, truncated, time.perf_counter() - started)
        log.debug("adapter pager %s: %s %s -> %d in %.3f s", self.server, operation, adapter or "", status,
                  reply.seconds)
        return reply

    def listed_adapters(self, reply: Reply, *, operation: str = "list") -> set[str]:
        """The ids of an OpenAI model listing's cards that have a ``parent`` (vLLM and SGLang list adapters so)."""
        if reply.truncated:
            raise self.error("bad_response", f"the model listing is larger than {self.max_listing_bytes} bytes",
                             operation=operation, status=reply.status)
        if not reply.ok:
            raise self.refusal("refused", reply, operation=operation)
        body = reply.json()
        cards = body.get("data") if isinstance(body, dict) else None
        if not isinstance(cards, list) or not all(isinstance(c, dict) and isinstance(c.get("id"), str)
                                                  for c in cards):
            raise self.error("bad_response", f"not an OpenAI model listing: {bounded(reply.text(), 200)!r}",
                             operation=operation, status=reply.status)
        return {card["id"] for card in cards if card.get("parent") is not None}


def make_pager(kind: str, url: str, *, api_key: str | None = None, timeout_s: float = DEFAULT_TIMEOUT_S,
               load_timeout_s: float = DEFAULT_LOAD_TIMEOUT_S) -> HttpPager:
    """The registered driver for ``kind`` on the server whose OpenAI base URL is ``url``; not yet opened."""
    try:
        cls = PAGERS[kind]
    except KeyError:
        raise ValueError(f"unknown adapter pager kind {kind!r}; known kinds: {', '.join(sorted(PAGERS))}") from None
    return cls(url, kind=kind, api_key=api_key, timeout_s=timeout_s, load_timeout_s=load_timeout_s)


# The drivers build on the classes above and register themselves in PAGERS, so they are imported last (a cycle on
# purpose: importing either driver first works too, as this module is complete before they need it).
from cachesvc.upstreams import sglang_pager, vllm_pager  # noqa: E402, F401
