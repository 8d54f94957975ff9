"""Upstreams that break the wire format, and clients that leave mid-stream, against the real proxy over loopback.

A stream that ends without ``[DONE]``, is not SSE, or carries a malformed chunk ends in an OpenAI-style error
event (the official client raises), is counted, and is never cached; a malformed JSON answer is a 502
``upstream_bad_response``; a reader that hangs up with unread data is a client abort like any other; a long answer
in tiny pieces arrives whole; every answer forwarded from an upstream says how long its headers took.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import numpy as np
import openai
import pytest
import pytest_asyncio
from aiohttp import web

from cachesvc.config import Config
from cachesvc.embedding.embedder import Embedder
from cachesvc.server.app import create_app
from cachesvc.server.services import SERVICES, ProxyServices
from tests.conftest import Proxy, proxy_config, start_proxy
from tests.hostile.conftest import Tally
from tests.hostile.faulty_upstream import FaultyUpstream, expected_text, parse_faults, start_faulty_upstream

CASE = "14. x-cachesvc-upstream-ms: every answer forwarded from an upstream says how long its headers took"

# One upstream and one proxy for the module (each test asks its own question, so nothing one test caches can
# answer another's), and so one event loop.
pytestmark = pytest.mark.asyncio(loop_scope="module")
module_fixture = pytest_asyncio.fixture(scope="module", loop_scope="module")
fixture = pytest_asyncio.fixture(loop_scope="module")


def config(upstream: FaultyUpstream) -> Config:
    return proxy_config(upstream.url, **{"cache.semantic": False})  # the exact tier is all these tests need


@module_fixture
async def faulty() -> AsyncIterator[FaultyUpstream]:
    upstream = await start_faulty_upstream()
    yield upstream
    await upstream.server.close()


@module_fixture
async def proxy(faulty: FaultyUpstream, encode: Callable[[list[str]], np.ndarray]) -> AsyncIterator[Proxy]:
    proxy = await start_proxy(config(faulty), encode)
    yield proxy
    await proxy.server.close()


@fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@fixture
async def sdk(proxy: Proxy) -> AsyncIterator[openai.AsyncOpenAI]:
    client = openai.AsyncOpenAI(base_url=proxy.base_url, api_key="sk-test", max_retries=0, timeout=60)
    yield client
    await client.close()


@pytest.fixture(autouse=True)
def _tallied(tally: Tally, faulty: FaultyUpstream) -> Iterator[None]:
    """Each test's tally: the requests that reached the upstream, and how many of them carried a fault."""
    seen = faulty.stats.completions
    yield
    tally.inputs += faulty.stats.completions - seen
    tally.faults += sum(1 for fault in faulty.stats.faults[seen:] if fault)


@pytest.fixture
def question(request: pytest.FixtureRequest) -> str:
    """A question of this test's own."""
    return f"How does a lighthouse lens focus its light? ({request.node.name})"


def chat(question: str, *, stream: bool = False, **extra: Any) -> dict[str, Any]:
    return {"model": "stub-model", "temperature": 0, "messages": [{"role": "user", "content": question}],
            **({"stream": True} if stream else {}), **extra}


def data_events(raw: bytes) -> list[bytes]:
    """The ``data`` of each event, split here independently of the proxy's own parser."""
    events = []
    for block in raw.replace(b"\r\n", b"\n").split(b"\n\n"):
        lines = [line[5:].removeprefix(b" ") for line in block.split(b"\n") if line.startswith(b"data:")]
        if lines:
            events.append(b"\n".join(lines))
    return events


async def post(http: aiohttp.ClientSession, url: str, body: dict[str, Any],
               headers: dict[str, str] | None = None) -> tuple[int, bytes, Any]:
    async with http.post(f"{url}/chat/completions", json=body, headers=headers) as response:
        return response.status, await response.read(), response.headers


async def skipped(http: aiohttp.ClientSession, proxy: Proxy | ServedProxy, reason: str) -> float:
    """``cachesvc_cache_write_skipped_total{reason=...}`` as /metrics shows it (0 before the first)."""
    async with http.get(f"{proxy.root}/metrics") as response:
        text = await response.text()
    match = re.search(rf'^cachesvc_cache_write_skipped_total\{{reason="{reason}"\}} (\S+)$', text, re.M)
    return float(match.group(1)) if match else 0.0


async def assert_sdk_stream_raises(sdk: openai.AsyncOpenAI, question: str, fault: str, match: str = "") -> None:
    """The official client, reading a stream the upstream breaks with ``fault``, raises instead of returning."""
    stream = await sdk.chat.completions.create(model="stub-model", temperature=0, stream=True,
                                               messages=[{"role": "user", "content": question}],
                                               extra_headers={"x-fault": fault})
    with pytest.raises(openai.APIError, match=match or None):
        async for _ in stream:
            pass


