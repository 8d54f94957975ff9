"""Forward a completion request upstream and relay the answer as it arrives, streamed or not.

A complete, successful answer is handed to ``remember`` (which may store it) before a stream's ``[DONE]`` goes
out, so the client's next request already hits. Upstream errors pass through with their status; a broken-off
stream ends in an OpenAI-style error event.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import aiohttp
from aiohttp import web

from cachesvc.metrics import Metrics
from cachesvc.openai import codec
from cachesvc.openai.answer import Answer
from cachesvc.openai.errors import RequestError, error_body
from cachesvc.openai.http import json_response, open_event_stream
from cachesvc.openai.protocol import ENDPOINT_PATHS
from cachesvc.openai.sse import SSEParser, encode_event
from cachesvc.openai.stream_accumulator import StreamAccumulator, is_usage_only
from cachesvc.server.request_context import RequestContext

Remember = Callable[[Answer], Awaitable[Answer | None]]
"""Store a fresh answer if it may be; returns it when identical waiters may share it."""


class UpstreamRelay:
    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    async def forward(self, ctx: RequestContext, headers: dict[str, str],
                      remember: Remember) -> tuple[web.StreamResponse, Answer | None]:
        """The response for the client and the answer that may be shared (None: nothing shareable)."""
        req, upstream = ctx.req, ctx.upstream
        body = req.body
        hide_usage = req.stream and upstream.config.stream_usage and not req.include_usage
        if hide_usage:
            body = {**body, "stream_options": {**(body.get("stream_options") or {}), "include_usage": True}}
        try:
            async with upstream.request("POST", ENDPOINT_PATHS[req.endpoint], data=codec.dumps(body),
                                        client_headers=ctx.http.headers) as upstream_response:
                if upstream_response.status != 200:
                    return await _relay_error(upstream_response, headers), None
                if req.stream and upstream_response.content_type == "text/event-stream":
                    return await self._relay_stream(ctx, upstream_response, headers, remember, hide_usage)
                raw = await upstream_response.read()
                try:
                    answer = Answer.from_response(req.endpoint, codec.loads(raw))
                except ValueError:
                    raise RequestError(502, f"Upstream {upstream.name!r} sent a malformed completion.",
                                       code="upstream_bad_response") from None
                shared = await remember(answer)
                if req.stream:  # asked for a stream, got JSON (some servers ignore `stream`): replay it as SSE
                    return await write_answer(ctx, answer, headers), shared
                response = web.Response(body=raw, status=200, headers={**headers, "Content-Type": "application/json"})
                return response, shared
        except (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError, TimeoutError):
            raise RequestError(502, f"Upstream {upstream.name!r} broke off its answer.",
                               code="upstream_disconnected") from None

    async def _relay_stream(self, ctx: RequestContext, upstream_response: aiohttp.ClientResponse,
                            headers: dict[str, str], remember: Remember,
                            hide_usage: bool) -> tuple[web.StreamResponse, Answer | None]:
        """Relay events as they arrive; the usage chunk we asked for on the client's behalf is kept back."""
        response = await open_event_stream(ctx.http, headers)
        parser, accumulator = SSEParser(), StreamAccumulator(ctx.req.endpoint)
        shared: Answer | None = None
        stored = False
        try:
            async for chunk in upstream_response.content.iter_any():
                out = []
                for event in parser.feed(chunk):
                    parsed = accumulator.feed(event)
                    if accumulator.done and not stored and accumulator.complete:
                        stored = True  # store before `[DONE]` goes out
                        shared = await remember(accumulator.answer())
                    if not (hide_usage and is_usage_only(parsed)):
                        out.append(encode_event(event))
                if out:
                    await response.write(b"".join(out))
        except ConnectionResetError:
            upstream_response.close()  # the client left: stop the upstream generating for nobody
            self._metrics.record_write_skipped("client_aborted")
            return response, None
        except (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError, TimeoutError):
            self._metrics.record_write_skipped("upstream_broke_off")
            error = error_body(502, "Upstream broke off the stream.", code="upstream_disconnected")
            try:
                await response.write(encode_event(error))
            except ConnectionResetError:
                pass
            return response, None
        if not accumulator.complete:
            self._metrics.record_write_skipped("incomplete_stream")
        try:
            await response.write_eof()
        except ConnectionResetError:
            pass
        return response, shared


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
    except ConnectionResetError:
        pass  # the client left; nothing to clean up for a replay
    return response


async def _relay_error(upstream_response: aiohttp.ClientResponse, headers: dict[str, str]) -> web.Response:
    """Pass an upstream error on with its status; give it an OpenAI-style body if it had none."""
    raw = await upstream_response.read()
    status = upstream_response.status
    try:
        body = codec.loads(raw)
        if not isinstance(body, dict) or "error" not in body:
            raise ValueError
    except ValueError:
        text = raw.decode("utf-8", errors="replace")[:500] or upstream_response.reason or "error"
        body = error_body(status, f"Upstream answered {status}: {text}", code="upstream_error")
    extra = {k: v for k, v in upstream_response.headers.items() if k.lower() in ("retry-after", "x-request-id")}
    return json_response(body, status=status, headers={**headers, **extra})
