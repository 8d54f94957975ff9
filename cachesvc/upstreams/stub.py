"""A stand-in OpenAI-compatible model server for tests, benchmarks and load tests: the real wire format, canned
answers.

It speaks what vLLM and OpenAI send (JSON bodies, SSE chunks ending in `data: [DONE]`, OpenAI error bodies) and
answers deterministically from the prompt, so a test can tell which question an answer belongs to. Request
headers steer it: `x-stub-fail: STATUS`, `x-stub-latency-ms: N`, `x-stub-finish: length`, `x-stub-break: N`
(stream breaks off after N chunks), `x-stub-tool-call: NAME`, `x-stub-answer-bytes: N` (the answer is N bytes of
text, its canned answer repeated), `x-stub-piece-chars: K` (a stream carries 1, 2, ..., K, 1, ... characters of
content per chunk, like a token stream; the default cuts on words, about 12 characters) and
`x-stub-chunk-delay-ms: N`. It counts what reached it. `/v1/embeddings` answers in OpenAI's format (float or
base64 vectors seeded by each input, `usage` counting words); any other `/v1` path echoes the request.

For load tests a `StubBehaviour` shapes every request (`cachesvc stub-upstream` flags in brackets):

- latency [--latency, --latency-ms, --latency-sd-ms]: the time to the first piece, drawn per request: `fixed`
  (always `latency_ms`), `normal` (mean `latency_ms`, sd `latency_sd_ms`, a draw below 0 is 0) or `lognormal`
  (parameterised by its *mean* `latency_ms` and *sd* `latency_sd_ms`, so the same two numbers mean the same under
  both distributions; its median is then below the mean). Draws are capped at `MAX_LATENCY_MS`. The
  `x-stub-latency-ms` header still overrides the draw.
- token rate [--tokens-per-s]: a "token" is one stream piece as the stub cuts them (content pieces, or a tool
  call's argument pieces); `usage.completion_tokens` is that count. At a rate R > 0 a stream sends its first piece
  after the latency and each next one 1/R later (scheduled from the first, so no drift); a non-streamed answer
  takes latency + pieces / R. 0: as fast as possible.
- errors [--error-rate]: that fraction of completion requests, drawn per request, answers 500 or 503 (even odds)
  at once, in the same OpenAI error body as `x-stub-fail`.
- overload [--max-concurrency]: past that many requests in flight, an OpenAI-style 429 (`rate_limit_exceeded`)
  with a `retry-after` header.
- output length [--answer-tokens, --strict-max-tokens]: `answer_tokens` N > 0 makes the answer N word pieces
  (its canned answer's words repeated; `x-stub-answer-bytes` still wins, `x-stub-piece-chars` still recuts). The
  body's `max_tokens` cuts the answer: by default (the legacy cut that cache tests rely on) to its first
  `max_tokens` words, finishing "stop"; with `strict_max_tokens`, to `max_tokens` pieces, finishing "length" when
  it cut, as a real server does (the proxy does not cache such answers).
- stamps [--stamp-calls]: every answer it generates ends in `[upstream call N]`, N counting its answers from 1,
  so a load test can tell an answer served from any cache (one whose stamp it has seen before) from a fresh one,
  and which request it was generated for, without headers from the cache.
- seed [--seed]: latency and error draws come from their own `random.Random`, seeded, so a run draws the same
  sequence (in the order requests arrive).

Everything waits with `asyncio.sleep`; a stand-in never blocks its loop.
"""

from __future__ import annotations

import asyncio
import base64
import math
import random
import struct
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from aiohttp import web

from cachesvc.openai import codec
from cachesvc.openai.http import error_response, json_response, open_event_stream
from cachesvc.openai.responses import ResponseBuilder
from cachesvc.openai.sse import DONE, encode_event, split_text

LatencyKind = Literal["fixed", "normal", "lognormal"]
LATENCY_KINDS: tuple[str, ...] = ("fixed", "normal", "lognormal")
MAX_LATENCY_MS = 600_000.0  # ten minutes: a bound on configured latencies and on every draw
MAX_ANSWER_TOKENS = 100_000
MIN_TOKENS_PER_S = 0.1  # slower than this, one answer would outlast any test


