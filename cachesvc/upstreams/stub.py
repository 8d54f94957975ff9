"""A stand-in OpenAI-compatible model server for tests and benchmarks: the real wire format, canned answers.

It speaks what vLLM and OpenAI send (JSON bodies, SSE chunks ending in `data: [DONE]`, OpenAI error bodies) and
answers deterministically from the prompt, so a test can tell which question an answer belongs to. Request
headers steer it: `x-stub-fail: STATUS`, `x-stub-latency-ms: N`, `x-stub-finish: length`, `x-stub-break: N`
(stream breaks off after N chunks), `x-stub-tool-call: NAME`, `x-stub-answer-bytes: N` (the answer is N bytes of
text, its canned answer repeated) and `x-stub-piece-chars: K` (a stream carries 1, 2, ..., K, 1, ... characters of
content per chunk, like a token stream; the default cuts on words, about 12 characters). It counts what reached it.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from cachesvc.openai import codec
from cachesvc.openai.http import error_response, json_response, open_event_stream
from cachesvc.openai.responses import ResponseBuilder
from cachesvc.openai.sse import DONE, encode_event, split_text


@dataclass
class StubStats:
    requests: list[dict[str, Any]] = field(default_factory=list)  # bodies of completion requests, in order
    headers: list[dict[str, str]] = field(default_factory=list)
    inflight: int = 0
    peak_inflight: int = 0

    @property
    def completions(self) -> int:
        return len(self.requests)


STUB_STATS = web.AppKey("stub_stats", StubStats)


def answer_text(prompt: str, size: int = 0) -> str:
    """The stand-in's answer: tied to the exact prompt, so a wrong cache hit is visible; with ``size``, that answer
    repeated (space-separated) and cut to ``size`` characters (ASCII prompts: bytes)."""
    text = f"Stub answer to: {prompt.strip()} [{uuid.uuid5(uuid.NAMESPACE_URL, prompt).hex[:8]}]"
    if size <= 0:
        return text
    return ((text + " ") * (size // (len(text) + 1) + 1))[:size]


def tiny_pieces(text: str, max_chars: int) -> list[str]:
    """Cut text into pieces of 1, 2, ..., ``max_chars``, 1, ... characters, as a tokenizer's stream would."""
    pieces, start, k = [], 0, 0
    while start < len(text):
        end = start + k % max_chars + 1
        pieces.append(text[start:end])
        start, k = end, k + 1
    return pieces


