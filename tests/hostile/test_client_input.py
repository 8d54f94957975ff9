"""Careless and malicious clients: keys presented every which way, huge questions, deep nesting, bytes that are
not UTF-8, names with a trailing newline, look-alike numbers. Real proxy, real HTTP on loopback."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from cachesvc.cache.categorizer import Categorizer
from tests.conftest import Proxy, Stub
from tests.hostile.conftest import Tally
from tests.server.test_bad_input import post

QUESTION = "How do I read a file line by line in Python?"


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def chat(question: str, **extra: Any) -> dict[str, Any]:
    return {"model": "stub-model", "temperature": 0, "messages": [{"role": "user", "content": question}], **extra}


async def ask(http: aiohttp.ClientSession, proxy: Proxy, body: Any, headers: dict[str, str] | None = None,
              path: str = "v1/chat/completions") -> tuple[int, Any, Any]:
    """POST to any path of the proxy (``post`` of the bad-input tests is rooted at ``/v1``)."""
    return await post(http, proxy, body, headers=headers, path=f"../{path}")


async def raw_request(proxy: Proxy, head: bytes, body: bytes = b"") -> tuple[int, bytes]:
    """Send bytes no HTTP client library would (header values that are not UTF-8); returns status and body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.server.port)
    writer.write(head + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    status = int(data.split(b" ", 2)[1])
    return status, data.split(b"\r\n\r\n", 1)[1]


# ---- 2: every way of presenting a key is a tenant ---------------------------------------------------------

async def test_keys_in_any_header_isolate_tenants(http: aiohttp.ClientSession, proxy: Proxy, stub: Stub,
                                                  tally: Tally) -> None:
    """2. Keys sent as api-key, x-api-key or lower-case bearer: one tenant each."""
    tally.inputs += 12
    questions = {"api-key": QUESTION, "x-api-key": "What is the capital of Peru?",
                 "lower-bearer": "Summarize the plot of Macbeth in one sentence."}
    for n, (style, question) in enumerate(questions.items()):
        def key(value: str, style: str = style) -> dict[str, str]:
            return {"lower-bearer": {"Authorization": f"bearer {value}"}}.get(style, {style: value})

        _, first, h1 = await ask(http, proxy, chat(question), key(f"sk-a-{n}"))
        _, _, h2 = await ask(http, proxy, chat(question), key(f"sk-b-{n}"))
        assert (h1["x-cachesvc-cache"], h2["x-cachesvc-cache"]) == ("miss", "miss"), f"{style}: B got A's entry"
        # the same key sent another way is the same tenant
        _, again, h3 = await ask(http, proxy, chat(question), {"Authorization": f"Bearer sk-a-{n}"})
        assert h3["x-cachesvc-cache"] == "hit" and again["choices"] == first["choices"], style
        _, _, h4 = await ask(http, proxy, chat(question))
        assert h4["x-cachesvc-cache"] == "miss", "no key is the anonymous tenant, not A"
    assert stub.stats.completions == 9


async def test_admin_invalidates_a_tenant_that_sent_its_key_as_api_key(http: aiohttp.ClientSession,
                                                                       proxy: Proxy, tally: Tally) -> None:
    """2. Admin invalidation by api_key reaches a tenant that sent api-key."""
    tally.inputs += 5
    await ask(http, proxy, chat(QUESTION), {"api-key": "sk-azure"})
    await ask(http, proxy, chat(QUESTION), {"api-key": "sk-other"})
    status, result, _ = await ask(http, proxy, {"api_key": "sk-azure"}, {"x-admin-key": "admin-secret"},
                                  path="admin/invalidate")
    assert status == 200 and result["matched"] == 1
    assert (await ask(http, proxy, chat(QUESTION), {"x-api-key": "sk-azure"}))[2]["x-cachesvc-cache"] == "miss"
    assert (await ask(http, proxy, chat(QUESTION), {"api-key": "sk-other"}))[2]["x-cachesvc-cache"] == "hit"


# ---- 3: nothing that grows with the question runs on the event loop, and the work is bounded ----------------

async def test_huge_question_is_answered_exact_tier_only(http: aiohttp.ClientSession, proxy: Proxy,
                                                         stub: Stub, tally: Tally) -> None:
    """3. A 2.6 MB question: answered, exact tier only, and says so."""
    tally.inputs += 4
    huge = "Tell me about the history of the printing press and its effects on Europe. " * 35_000  # 2.6 MB
    assert len(huge) > 2_500_000
    for expected in ("miss", "hit"):
        status, body, headers = await ask(http, proxy, chat(huge, max_tokens=16))
        assert status == 200 and headers["x-cachesvc-cache"] == expected
        assert headers["x-cachesvc-semantic"] == "skipped:query_too_long"
        assert "embed" not in headers.get("Server-Timing", "")
    assert headers["x-cachesvc-tier"] == "exact" and stub.stats.completions == 1
    # a different long question sharing the first 4,000 characters is not served the first one's answer
    status, _, headers = await ask(http, proxy, chat(huge + " And in Asia?", max_tokens=16))
    assert status == 200 and headers["x-cachesvc-cache"] == "miss"
    # questions within the bound are matched as before
    _, _, headers = await ask(http, proxy, chat(QUESTION))
    assert "x-cachesvc-semantic" not in headers and "embed" in headers["Server-Timing"]


async def test_healthz_answers_while_a_huge_question_is_processed(http: aiohttp.ClientSession,
                                                                  proxy: Proxy, tally: Tally) -> None:
    """3. /healthz answers while a 3.5 MB question is processed."""
    huge = ("word " * 700_000).strip()  # 3.5 MB in one message
    pending = asyncio.create_task(ask(http, proxy, chat(huge, max_tokens=16)))
    answered = 0
    while not pending.done() and answered < 200:  # bounded
        async with http.get(f"{proxy.root}/healthz") as response:
            assert response.status == 200
        answered += 1
        await asyncio.sleep(0.005)
    tally.inputs += answered + 1
    status, _, headers = await pending
    assert status == 200 and headers["x-cachesvc-semantic"] == "skipped:query_too_long"


async def test_classification_runs_off_the_event_loop() -> None:
    """3. Classification runs on a worker thread, not on the event loop."""
    threads: list[str] = []

    class Recording:
        def classify(self, text: str, vector: Any) -> str:
            threads.append(threading.current_thread().name)
            return "code"

    categorizer = Categorizer()
    categorizer._classifier = Recording()  # type: ignore[assignment]
    assert await categorizer.classify("q", None) == "code"
    assert threads and threads[0] != threading.main_thread().name


# ---- 6: deep nesting is refused, not recursed into ---------------------------------------------------------

async def test_deeply_nested_bodies_get_400(http: aiohttp.ClientSession, proxy: Proxy, stub: Stub,
                                            tally: Tally) -> None:
    """6. Bodies nested 65, 2,000 and 100,000 deep: 400 on chat, completions, admin, pass-through."""
    tally.inputs += 12
    for depth in (65, 2_000, 100_000):
        nested = "[" * depth + "]" * depth
        raw = f'{{"model": "stub-model", "messages": [{{"role": "user", "content": "hi"}}], "tools": {nested}}}'
        for path in ("v1/chat/completions", "v1/completions", "admin/invalidate", "v1/embeddings"):
            async with http.post(f"{proxy.root}/{path}", data=raw.encode(), headers={
                    "Content-Type": "application/json", "x-admin-key": "admin-secret"}) as response:
                body = await response.json()
                assert response.status == 400, (depth, path, body)
            assert body["error"]["type"] == "invalid_request_error"
    assert stub.stats.completions == 0  # and the pass-through did not reach the echo (it would answer 200)


async def test_nesting_within_the_bound_is_accepted(http: aiohttp.ClientSession, proxy: Proxy, tally: Tally) -> None:
    """6. A tool schema nested 20 deep is still accepted."""
    tally.inputs += 1
    schema: dict[str, Any] = {"type": "string"}
    for _ in range(20):
        schema = {"type": "object", "properties": {"x": schema}}
    tool = {"type": "function", "function": {"name": "f", "parameters": schema}}
    status, _, _ = await ask(http, proxy, chat(QUESTION, tools=[tool]))
    assert status == 200


# ---- 7: header bytes that are not UTF-8 --------------------------------------------------------------------

BAD_HEADERS = [
    ("/v1/chat/completions", b"Authorization: Bearer \xff\xfe\xfd"),
    ("/v1/chat/completions", b"api-key: \xc3\x28"),
    ("/admin/stats", b"x-admin-key: \xff"),
    ("/admin/stats", b"Authorization: Bearer \xe9t\xe9"),
    ("/v1/models", b"Authorization: Bearer \x80"),
]


async def test_header_bytes_that_are_not_utf8_get_4xx(proxy: Proxy, stub: Stub, tally: Tally) -> None:
    """7. Header values that are not UTF-8: 400/401, never 5xx."""
    tally.inputs += len(BAD_HEADERS)
    body = json.dumps(chat(QUESTION)).encode()
    for path, header in BAD_HEADERS:
        method = b"POST" if path.startswith("/v1/chat") else b"GET"
        head = method + b" " + path.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        status, payload = await raw_request(proxy, head + header + b"\r\n", body if method == b"POST" else b"")
        assert status in (400, 401), (path, header, payload)
        assert "error" in json.loads(payload)
    assert stub.stats.completions == 0


# ---- 10: names are checked whole --------------------------------------------------------------------------

async def test_names_with_a_trailing_newline_get_400(http: aiohttp.ClientSession, proxy: Proxy, tally: Tally) -> None:
    """10. Names with a newline or outside the character set: 400."""
    tally.inputs += 4
    for option in ({"namespace": "abc\n"}, {"category": "code\n"}, {"namespace": "abc\nx"}, {"namespace": "é"}):
        status, body, _ = await ask(http, proxy, chat(QUESTION, cachesvc=option))
        assert status == 400 and body["error"]["param"].startswith("x-cachesvc-"), option


# ---- 11: 0 and 1 are numbers like any other ------------------------------------------------------------------

async def test_zero_and_one_are_not_look_alikes(http: aiohttp.ClientSession, proxy: Proxy, tally: Tally) -> None:
    """11. 0 and 1 are numbers like any other."""
    tally.inputs += 4
    pairs = (("What is 1 plus 1?", "What is 0 plus 0?"), ("Is 1 a prime number?", "Is 0 a prime number?"))
    for n, (first, second) in enumerate(pairs):
        namespace = {"x-cachesvc-namespace": f"pair{n}"}  # each pair alone, as the row's probes were
        await ask(http, proxy, chat(first), namespace)
        _, body, headers = await ask(http, proxy, chat(second), namespace)
        assert headers["x-cachesvc-cache"] == "miss", f"{second!r} was served the answer to {first!r}"
        assert second in body["choices"][0]["message"]["content"]