async def assert_not_cached(http: aiohttp.ClientSession, proxy: Proxy, faulty: FaultyUpstream,
                            body: dict[str, Any]) -> None:
    """The same request again (this time without a fault) goes upstream: nothing of the broken answer was kept."""
    asked = faulty.stats.completions
    status, raw, headers = await post(http, proxy.base_url, body)
    assert status == 200 and headers["x-cachesvc-cache"] == "miss", raw[:300]
    assert faulty.stats.completions == asked + 1
    if body.get("stream"):
        assert data_events(raw)[-1] == b"[DONE]"
    else:
        assert json.loads(raw)["choices"][0]["message"]["content"] == expected_text(
            body["messages"][-1]["content"], {})


def no_errors_logged(caplog: pytest.LogCaptureFixture) -> None:
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors]


# ---- row 4: a stream that ends wrong ----------------------------------------------------------------------------

ENDS_WRONG = [  # (fault, error code of the event, write-skipped reason)
    ("no-done", "upstream_disconnected", "incomplete_stream"),
    ("truncated-json", "upstream_disconnected", "incomplete_stream"),
    ("not-sse", "upstream_bad_response", "upstream_bad_response"),
    ("data-not-json", "upstream_bad_response", "upstream_bad_response"),
    ("endless-line", "upstream_bad_response", "upstream_bad_response"),
]


@pytest.mark.parametrize(("fault", "code", "reason"), ENDS_WRONG)
async def test_stream_that_ends_wrong_ends_in_an_error_event(http: aiohttp.ClientSession, proxy: Proxy,
                                                             faulty: FaultyUpstream, caplog: pytest.LogCaptureFixture,
                                                             fault: str, code: str, reason: str, question: str) -> None:
    """4. A stream that ends without [DONE] or is not SSE: an error event, counted, not cached."""
    before = await skipped(http, proxy, reason)
    status, raw, headers = await post(http, proxy.base_url, chat(question, stream=True), {"x-fault": fault})
    assert status == 200 and headers["Content-Type"].startswith("text/event-stream")
    events = data_events(raw)
    assert events, raw[:300]
    last = json.loads(events[-1])
    assert set(last) == {"error"} and last["error"]["code"] == code and last["error"]["message"]
    assert b"[DONE]" not in events
    for event in events[:-1]:  # what was relayed before the error is well-formed chunks
        assert "choices" in json.loads(event)
    assert await skipped(http, proxy, reason) == before + 1
    await assert_not_cached(http, proxy, faulty, chat(question, stream=True))
    no_errors_logged(caplog)


@pytest.mark.parametrize("fault", ["no-done", "not-sse", "truncated-json"])
async def test_official_client_raises_on_a_stream_that_ends_wrong(sdk: openai.AsyncOpenAI, http: aiohttp.ClientSession,
                                                                  proxy: Proxy, faulty: FaultyUpstream,
                                                                  fault: str, question: str) -> None:
    """4. The official client raises on a stream that ends without [DONE] or is not SSE."""
    await assert_sdk_stream_raises(sdk, question, fault)
    await assert_not_cached(http, proxy, faulty, chat(question, stream=True))


async def test_upstream_error_event_reaches_the_client_and_is_not_cached(
        http: aiohttp.ClientSession, proxy: Proxy, faulty: FaultyUpstream, sdk: openai.AsyncOpenAI,
        question: str) -> None:
    """4. An upstream's own error event mid-stream reaches the client as it was; no [DONE], not cached."""
    status, raw, _ = await post(http, proxy.base_url, chat(question, stream=True), {"x-fault": "error-event"})
    events = data_events(raw)
    assert status == 200 and json.loads(events[-1])["error"]["code"] == "faulty"  # the upstream's own words
    assert b"[DONE]" not in events
    await assert_sdk_stream_raises(sdk, question, "error-event", match="crashed")
    await assert_not_cached(http, proxy, faulty, chat(question, stream=True))


