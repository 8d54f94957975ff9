"""An OpenAI-compatible model server that breaks the wire format on request: one upstream for every fault.

Each request picks its faults with the ``x-fault`` header, comma-separated, each ``NAME`` or ``NAME:ARG``; without
one the answer is well-formed (JSON, or SSE chunks ending in ``data: [DONE]``), built with the shared wire-format
builders (``ResponseBuilder``, ``encode_event``). A fault of the answer's shape applies to the JSON body of a plain
request and to one chunk (after the first) of a streamed one.

Streams: ``no-done`` (every chunk, then a clean end without ``[DONE]``), ``not-sse`` (``text/event-stream`` that
is not SSE; a plain request gets an HTML page with status 200), ``data-not-json`` (an event whose data is text),
``truncated-json`` (the body, or a stream's last event, cut off mid-JSON, then a clean end), ``error-event``
(an OpenAI error event mid-stream, then ``[DONE]``), ``crlf`` (CRLF line ends, the bytes written a few at a time,
so that a CR and its LF arrive apart), ``endless-line`` (bytes that never end an event), ``huge-tiny-pieces:BYTES``
(an answer of BYTES characters in chunks of 1-4 characters), ``huge-big-pieces:BYTES`` (the same in 4 KiB chunks).

Shapes: ``bad-choices`` (``"choices": [1]``), ``choices-not-list``, ``body-not-object``, ``delta-not-object``
(a chat delta or message that is a string), ``content-not-string``, ``index-not-int``, ``finish-not-string``,
``logprobs-not-object``, ``tool-calls-not-list``, ``tool-index-huge`` (a tool call at index 10^9),
``usage-not-object``, ``model-not-string``.

Timing and status: ``slow-headers:MS`` (wait before the response headers), ``slow-body:MS`` (send the headers,
then wait before the body), ``status:CODE`` (an OpenAI error with that status), ``error-bytes:BYTES`` (with
``status``: an error whose message is BYTES long, sent in 64 KiB writes).

It counts what reached it and how many answers are being written (``inflight``), and notes the last stream that
ended because its reader left (``aborted``).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

from cachesvc.openai import codec
from cachesvc.openai.http import error_response, json_response, open_event_stream
from cachesvc.openai.responses import ResponseBuilder
from cachesvc.openai.sse import DONE, encode_event
from cachesvc.upstreams.stub import answer_text, tiny_pieces

SHAPE_FAULTS = frozenset({
    "bad-choices", "choices-not-list", "body-not-object", "delta-not-object", "content-not-string", "index-not-int",
    "finish-not-string", "logprobs-not-object", "tool-calls-not-list", "tool-index-huge", "usage-not-object",
    "model-not-string",
})
STREAM_FAULTS = frozenset({"no-done", "not-sse", "data-not-json", "truncated-json", "error-event", "crlf",
                           "endless-line", "huge-tiny-pieces", "huge-big-pieces"})
TIMING_FAULTS = frozenset({"slow-headers", "slow-body", "status", "error-bytes"})
FAULTS = SHAPE_FAULTS | STREAM_FAULTS | TIMING_FAULTS

NOT_SSE = b"<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>\n"


@dataclass
class FaultyStats:
    faults: list[str] = field(default_factory=list)  # the x-fault header of each completion request, in order
    inflight: int = 0
    aborted: int = 0  # streams that ended because the reader (the proxy) went away
    error_bytes_sent: int = 0  # of error-bytes answers, the message bytes written before the reader left

    @property
    def completions(self) -> int:
        return len(self.faults)


FAULTY_STATS = web.AppKey("faulty_stats", FaultyStats)


def parse_faults(header: str) -> dict[str, str]:
    """``"no-done,slow-body:300"`` -> ``{"no-done": "", "slow-body": "300"}``; an unknown fault is a ValueError."""
    faults = {}
    for item in filter(None, (part.strip() for part in header.split(","))):
        name, _, arg = item.partition(":")
        if name not in FAULTS:
            raise ValueError(f"unknown fault {name!r}")
        faults[name] = arg
    return faults


def expected_text(prompt: str, faults: dict[str, str]) -> str:
    """The content a well-formed answer to ``prompt`` carries (what the client should see, whole)."""
    size = faults.get("huge-tiny-pieces") or faults.get("huge-big-pieces") or "0"
    return answer_text(prompt, int(size))


def _break_choice(choice: dict[str, Any], fault: str, chat: bool, stream: bool) -> Any:
    """The choice (a chunk's or a body's) with a malformed field; for ``bad-choices`` the choice is ``1``."""
    part = "delta" if stream else "message"
    if fault == "bad-choices":
        return 1
    if fault == "delta-not-object":
        return {**choice, part: "hello"} if chat else {**choice, "text": {"t": "hello"}}
    if fault == "content-not-string":
        return {**choice, part: {"role": "assistant", "content": 5}} if chat else {**choice, "text": 5}
    if fault == "index-not-int":
        return {**choice, "index": "zero"}
    if fault == "finish-not-string":
        return {**choice, "finish_reason": {"why": "stop"}}
    if fault == "logprobs-not-object":
        return {**choice, "logprobs": [1, 2]}
    if fault == "tool-calls-not-list" and chat:
        return {**choice, part: {"role": "assistant", "content": None, "tool_calls": {"id": "x"}}}
    if fault == "tool-index-huge" and chat:
        call = {"index": 10**9, "id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
        return {**choice, part: {"role": "assistant", "content": None, "tool_calls": [call]}}
    return choice


def _break_body(body: dict[str, Any], fault: str, chat: bool, stream: bool) -> Any:
    """A body or chunk with ``fault``; unchanged for a fault that is not about its shape."""
    if fault == "body-not-object":
        return [1, 2]
    if fault == "choices-not-list":
        return {**body, "choices": {"0": body["choices"][0] if body["choices"] else {}}}
    if fault == "usage-not-object":
        return {**body, "usage": "lots"}
    if fault == "model-not-string":
        return {**body, "model": ["stub-model"]}
    if fault in SHAPE_FAULTS and body.get("choices"):
        return {**body, "choices": [_break_choice(body["choices"][0], fault, chat, stream)]}
    return body


def create_faulty_app(models: tuple[str, ...] = ("stub-model",)) -> web.Application:
    app = web.Application()
    stats = FaultyStats()
    app[FAULTY_STATS] = stats

    async def completion(request: web.Request) -> web.StreamResponse:
        chat = request.path.endswith("/chat/completions")
        body = codec.loads(await request.read())
        if body.get("model") not in models:
            return error_response(404, f"The model `{body.get('model')}` does not exist.", code="model_not_found")
        header = request.headers.get("x-fault", "")
        stats.faults.append(header)
        try:
            faults = parse_faults(header)
        except ValueError as exc:
            return error_response(400, str(exc))
        if "slow-headers" in faults:
            await asyncio.sleep(float(faults["slow-headers"]) / 1000)
        if "status" in faults and "error-bytes" in faults:
            return await _huge_error(request, int(faults["status"]), int(faults["error-bytes"]))
        if "status" in faults:
            status = int(faults["status"])
            return error_response(status, f"Faulty upstream answers {status}.", code="faulty")
        stats.inflight += 1
        try:
            if body.get("stream"):
                return await _stream(request, body, chat, faults)
            return await _plain(request, body, chat, faults)
        finally:
            stats.inflight -= 1

    async def _huge_error(request: web.Request, status: int, size: int) -> web.StreamResponse:
        response = web.StreamResponse(status=status, headers={"Content-Type": "application/json"})
        await response.prepare(request)
        try:
            await response.write(b'{"error": {"message": "')
            for start in range(0, size, 65536):
                await response.write(b"x" * min(65536, size - start))
                stats.error_bytes_sent += min(65536, size - start)
            await response.write(b'", "type": "server_error", "code": "faulty"}}')
            await response.write_eof()
        except (ConnectionError, RuntimeError):  # the proxy stopped reading
            pass
        return response

    async def _plain(request: web.Request, body: dict[str, Any], chat: bool,
                     faults: dict[str, str]) -> web.StreamResponse:
        out = ResponseBuilder("chat" if chat else "completions", body["model"])
        text = expected_text(_prompt_of(body, chat), faults)
        answer: Any = out.body([out.final_choice(0, text, "stop")], {"prompt_tokens": 1, "completion_tokens": 1,
                                                                      "total_tokens": 2})
        for fault in faults:
            answer = _break_body(answer, fault, chat, stream=False)
        if "not-sse" in faults:
            return web.Response(body=NOT_SSE, content_type="text/html")
        if "slow-body" in faults:
            response = web.StreamResponse(headers={"Content-Type": "application/json"})
            await response.prepare(request)
            await asyncio.sleep(float(faults["slow-body"]) / 1000)
            await response.write(codec.dumps(answer))
            await response.write_eof()
            return response
        if "truncated-json" in faults:
            raw = codec.dumps(answer)
            return web.Response(body=raw[: len(raw) // 2], content_type="application/json")
        return json_response(answer)

    async def _stream(request: web.Request, body: dict[str, Any], chat: bool,
                      faults: dict[str, str]) -> web.StreamResponse:
        out = ResponseBuilder("chat" if chat else "completions", body["model"])
        text = expected_text(_prompt_of(body, chat), faults)
        if "huge-big-pieces" in faults:
            pieces = [text[i:i + 4096] for i in range(0, len(text), 4096)]
        else:
            pieces = tiny_pieces(text, 4) if "huge-tiny-pieces" in faults else text.split(" ")
            pieces = pieces if "huge-tiny-pieces" in faults else [p + " " for p in pieces[:-1]] + pieces[-1:]
        chunks: list[Any] = []
        if chat:
            chunks.append(out.chunk(out.delta(0, {"role": "assistant", "content": ""})))
        chunks.extend(out.chunk(out.piece(0, piece)) for piece in pieces)
        chunks.append(out.chunk(out.piece(0, "", "stop")))
        if (body.get("stream_options") or {}).get("include_usage"):
            chunks.append(out.usage_chunk({"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}))
        shape = [f for f in faults if f in SHAPE_FAULTS]
        for fault in shape:
            chunks[1] = _break_body(chunks[1], fault, chat, stream=True)
        events = [encode_event(codec.dumps(chunk)) for chunk in chunks]
        if "data-not-json" in faults:
            events.insert(1, b"data: this is not JSON\n\n")
        if "error-event" in faults:
            events.insert(2, encode_event({"error": {"message": "The model crashed.", "type": "server_error",
                                                     "param": None, "code": "faulty"}}))
        if "truncated-json" in faults:
            events[-1] = events[-1][: len(events[-1]) // 2]
        if "not-sse" in faults:
            events = [NOT_SSE]
        if "endless-line" in faults:
            events = [b"data: " + b"x" * 65536] * (int(faults["endless-line"] or "512"))
        if not ({"no-done", "not-sse", "truncated-json", "endless-line"} & set(faults)):
            events.append(encode_event(DONE))
        if "crlf" in faults:
            events = [event.replace(b"\n", b"\r\n") for event in events]

        response = await open_event_stream(request)
        if "slow-body" in faults:
            await asyncio.sleep(float(faults["slow-body"]) / 1000)
        try:
            if "crlf" in faults:  # a few bytes per write, paced, so the reader sees CR and LF in separate reads
                raw = b"".join(events)
                for start in range(0, len(raw), 7):
                    await response.write(raw[start:start + 7])
                    await asyncio.sleep(0.0005)
            else:
                batch: list[bytes] = []
                for event in events:
                    batch.append(event)
                    if len(batch) >= 64:
                        await response.write(b"".join(batch))
                        batch.clear()
                await response.write(b"".join(batch))
            await response.write_eof()
        except ConnectionError:
            stats.aborted += 1
        except asyncio.CancelledError:  # its TestServer cancels the handler of a connection that was closed
            stats.aborted += 1
            raise
        return response

    app.router.add_post("/v1/chat/completions", completion)
    app.router.add_post("/v1/completions", completion)
    return app


def _prompt_of(body: dict[str, Any], chat: bool) -> str:
    if chat:
        return str(body["messages"][-1].get("content") or "")
    return str(body.get("prompt") or "")


@dataclass
class FaultyUpstream:
    server: TestServer
    stats: FaultyStats

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.port}/v1"


async def start_faulty_upstream(**kwargs: Any) -> FaultyUpstream:
    """Start it on loopback (close with ``.server.close()``), like ``tests.conftest.start_stub``."""
    app = create_faulty_app(**kwargs)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return FaultyUpstream(server, app[FAULTY_STATS])