class StubOptionError(ValueError):
    """A `StubBehaviour` option out of range; ``option`` names the field (the CLI turns it into its flag)."""

    def __init__(self, option: str, reason: str) -> None:
        super().__init__(f"{option} {reason}")
        self.option = option
        self.reason = reason


@dataclass(frozen=True)
class StubBehaviour:
    """How the stand-in answers every request (latency, token rate, errors, overload, length); see the module."""

    latency: LatencyKind = "fixed"
    latency_ms: float = 0.0  # fixed: the latency; normal and lognormal: the mean
    latency_sd_ms: float = 0.0  # normal and lognormal: the standard deviation
    tokens_per_s: float = 0.0  # 0: as fast as possible
    error_rate: float = 0.0  # fraction of completion requests answered 500 or 503
    max_concurrency: int = 0  # > 0: answer 429 past this many in flight
    retry_after_s: int = 1  # the 429's retry-after header
    answer_tokens: int = 0  # > 0: answers of that many pieces; 0: the canned answer
    strict_max_tokens: bool = False  # max_tokens cuts pieces and finishes "length" (else: words, "stop")
    stamp_calls: bool = False  # end every generated answer with "[upstream call N]", N counting from 1
    chunk_delay_ms: float = 0.0  # a pause after every stream event
    seed: int = 0

    def __post_init__(self) -> None:
        """Refuse options out of range, naming the option, so a typo fails at start and not mid-benchmark."""
        if self.latency not in LATENCY_KINDS:
            raise StubOptionError("latency", f"must be one of {', '.join(LATENCY_KINDS)}, got {self.latency!r}")
        _check_number("latency_ms", self.latency_ms, 0.0, MAX_LATENCY_MS)
        _check_number("latency_sd_ms", self.latency_sd_ms, 0.0, MAX_LATENCY_MS)
        if self.latency == "fixed" and self.latency_sd_ms > 0:
            raise StubOptionError("latency_sd_ms", "needs latency normal or lognormal (fixed has no spread)")
        if self.latency == "lognormal" and self.latency_sd_ms > 0 and self.latency_ms <= 0:
            raise StubOptionError("latency_ms", "must be > 0 for a lognormal latency with a spread (it is the mean)")
        _check_number("tokens_per_s", self.tokens_per_s, 0.0, math.inf)
        if 0 < self.tokens_per_s < MIN_TOKENS_PER_S:
            raise StubOptionError("tokens_per_s", f"must be 0 (no pacing) or at least {MIN_TOKENS_PER_S}, "
                                                  f"got {self.tokens_per_s}")
        _check_number("error_rate", self.error_rate, 0.0, 1.0)
        _check_int("max_concurrency", self.max_concurrency, 0, 1_000_000)
        _check_int("retry_after_s", self.retry_after_s, 0, 86_400)
        _check_int("answer_tokens", self.answer_tokens, 0, MAX_ANSWER_TOKENS)
        _check_number("chunk_delay_ms", self.chunk_delay_ms, 0.0, MAX_LATENCY_MS)
        _check_int("seed", self.seed, -(2**63), 2**63 - 1)
        if not isinstance(self.strict_max_tokens, bool):
            raise StubOptionError("strict_max_tokens", f"must be true or false, got {self.strict_max_tokens!r}")