async def test_crlf_split_between_reads_is_parsed(http: aiohttp.ClientSession, proxy: Proxy,
                                                 faulty: FaultyUpstream, question: str) -> None:
    """4. CRLF line ends whose CR and LF arrive in separate reads: every event is seen, the answer is whole."""
    status, raw, headers = await post(http, proxy.base_url, chat(question, stream=True), {"x-fault": "crlf"})
    assert status == 200 and headers["x-cachesvc-cache"] == "miss"
    events = data_events(raw)
    assert events[-1] == b"[DONE]"
    chunks = [json.loads(event) for event in events[:-1]]
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks) == expected_text(question, {})
    status, raw, headers = await post(http, proxy.base_url, chat(question))  # stored whole: served from the cache
    assert status == 200 and headers["x-cachesvc-cache"] == "hit"
    assert json.loads(raw)["choices"][0]["message"]["content"] == expected_text(question, {})


# ---- row 5: a malformed answer ---------------------------------------------------------------------------------

PLAIN_FAULTS = ["bad-choices", "choices-not-list", "body-not-object", "delta-not-object", "content-not-string",
                "index-not-int", "finish-not-string", "tool-calls-not-list", "usage-not-object", "model-not-string",
                "truncated-json", "not-sse"]


@pytest.mark.parametrize("fault", PLAIN_FAULTS)
async def test_malformed_answer_gets_502(http: aiohttp.ClientSession, proxy: Proxy, faulty: FaultyUpstream,
                                         sdk: openai.AsyncOpenAI, caplog: pytest.LogCaptureFixture,
                                         fault: str, question: str) -> None:
    """5. A JSON answer that is not a completion (choices: [1], ...): 502 upstream_bad_response, not cached."""
    before = await skipped(http, proxy, "upstream_bad_response")
    status, raw, headers = await post(http, proxy.base_url, chat(question), {"x-fault": fault})
    assert status == 502, raw[:300]
    body = json.loads(raw)
    assert set(body) == {"error"} and body["error"]["code"] == "upstream_bad_response"
    assert "x-cachesvc-upstream-ms" in headers  # the upstream did answer, badly
    with pytest.raises(openai.APIStatusError) as caught:
        await sdk.chat.completions.create(model="stub-model", temperature=0, extra_headers={"x-fault": fault},
                                          messages=[{"role": "user", "content": question}])
    assert caught.value.status_code == 502
    assert await skipped(http, proxy, "upstream_bad_response") == before + 2
    await assert_not_cached(http, proxy, faulty, chat(question))
    no_errors_logged(caplog)


STREAM_SHAPE_FAULTS = ["bad-choices", "choices-not-list", "body-not-object", "delta-not-object",
                       "content-not-string", "index-not-int", "finish-not-string", "logprobs-not-object",
                       "tool-calls-not-list", "tool-index-huge", "usage-not-object", "model-not-string"]


@pytest.mark.parametrize("fault", STREAM_SHAPE_FAULTS)
async def test_malformed_chunk_ends_the_stream_in_an_error_event(http: aiohttp.ClientSession, proxy: Proxy,
                                                                 faulty: FaultyUpstream,
                                                                 caplog: pytest.LogCaptureFixture,
                                                                 fault: str, question: str) -> None:
    """5. A malformed chunk ends the stream in an upstream_bad_response event; counted, not cached."""
    before = await skipped(http, proxy, "upstream_bad_response")
    status, raw, _ = await post(http, proxy.base_url, chat(question, stream=True), {"x-fault": fault})
    assert status == 200
    assert raw.endswith(b"\n\n"), raw[-300:]  # a whole body, not a broken chunked one
    events = data_events(raw)
    last = json.loads(events[-1])
    assert set(last) == {"error"} and last["error"]["code"] == "upstream_bad_response"
    assert b"[DONE]" not in events
    for event in events[:-1]:  # the malformed chunk itself is not passed on
        chunk = json.loads(event)
        assert isinstance(chunk, dict) and all(isinstance(c, dict) for c in chunk["choices"])
    assert await skipped(http, proxy, "upstream_bad_response") == before + 1
    await assert_not_cached(http, proxy, faulty, chat(question, stream=True))
    no_errors_logged(caplog)


@pytest.mark.parametrize("fault", ["bad-choices", "content-not-string", "no-done"])
async def test_official_client_raises_on_a_malformed_chunk(sdk: openai.AsyncOpenAI, fault: str,
                                                           question: str) -> None:
    """5. The official client raises on a stream with a malformed chunk."""
    await assert_sdk_stream_raises(sdk, question, fault)


# ---- row 8: a reader that hangs up with unread data ------------------------------------------------------------