def create_stub_app(
    models: tuple[str, ...] = ("stub-model", "other-model"), latency_ms: float = 0.0, max_concurrency: int = 0,
    chunk_delay_ms: float = 0.0,
) -> web.Application:
    """`max_concurrency` > 0 makes it answer 429 past that many requests in flight, as an overloaded server does."""
    app = web.Application(client_max_size=64 * 1024 * 1024)  # a stand-in refuses nothing a real server takes
    stats = StubStats()
    app[STUB_STATS] = stats

    async def completion(request: web.Request) -> web.StreamResponse:
        chat = request.path.endswith("/chat/completions")
        try:
            body = codec.loads(await request.read())
        except ValueError:
            return error_response(400, "We could not parse the JSON body of your request.")
        if not isinstance(body, dict):
            return error_response(400, "The body must be a JSON object.")
        model = body.get("model")
        if model not in models:
            return error_response(404, f"The model `{model}` does not exist.", param="model", code="model_not_found")
        if chat and not isinstance(body.get("messages"), list):
            return error_response(400, "'messages' is a required property", param="messages")
        if not chat and not isinstance(body.get("prompt"), (str, list)):
            return error_response(400, "'prompt' is a required property", param="prompt")
        stats.requests.append(body)
        stats.headers.append(dict(request.headers))
        if max_concurrency and stats.inflight >= max_concurrency:
            return error_response(429, "The server is overloaded, try again later.", code="rate_limit_exceeded")
        forced = request.headers.get("x-stub-fail")
        if forced:
            return error_response(int(forced), f"Forced failure {forced}.")
        stats.inflight += 1
        stats.peak_inflight = max(stats.peak_inflight, stats.inflight)
        try:
            delay = float(request.headers.get("x-stub-latency-ms", latency_ms)) / 1000
            if delay:
                await asyncio.sleep(delay)
            return await _respond(request, body, chat)
        finally:
            stats.inflight -= 1

    async def _respond(request: web.Request, body: dict[str, Any], chat: bool) -> web.StreamResponse:
        prompt = _prompt_of(body, chat)
        text = answer_text(prompt, int(request.headers.get("x-stub-answer-bytes", "0")))
        piece_chars = int(request.headers.get("x-stub-piece-chars", "0"))
        if body.get("max_tokens") is not None:
            text = " ".join(text.split()[: int(body["max_tokens"])])
        finish = request.headers.get("x-stub-finish", "stop")
        tool = request.headers.get("x-stub-tool-call")
        if tool and chat:
            finish = "tool_calls"
        usage = {"prompt_tokens": len(prompt.split()), "completion_tokens": len(text.split()),
                 "total_tokens": len(prompt.split()) + len(text.split())}
        out = ResponseBuilder("chat" if chat else "completions", body["model"])
        call: dict[str, Any] = {"id": "call_" + uuid.uuid4().hex[:12], "type": "function",
                                "function": {"name": tool, "arguments": codec.dumps({"q": prompt}).decode()}}
        if not body.get("stream"):
            choice = out.final_choice(0, text, finish)
            if tool and chat:
                choice["message"] = {"role": "assistant", "content": None, "tool_calls": [call]}
            return json_response(out.body([choice], usage))

        def pieces(text: str) -> list[str]:
            return tiny_pieces(text, piece_chars) if piece_chars > 0 else list(split_text(text, 12))

        response = await open_event_stream(request)
        events: list[dict[str, Any]] = []
        if chat:
            events.append(out.chunk(out.delta(0, {"role": "assistant", "content": ""})))
            if tool:
                events.append(out.chunk(out.delta(0, {"tool_calls": [
                    {"index": 0, **call, "function": {"name": tool, "arguments": ""}}]})))
                for piece in split_text(call["function"]["arguments"], 8):
                    events.append(out.chunk(out.delta(0, {"tool_calls": [
                        {"index": 0, "function": {"arguments": piece}}]})))
            else:
                events.extend(out.chunk(out.piece(0, piece)) for piece in pieces(text))
            events.append(out.chunk(out.delta(0, {}, finish)))
        else:
            events.extend(out.chunk(out.piece(0, piece)) for piece in pieces(text))
            events.append(out.chunk(out.piece(0, "", finish)))
        if (body.get("stream_options") or {}).get("include_usage"):
            events.append(out.usage_chunk(usage))
        break_after = int(request.headers.get("x-stub-break", "0"))
        delay = float(request.headers.get("x-stub-chunk-delay-ms", chunk_delay_ms)) / 1000
        try:
            for i, event in enumerate(events):
                if break_after and i >= break_after:
                    if request.transport is not None:
                        request.transport.close()  # die mid-stream, like a crashed server
                    return response
                await response.write(encode_event(event))
                if delay:
                    await asyncio.sleep(delay)
            await response.write(encode_event(DONE))
            await response.write_eof()
        except ConnectionResetError:
            pass
        return response

    async def list_models(request: web.Request) -> web.Response:
        return json_response({"object": "list", "data": [
            {"id": m, "object": "model", "created": 0, "owned_by": "stub"} for m in models]})

    async def echo(request: web.Request) -> web.Response:
        """Any other /v1 path: echo what arrived, so pass-through can be checked."""
        body = await request.read()
        return json_response({"method": request.method, "path": request.path, "query": dict(request.query),
                                  "body": body.decode("utf-8", errors="replace"),
                                  "authorization": request.headers.get("Authorization")})

    app.router.add_post("/v1/chat/completions", completion)
    app.router.add_post("/v1/completions", completion)
    app.router.add_get("/v1/models", list_models)
    app.router.add_route("*", "/v1/{tail:.*}", echo)
    return app


def _prompt_of(body: dict[str, Any], chat: bool) -> str:
    if not chat:
        prompt = body["prompt"]
        return prompt if isinstance(prompt, str) else codec.dumps(prompt).decode()
    content = body["messages"][-1].get("content") if body["messages"] else ""
    if isinstance(content, list):
        content = " ".join(p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return str(content or "")
