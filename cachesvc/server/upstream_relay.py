"""Forward a completion request upstream and relay the answer as it arrives, streamed or not.

A complete, successful answer is handed to ``remember`` (which may store it) before a stream's ``[DONE]`` goes
out, so the client's next request already hits. Upstream errors pass through with their status. A JSON answer
that is not a well-formed completion is a 502 ``upstream_bad_response``; a stream that breaks off, ends without
``[DONE]``, is not SSE or carries a malformed chunk ends in an OpenAI-style error event instead of ``[DONE]``
(so a client's SDK raises) and is never stored. A client that leaves mid-answer (a reset, a closed socket, a
cancelled handler) stops the upstream and is counted as ``client_aborted``. Each stream that is not stored
counts one write-skipped reason.

Every answer forwarded from an upstream (a miss or a bypass, streamed or not, an upstream's error included)
carries ``x-cachesvc-upstream-ms``: the milliseconds from sending the request upstream until the upstream's
response headers arrived. For a stream that is the time to its headers, before any of its body; the stream
itself may run much longer. Answers served from the cache do not carry it. When the request was retried or failed
over (``Upstream.request``), it times the attempt that answered; the earlier attempts and waits are not in it.
Such answers also name the upstream that answered (``x-cachesvc-upstream``) and, past one, the attempts it took
(``x-cachesvc-upstream-attempts``). A request refused because the upstreams' breakers are open gets a 503
``upstream_circuit_open`` with a Retry-After.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from aiohttp import web

from cachesvc.metrics import Metrics
from cachesvc.openai import codec
from cachesvc.openai.answer import Answer
from cachesvc.openai.errors import RequestError, error_body
from cachesvc.openai.http import json_response, open_event_stream, request_error_response
from cachesvc.openai.protocol import ENDPOINT_PATHS
from cachesvc.openai.sse import SSEParser, encode_event
from cachesvc.openai.stream_accumulator import StreamAccumulator, is_usage_only
from cachesvc.server.request_context import RequestContext
from cachesvc.upstreams.upstream import UpstreamTrace, UpstreamUnavailable

Remember = Callable[[Answer], Awaitable[Answer | None]]
"""Store a fresh answer if it may be; returns it when identical waiters may share it."""

UPSTREAM_MS_HEADER = "x-cachesvc-upstream-ms"
UPSTREAM_HEADER = "x-cachesvc-upstream"
UPSTREAM_ATTEMPTS_HEADER = "x-cachesvc-upstream-attempts"

# What reading an upstream's body can raise when the upstream breaks off: a cut or reset connection, a chunked
# body that ends mid-chunk, silence past the read timeout.
UPSTREAM_BROKE_OFF = (aiohttp.ClientError, ConnectionError, TimeoutError)
# What writing to the client can raise once it has gone: ConnectionError covers the plain one aiohttp's drain
# raises, ConnectionResetError, BrokenPipeError and aiohttp's ClientConnectionResetError ("Cannot write to closing
# transport"); a server run with handler cancellation (aiohttp's test server) cancels the handler instead.
CLIENT_GONE = (ConnectionError, asyncio.CancelledError)
MAX_ERROR_BYTES = 256 * 1024  # an upstream's error body read at most; past it the error is the proxy's own
_DRAIN_AFTER_DONE_BYTES = 64 * 1024  # read past [DONE] to the body's end (so the connection is reused), no further
_DRAIN_AFTER_DONE_S = 1.0


class UpstreamRelay:
    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    async def forward(self, ctx: RequestContext, headers: dict[str, str],
                      remember: Remember) -> tuple[web.StreamResponse, Answer | None]:
        """The response for the client and the answer that may be shared (None: nothing shareable). ``headers``
        go on the response, with ``answered_headers`` (``x-cachesvc-upstream-ms``: the time to the answering
        upstream's response headers, for a stream before its body; who answered; the attempts) once one answered."""
        req, upstream = ctx.req, ctx.upstream
        body = req.body if ctx.model_override is None else {**req.body, "model": ctx.model_override}
        hide_usage = req.stream and upstream.config.stream_usage and not req.include_usage
        if hide_usage:
            body = {**body, "stream_options": {**(body.get("stream_options") or {}), "include_usage": True}}
        trace = UpstreamTrace()
        try:
            async with upstream.request("POST", ENDPOINT_PATHS[req.endpoint], data=codec.dumps(body),
                                        client_headers=ctx.http.headers, trace=trace) as upstream_response:
                return await self._relay(ctx, upstream_response, {**headers, **answered_headers(trace)},
                                         trace.answered_by or upstream.name, remember, hide_usage)
        except UpstreamUnavailable as exc:  # refused before anything was sent (circuit open): say when to retry
            return request_error_response(exc, {**headers, **exc.headers}), None

    async def _relay(self, ctx: RequestContext, upstream_response: aiohttp.ClientResponse, headers: dict[str, str],
                     name: str, remember: Remember, hide_usage: bool) -> tuple[web.StreamResponse, Answer | None]:
        """Relay the upstream's answer: an error passed on, a stream, or JSON (replayed as SSE if asked)."""
        req = ctx.req
        try:
            if upstream_response.status != 200:
                return await _relay_error(upstream_response, headers), None
            if req.stream and upstream_response.content_type == "text/event-stream":
                return await self._relay_stream(ctx, upstream_response, headers, remember, hide_usage)
            raw = await upstream_response.read()
        except UPSTREAM_BROKE_OFF:
            error = RequestError(502, f"Upstream {name!r} broke off its answer.", code="upstream_disconnected")
            return request_error_response(error, headers), None
        try:
            parsed = codec.loads(raw)
            if isinstance(parsed, dict) and isinstance(parsed.get("id"), str):
                ctx.response_id = parsed["id"]
            answer = Answer.from_response(req.endpoint, parsed)
        except ValueError as exc:
            self._metrics.record_write_skipped("upstream_bad_response")
            error = RequestError(502, f"Upstream {name!r} sent a malformed completion: {exc}.",
                                 code="upstream_bad_response")
            return request_error_response(error, headers), None
        shared = await remember(answer)
        if req.stream:  # asked for a stream, got JSON (some servers ignore `stream`): replay it as SSE
            return await write_answer(ctx, answer, headers), shared
        response = web.Response(body=raw, status=200, headers={**headers, "Content-Type": "application/json"})
        return response, shared

    async def _relay_stream(self, ctx: RequestContext, upstream_response: aiohttp.ClientResponse,
                            headers: dict[str, str], remember: Remember,
                            hide_usage: bool) -> tuple[web.StreamResponse, Answer | None]:
        """Relay events as they arrive; the usage chunk we asked for on the client's behalf is kept back. Ends in
        ``[DONE]`` only after a clean stream, else in an error event; nothing the upstream sends after either is
        relayed."""
        response = web.StreamResponse()
        parser, accumulator = SSEParser(), StreamAccumulator(ctx.req.endpoint)
        content = upstream_response.content
        shared: Answer | None = None
        counted = False  # one write-skipped reason per stream: remember's own, a failure's, or the client's abort
        received = events = 0
        failure: tuple[str, dict[str, Any]] | None = None  # (write-skipped reason, the error event to send)
        try:
            response = await open_event_stream(ctx.http, headers)
            while True:
                try:
                    chunk = await content.readany()
                except UPSTREAM_BROKE_OFF:
                    failure = ("upstream_broke_off",
                               error_body(502, "Upstream broke off the stream.", code="upstream_disconnected"))
                    break
                if not chunk:
                    failure = _ended_early(parser, received, events)
                    break
                received += len(chunk)
                out = []
                for event in parser.feed(chunk):
                    events += 1
                    parsed = accumulator.feed(event)
                    if ctx.response_id is None and isinstance(parsed, dict) and isinstance(parsed.get("id"), str):
                        ctx.response_id = parsed["id"]
                    if accumulator.problem is not None:
                        failure = _broken(accumulator)
                        break
                    if accumulator.done:
                        if accumulator.complete:
                            counted = True  # remember counts its own reason when it does not store
                            shared = await remember(accumulator.answer())  # stored before `[DONE]` goes out
                        out.append(encode_event(event))
                        break
                    if not (hide_usage and is_usage_only(parsed)):
                        out.append(encode_event(event))
                if failure is None and parser.overflow:
                    failure = ("upstream_bad_response", error_body(
                        502, "Upstream sent an event longer than the proxy accepts.", code="upstream_bad_response"))
                if out:
                    await response.write(b"".join(out))
                if failure is not None or accumulator.done:
                    break
            if failure is not None:
                upstream_response.close()  # nothing more of it is wanted, and its connection is not to be reused
                reason, error = failure
                self._metrics.record_write_skipped(reason)
                counted = True
                await response.write(encode_event(error))
            elif not accumulator.complete:  # [DONE] after no choices at all
                self._metrics.record_write_skipped("incomplete_stream")
                counted = True
            await response.write_eof()
        except CLIENT_GONE as exc:
            upstream_response.close()  # the client left: stop the upstream generating for nobody
            if not counted:
                self._metrics.record_write_skipped("client_aborted")
            if isinstance(exc, asyncio.CancelledError):
                raise
            return response, None
        if failure is None:
            await _drain(upstream_response)
        return response, shared


def _ended_early(parser: SSEParser, received: int, events: int) -> tuple[str, dict[str, Any]]:
    """The failure of a body that ended (cleanly) before ``[DONE]``."""
    if received and not events and not parser.overflow:
        return "upstream_bad_response", error_body(
            502, "Upstream's stream carried no events: it is not server-sent events, or ended before its first.",
            code="upstream_bad_response")
    return "incomplete_stream", error_body(502, "Upstream ended the stream before data: [DONE].",
                                           code="upstream_disconnected")


def _broken(accumulator: StreamAccumulator) -> tuple[str, dict[str, Any]]:
    """The failure of a stream whose last event broke it: the upstream's own error event, or a malformed one."""
    sent = accumulator.upstream_error
    if sent is not None:
        error = sent.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return "upstream_error", sent  # already what an SDK reads: pass on the upstream's own words
        return "upstream_error", error_body(502, f"Upstream sent an error: {str(error)[:500]}", code="upstream_error")
    return "upstream_bad_response", error_body(502, f"Upstream sent a malformed stream: {accumulator.problem}.",
                                               code="upstream_bad_response")


async def _drain(upstream_response: aiohttp.ClientResponse) -> None:
    """Read what follows ``[DONE]`` to the body's end, so the upstream connection can be reused; a little, briefly:
    an upstream that keeps talking after ``[DONE]`` loses its connection instead."""
    content, seen = upstream_response.content, 0
    try:
        async with asyncio.timeout(_DRAIN_AFTER_DONE_S):
            while not content.at_eof() and seen <= _DRAIN_AFTER_DONE_BYTES:
                seen += len(await content.readany())
    except (*UPSTREAM_BROKE_OFF, TimeoutError):
        pass
    if not content.at_eof():
        upstream_response.close()


def answered_headers(trace: UpstreamTrace) -> dict[str, str]:
    """What an answer forwarded from an upstream says about it: the time to its headers, who answered, and the
    attempts it took when more than one."""
    sent = trace.sent if trace.sent is not None else time.perf_counter()
    headers = {UPSTREAM_MS_HEADER: f"{(time.perf_counter() - sent) * 1000:.1f}"}
    if trace.answered_by is not None:
        headers[UPSTREAM_HEADER] = trace.answered_by
    if trace.attempts > 1:
        headers[UPSTREAM_ATTEMPTS_HEADER] = str(trace.attempts)
    return headers


async def write_answer(ctx: RequestContext, answer: Answer, headers: dict[str, str]) -> web.StreamResponse:
    """Send an answer the proxy holds (a hit, or JSON asked for as a stream) in the form the request asked for."""
    req = ctx.req
    if not req.stream:
        return json_response(answer.render(), headers=headers)
    response = await open_event_stream(ctx.http, headers)
    try:
        for event in answer.render_stream(req.include_usage):
            await response.write(event)
        await response.write_eof()
    except ConnectionError:
        pass  # the client left; nothing to clean up for a replay
    return response


async def _relay_error(upstream_response: aiohttp.ClientResponse, headers: dict[str, str]) -> web.Response:
    """Pass an upstream error on with its status; give it an OpenAI-style body if it had none, or if it is longer
    than MAX_ERROR_BYTES (not read further: the connection is dropped)."""
    status = upstream_response.status
    raw = bytearray()
    async for chunk in upstream_response.content.iter_chunked(64 * 1024):
        raw += chunk
        if len(raw) > MAX_ERROR_BYTES:
            upstream_response.close()
            body = error_body(status, f"Upstream answered {status} with an error body over {MAX_ERROR_BYTES} "
                                      "bytes (not relayed).", code="upstream_error")
            return json_response(body, status=status, headers=headers)
    try:
        body = codec.loads(raw)
        if not isinstance(body, dict) or "error" not in body:
            raise ValueError
    except ValueError:
        text = raw.decode("utf-8", errors="replace")[:500] or upstream_response.reason or "error"
        body = error_body(status, f"Upstream answered {status}: {text}", code="upstream_error")
    extra = {k: v for k, v in upstream_response.headers.items() if k.lower() in ("retry-after", "x-request-id")}
    return json_response(body, status=status, headers={**headers, **extra})