@dataclass
class ServedProxy:
    """The proxy app served as ``cachesvc serve`` serves it (``web.run_app``: no handler cancellation, so a client
    that leaves shows up as a ConnectionError on the next write), or on aiohttp's TestServer (which cancels the
    handler instead)."""

    runner: web.BaseRunner
    port: int
    services: ProxyServices

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def root(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def blocked(self) -> bool:
        """True once a connection of the proxy has bytes waiting on its reader."""
        server = self.runner.server
        connections = getattr(server, "connections", None) or []
        return any(c.transport is not None and c.transport.get_write_buffer_size() > 0 for c in connections)


@pytest_asyncio.fixture(params=["run_app", "test_server"], loop_scope="module")
async def served(request: pytest.FixtureRequest, faulty: FaultyUpstream,
                 encode: Callable[[list[str]], np.ndarray]) -> AsyncIterator[ServedProxy]:
    if request.param == "test_server":
        proxy = await start_proxy(config(faulty), encode)
        assert proxy.server.runner is not None
        yield ServedProxy(proxy.server.runner, proxy.server.port or 0, proxy.services)
        await proxy.server.close()
        return
    app_config = config(faulty)
    app = create_app(app_config, embedder=Embedder(app_config.cache.embedding, encode=encode))
    runner = web.AppRunner(app, access_log=None)  # what web.run_app builds: handler_cancellation=False
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    services = app[SERVICES]
    for _ in range(600):  # bounded: at most 30 s for the cache to come online
        if services.ready or services.warmup.error:
            break
        await asyncio.sleep(0.05)
    yield ServedProxy(runner, port, services)
    await runner.cleanup()


async def test_slow_reader_that_hangs_up_is_a_client_abort(http: aiohttp.ClientSession, served: ServedProxy,
                                                           faulty: FaultyUpstream,
                                                           caplog: pytest.LogCaptureFixture, question: str) -> None:
    """8. A slow reader that hangs up with unread data: client_aborted once, upstream closed, no error logged."""
    caplog.set_level(logging.WARNING)
    proxy = served
    before, aborted = await skipped(http, proxy, "client_aborted"), faulty.stats.aborted
    body = json.dumps(chat(question, stream=True)).encode()
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port, limit=1024)
    writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                 b"x-fault: huge-big-pieces:67108864\r\n" + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
    await writer.drain()
    assert (await reader.readuntil(b"\r\n")).startswith(b"HTTP/1.1 200")
    # Read no more: the buffers between here and the upstream fill and the proxy's writes wait on this reader.
    for _ in range(100):  # bounded: at most 10 s for the stream to back up
        await asyncio.sleep(0.1)
        if faulty.stats.inflight == 1 and proxy.blocked():
            break
    assert proxy.blocked()
    writer.close()  # hang up with unread data: the kernel answers the proxy's next write with a reset
    for _ in range(100):  # bounded: at most 10 s for the abort to be handled
        if await skipped(http, proxy, "client_aborted") > before and faulty.stats.inflight == 0:
            break
        await asyncio.sleep(0.1)
    assert await skipped(http, proxy, "client_aborted") == before + 1
    assert faulty.stats.inflight == 0 and faulty.stats.aborted == aborted + 1  # the upstream was told to stop
    no_errors_logged(caplog)
    status, raw, headers = await post(http, proxy.base_url, chat(question, stream=True))  # not cached, still serving
    assert status == 200 and headers["x-cachesvc-cache"] == "miss" and data_events(raw)[-1] == b"[DONE]"


# ---- row 9: a long answer in tiny pieces -----------------------------------------------------------------------

def without_envelope(event: bytes) -> Any:
    """A chunk without what differs between two answers to one request (id, created)."""
    chunk = json.loads(event)
    return {k: v for k, v in chunk.items() if k not in ("id", "created")} if isinstance(chunk, dict) else chunk


async def test_long_answer_in_tiny_pieces_arrives_whole(http: aiohttp.ClientSession, proxy: Proxy,
                                                       faulty: FaultyUpstream, question: str) -> None:
    """9. 256 KB of content in chunks of 1-4 characters (a 22 MB stream) arrives exactly as sent, stored whole.

    Correctness only; benchmarks/bench_relay.py measures the cost."""
    faults = {"x-fault": "huge-tiny-pieces:262144"}
    text = expected_text(question, parse_faults(faults["x-fault"]))
    status, direct, _ = await post(http, faulty.url, chat(question, stream=True), faults)
    assert status == 200
    status, relayed, headers = await post(http, proxy.base_url, chat(question, stream=True), faults)
    assert status == 200 and headers["x-cachesvc-cache"] == "miss"
    assert len(relayed) > 10 * 2**20
    direct_events, relayed_events = data_events(direct), data_events(relayed)
    assert len(relayed_events) == len(direct_events) > 50_000
    assert relayed_events[-1] == b"[DONE]"
    assert [without_envelope(e) for e in relayed_events[:-1]] == [without_envelope(e) for e in direct_events[:-1]]
    content = "".join(json.loads(e)["choices"][0]["delta"].get("content") or "" for e in relayed_events[:-1])
    assert content == text
    status, raw, headers = await post(http, proxy.base_url, chat(question))  # the stored answer is the whole answer
    assert status == 200 and headers["x-cachesvc-cache"] == "hit"
    assert json.loads(raw)["choices"][0]["message"]["content"] == text