def _check_number(option: str, value: object, low: float, high: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or not low <= value <= high:
        bound = f"between {low:g} and {high:g}" if math.isfinite(high) else f"a finite number >= {low:g}"
        raise StubOptionError(option, f"must be {bound}, got {value!r}")


def _check_int(option: str, value: object, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise StubOptionError(option, f"must be a whole number between {low} and {high}, got {value!r}")


def latency_sampler(behaviour: StubBehaviour) -> Callable[[], float]:
    """A seeded draw of one request's latency in ms from the behaviour's distribution (reproducible per seed)."""
    rng = random.Random(f"stub-latency:{behaviour.seed}")
    mean, sd = behaviour.latency_ms, behaviour.latency_sd_ms
    if behaviour.latency == "fixed" or sd == 0 or mean == 0 and behaviour.latency == "lognormal":
        return lambda: mean
    if behaviour.latency == "normal":
        return lambda: min(MAX_LATENCY_MS, max(0.0, rng.gauss(mean, sd)))
    sigma2 = math.log1p((sd / mean) ** 2)  # lognormal with this mean and sd: E = exp(mu + sigma2 / 2)
    mu, sigma = math.log(mean) - sigma2 / 2, math.sqrt(sigma2)
    return lambda: min(MAX_LATENCY_MS, rng.lognormvariate(mu, sigma))


def error_sampler(behaviour: StubBehaviour) -> Callable[[], int | None]:
    """A seeded draw of whether one request fails: 500 or 503 with probability ``error_rate``, else None."""
    rng = random.Random(f"stub-errors:{behaviour.seed}")
    rate = behaviour.error_rate

    def draw() -> int | None:
        failed, which = rng.random() < rate, rng.random()  # two draws always: the sequence does not depend on rate
        return (500 if which < 0.5 else 503) if failed else None

    return draw


@dataclass
class StubStats:
    requests: list[dict[str, Any]] = field(default_factory=list)  # bodies of completion requests, in order
    headers: list[dict[str, str]] = field(default_factory=list)
    inflight: int = 0
    peak_inflight: int = 0
    overloaded: int = 0  # answered 429 past max_concurrency
    injected_errors: int = 0  # answered 500 or 503 by error_rate
    stamped: int = 0  # answers stamped "[upstream call N]" (stamp_calls)

    @property
    def completions(self) -> int:
        return len(self.requests)


STUB_STATS = web.AppKey("stub_stats", StubStats)
STUB_BEHAVIOUR = web.AppKey("stub_behaviour", StubBehaviour)


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


def word_pieces(text: str) -> list[str]:
    """Cut single-spaced text into one piece per word, each after the first carrying its leading space."""
    if not text:
        return []
    first, *rest = text.split(" ")
    return [first, *(" " + word for word in rest)]


def token_answer(prompt: str, tokens: int) -> str:
    """An answer of exactly ``tokens`` word pieces: the canned answer's words repeated (so still tied to the prompt)."""
    words = answer_text(prompt).split() or ["stub"]
    return " ".join(words[i % len(words)] for i in range(tokens))


def create_stub_app(
    models: tuple[str, ...] = ("stub-model", "other-model"), latency_ms: float | None = None,
    max_concurrency: int | None = None, chunk_delay_ms: float | None = None, *,
    behaviour: StubBehaviour | None = None,
) -> web.Application:
    """The stand-in's app, shaped by ``behaviour``; the older keywords, where given, replace its fields."""
    behaviour = behaviour or StubBehaviour()
    if latency_ms is not None:
        behaviour = replace(behaviour, latency_ms=latency_ms)
    if max_concurrency is not None:
        behaviour = replace(behaviour, max_concurrency=max_concurrency)
    if chunk_delay_ms is not None:
        behaviour = replace(behaviour, chunk_delay_ms=chunk_delay_ms)
    app = web.Application(client_max_size=64 * 1024 * 1024)  # a stand-in refuses nothing a real server takes
    stats = StubStats()
    app[STUB_STATS] = stats
    app[STUB_BEHAVIOUR] = behaviour
    draw_latency_ms, draw_error = latency_sampler(behaviour), error_sampler(behaviour)
    interval = 1 / behaviour.tokens_per_s if behaviour.tokens_per_s else 0.0

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
        latency, injected = draw_latency_ms(), draw_error()  # drawn for every request: the sequence stays aligned
        if behaviour.max_concurrency and stats.inflight >= behaviour.max_concurrency:
            stats.overloaded += 1
            return error_response(429, "The server is overloaded, try again later.", code="rate_limit_exceeded",
                                  headers={"retry-after": str(behaviour.retry_after_s)})
        forced = request.headers.get("x-stub-fail")
        if forced:
            return error_response(int(forced), f"Forced failure {forced}.")
        if injected:
            stats.injected_errors += 1
            return error_response(injected, f"Injected failure {injected}.")
        stats.inflight += 1
        stats.peak_inflight = max(stats.peak_inflight, stats.inflight)
        try:
            delay = float(request.headers.get("x-stub-latency-ms", latency)) / 1000
            if delay:
                await asyncio.sleep(delay)
            return await _respond(request, body, chat)
        finally:
            stats.inflight -= 1

    async def _respond(request: web.Request, body: dict[str, Any], chat: bool) -> web.StreamResponse:
        prompt = _prompt_of(body, chat)
        answer_bytes = int(request.headers.get("x-stub-answer-bytes", "0"))
        piece_chars = int(request.headers.get("x-stub-piece-chars", "0"))
        by_words = answer_bytes <= 0 and behaviour.answer_tokens > 0
        text = token_answer(prompt, behaviour.answer_tokens) if by_words else answer_text(prompt, answer_bytes)
        cap = body.get("max_tokens")
        if cap is not None:
            try:
                cap = max(0, int(cap))
            except (TypeError, ValueError, OverflowError):
                return error_response(400, "'max_tokens' must be an integer.", param="max_tokens")
            if not behaviour.strict_max_tokens:
                text = " ".join(text.split()[:cap])  # the legacy cut: words, and the answer still finishes "stop"
        if behaviour.stamp_calls:
            stats.stamped += 1
            text = f"{text} [upstream call {stats.stamped}]"

        def pieces(text: str) -> list[str]:
            if piece_chars > 0:
                return tiny_pieces(text, piece_chars)
            return word_pieces(text) if by_words else list(split_text(text, 12))

        content = pieces(text)
        capped = behaviour.strict_max_tokens and cap is not None and len(content) > cap
        if capped:
            content = content[:cap]
            text = "".join(content)
        finish = request.headers.get("x-stub-finish", "length" if capped else "stop")
        tool = request.headers.get("x-stub-tool-call")
        if tool and chat:
            finish = "tool_calls"
        call: dict[str, Any] = {"id": "call_" + uuid.uuid4().hex[:12], "type": "function",
                                "function": {"name": tool, "arguments": codec.dumps({"q": prompt}).decode()}}
        arguments = list(split_text(call["function"]["arguments"], 8)) if tool and chat else []
        tokens = len(arguments) if tool and chat else len(content)  # what the stream sends, piece by piece
        usage = {"prompt_tokens": len(prompt.split()), "completion_tokens": tokens,
                 "total_tokens": len(prompt.split()) + tokens}
        out = ResponseBuilder("chat" if chat else "completions", body["model"])
        if not body.get("stream"):
            if interval and tokens:
                await asyncio.sleep(tokens * interval)  # the generation a real server would spend
            choice = out.final_choice(0, text, finish)
            if tool and chat:
                choice["message"] = {"role": "assistant", "content": None, "tool_calls": [call]}
            return json_response(out.body([choice], usage))

        response = await open_event_stream(request)
        events: list[tuple[dict[str, Any], bool]] = []  # (event, is it a token piece)
        if chat:
            events.append((out.chunk(out.delta(0, {"role": "assistant", "content": ""})), False))
            if tool:
                events.append((out.chunk(out.delta(0, {"tool_calls": [
                    {"index": 0, **call, "function": {"name": tool, "arguments": ""}}]})), False))
                for piece in arguments:
                    events.append((out.chunk(out.delta(0, {"tool_calls": [
                        {"index": 0, "function": {"arguments": piece}}]})), True))
            else:
                events.extend((out.chunk(out.piece(0, piece)), True) for piece in content)
            events.append((out.chunk(out.delta(0, {}, finish)), False))
        else:
            events.extend((out.chunk(out.piece(0, piece)), True) for piece in content)
            events.append((out.chunk(out.piece(0, "", finish)), False))
        if (body.get("stream_options") or {}).get("include_usage"):
            events.append((out.usage_chunk(usage), False))
        break_after = int(request.headers.get("x-stub-break", "0"))
        delay = float(request.headers.get("x-stub-chunk-delay-ms", behaviour.chunk_delay_ms)) / 1000
        loop = asyncio.get_running_loop()
        first_piece_at, sent = 0.0, 0
        try:
            for i, (event, token) in enumerate(events):
                if break_after and i >= break_after:
                    if request.transport is not None:
                        request.transport.close()  # die mid-stream, like a crashed server
                    return response
                if token and interval:
                    if sent == 0:
                        first_piece_at = loop.time()
                    else:  # piece k leaves k intervals after the first, however long the writes took
                        wait = first_piece_at + sent * interval - loop.time()
                        if wait > 0:
                            await asyncio.sleep(wait)
                    sent += 1
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

    async def embeddings(request: web.Request) -> web.Response:
        """OpenAI's /v1/embeddings: a unit vector per input, seeded by its text; usage counts words."""
        try:
            body = codec.loads(await request.read())
            inputs, dimensions, encoding = _embedding_request(body)
        except (codec.JSONDecodeError, ValueError) as exc:
            return error_response(400, str(exc) or "The body is not JSON.", code="invalid_request_error")
        data = [{"object": "embedding", "index": i, "embedding": _embedding(text, dimensions, encoding)}
                for i, text in enumerate(inputs)]
        tokens = sum(len(text.split()) or 1 for text in inputs)
        return json_response({"object": "list", "data": data, "model": body["model"],
                              "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})

    async def echo(request: web.Request) -> web.Response:
        """Any other /v1 path: echo what arrived, so pass-through can be checked."""
        body = await request.read()
        return json_response({"method": request.method, "path": request.path, "query": dict(request.query),
                                  "body": body.decode("utf-8", errors="replace"),
                                  "authorization": request.headers.get("Authorization")})

    app.router.add_post("/v1/chat/completions", completion)
    app.router.add_post("/v1/completions", completion)
    app.router.add_get("/v1/models", list_models)
    app.router.add_post("/v1/embeddings", embeddings)
    app.router.add_route("*", "/v1/{tail:.*}", echo)
    return app


MAX_EMBEDDING_INPUTS = 2048  # OpenAI's own bound
MAX_EMBEDDING_DIMENSIONS = 4096


def _embedding_request(body: Any) -> tuple[list[str], int, str]:
    """An embeddings body's inputs (strings, or token arrays read as their numbers), dimensions (8 unless asked)
    and encoding format; ValueError says what is wrong."""
    if not isinstance(body, dict) or not isinstance(body.get("model"), str):
        raise ValueError("'model' is required.")
    raw = body.get("input")
    items = raw if isinstance(raw, list) and raw and not all(isinstance(x, int) for x in raw) else [raw]
    if not 1 <= len(items) <= MAX_EMBEDDING_INPUTS:
        raise ValueError(f"'input' holds 1 to {MAX_EMBEDDING_INPUTS} items.")
    inputs = []
    for item in items:
        if isinstance(item, list) and all(isinstance(x, int) and not isinstance(x, bool) for x in item):
            item = " ".join(map(str, item))
        if not isinstance(item, str) or not item:
            raise ValueError("'input' is a non-empty string, a list of them, or token arrays.")
        inputs.append(item)
    dimensions = body.get("dimensions", 8)
    if isinstance(dimensions, bool) or not isinstance(dimensions, int) \
            or not 1 <= dimensions <= MAX_EMBEDDING_DIMENSIONS:
        raise ValueError(f"'dimensions' is an integer from 1 to {MAX_EMBEDDING_DIMENSIONS}.")
    encoding = body.get("encoding_format", "float")
    if encoding not in ("float", "base64"):
        raise ValueError("'encoding_format' is 'float' or 'base64'.")
    return inputs, dimensions, encoding


def _embedding(text: str, dimensions: int, encoding: str) -> list[float] | str:
    """A unit vector seeded by the text; base64 as OpenAI sends it (little-endian float32)."""
    rng = random.Random(uuid.uuid5(uuid.NAMESPACE_URL, text).int)
    vector = [rng.gauss(0.0, 1.0) for _ in range(dimensions)]
    norm = math.sqrt(sum(x * x for x in vector)) or 1.0
    vector = [x / norm for x in vector]
    if encoding == "float":
        return vector
    return base64.b64encode(struct.pack(f"<{dimensions}f", *vector)).decode("ascii")


def _prompt_of(body: dict[str, Any], chat: bool) -> str:
    if not chat:
        prompt = body["prompt"]
        return prompt if isinstance(prompt, str) else codec.dumps(prompt).decode()
    content = body["messages"][-1].get("content") if body["messages"] else ""
    if isinstance(content, list):
        content = " ".join(p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return str(content or "")