# ---- x-cachesvc-upstream-ms ------------------------------------------------------------------------------------

def upstream_ms(headers: Any) -> float:
    return float(headers["x-cachesvc-upstream-ms"])


@pytest.mark.parametrize("stream", [False, True])
async def test_forwarded_answers_say_how_long_the_upstream_took(http: aiohttp.ClientSession, proxy: Proxy,
                                                                stream: bool, question: str) -> None:
    """Misses, bypasses and relayed errors carry x-cachesvc-upstream-ms; hits do not."""
    status, _, headers = await post(http, proxy.base_url, chat(question, stream=stream),
                                    {"x-fault": "slow-headers:200"})
    assert status == 200 and headers["x-cachesvc-cache"] == "miss"
    assert upstream_ms(headers) >= 200
    status, _, headers = await post(http, proxy.base_url, chat(question, stream=stream))  # a hit: no upstream asked
    assert status == 200 and headers["x-cachesvc-cache"] == "hit"
    assert "x-cachesvc-upstream-ms" not in headers
    status, _, headers = await post(http, proxy.base_url, chat(question, stream=stream),
                                    {"Cache-Control": "no-store", "x-fault": "slow-headers:100"})
    assert status == 200 and headers["x-cachesvc-cache"] == "bypass"
    assert upstream_ms(headers) >= 100
    status, raw, headers = await post(http, proxy.base_url, chat(question + " Another one.", stream=stream),
                                      {"x-fault": "status:503"})
    assert status == 503 and json.loads(raw)["error"]["code"] == "faulty"  # relayed, and timed
    assert upstream_ms(headers) >= 0


async def test_stream_upstream_ms_ends_at_the_headers(http: aiohttp.ClientSession, proxy: Proxy,
                                                      question: str) -> None:
    """For a stream x-cachesvc-upstream-ms runs to the upstream's headers, not to the end of its body."""
    started = time.monotonic()
    status, raw, headers = await post(http, proxy.base_url, chat(question, stream=True),
                                      {"x-fault": "slow-body:1500"})
    assert status == 200 and data_events(raw)[-1] == b"[DONE]"
    assert time.monotonic() - started >= 1.5
    assert 0 <= upstream_ms(headers) < 1500


async def test_passed_through_answers_say_how_long_the_upstream_took(http: aiohttp.ClientSession,
                                                                     proxy: Proxy) -> None:
    """Other /v1 calls (the pass-through) carry x-cachesvc-upstream-ms too, whatever the upstream answered."""
    async with http.post(f"{proxy.base_url}/embeddings", json={"model": "stub-model", "input": "hi"}) as response:
        headers = response.headers
        assert response.status == 404  # this upstream serves completions only; its answer is passed on
    assert headers["x-cachesvc-cache"] == "bypass" and upstream_ms(headers) >= 0


async def test_an_endless_error_body_is_cut_and_answered_by_the_proxy(http: aiohttp.ClientSession, proxy: Proxy,
                                                                      faulty: FaultyUpstream, question: str) -> None:
    """An upstream error with a 20 MB body: the proxy reads at most MAX_ERROR_BYTES of it, drops the connection,
    and answers the status with its own short OpenAI-style error."""
    from cachesvc.server.upstream_relay import MAX_ERROR_BYTES

    sent_before = faulty.stats.error_bytes_sent
    status, raw, headers = await post(http, proxy.base_url, chat(question),
                                      {"x-fault": "status:400,error-bytes:20000000"})
    error = json.loads(raw)["error"]
    assert status == 400 and error["code"] == "upstream_error" and len(raw) < 1000
    assert f"over {MAX_ERROR_BYTES} bytes" in error["message"]
    assert headers["x-cachesvc-cache"] == "miss"
    await asyncio.sleep(0.2)  # the stand-in notices the closed connection
    assert faulty.stats.error_bytes_sent - sent_before < 20_000_000, "the proxy stopped reading"
    status, raw, _ = await post(http, proxy.base_url, chat(question), {"x-fault": "status:400,error-bytes:1000"})
    assert status == 400 and len(json.loads(raw)["error"]["message"]) == 1000  # a modest one is relayed whole
