"""HTTP routes of the model server: OpenAI completions (streamed as vLLM streams them), models, vLLM's runtime
LoRA endpoints and health. The model runs on the engine's worker thread; handlers only await its events."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web

from cachesvc.config import ModelServerConfig
from cachesvc.model_server.engine import GenerationJob, ModelEngine, model_not_found
from cachesvc.model_server.generation import Finished, Prefilled, TextDelta
from cachesvc.model_server.metrics import ModelServerMetrics
from cachesvc.model_server.protocol import parse_request
from cachesvc.model_server.responses import completion_body, final_chunk, kv_headers, role_chunk, text_chunk, usage_of
from cachesvc.openai.errors import RequestError
from cachesvc.openai.http import errors_as_json, json_response, open_event_stream, read_json
from cachesvc.openai.protocol import Endpoint
from cachesvc.openai.responses import ResponseBuilder
from cachesvc.openai.sse import DONE, encode_event

ENGINE = web.AppKey("model_engine", ModelEngine)
METRICS = web.AppKey("model_metrics", ModelServerMetrics)
MAX_BODY_BYTES = 8 * 1024 * 1024
DISCONNECT_POLL_S = 0.2


def create_model_server_app(config: ModelServerConfig, *, engine: ModelEngine | None = None) -> web.Application:
    """The app; the engine starts (and loads the model) when the app starts, so the port opens at once."""
    app = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=[errors_as_json])
    app[ENGINE] = engine or ModelEngine(config)
    app[METRICS] = ModelServerMetrics()
    app.cleanup_ctx.append(_run_engine)
    routes: tuple[tuple[str, Endpoint], ...] = (("/v1/chat/completions", "chat"), ("/v1/completions", "completions"))
    for path, endpoint in routes:
        app.router.add_post(path, _completion_handler(endpoint))
    app.router.add_get("/v1/models", list_models)
    app.router.add_post("/v1/load_lora_adapter", load_lora_adapter)
    app.router.add_post("/v1/unload_lora_adapter", unload_lora_adapter)
    app.router.add_get("/health", health)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    return app


async def _run_engine(app: web.Application) -> AsyncIterator[None]:
    engine = app[ENGINE]
    engine.start()
    yield
    await engine.close()


def _completion_handler(endpoint: Endpoint) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handler(request: web.Request) -> web.StreamResponse:
        return await completion(request, endpoint)
    return handler


async def completion(request: web.Request, endpoint: Endpoint) -> web.StreamResponse:
    engine = request.app[ENGINE]
    body = await read_json(request, MAX_BODY_BYTES)
    req = parse_request(body, endpoint, default_model=engine.model_name,
                        default_temperature=1.0 if engine.config.default_temperature is None
                        else engine.config.default_temperature,
                        allow_kv_override=engine.config.request_kv_policy)
    if req.model != engine.model_name and req.model not in engine.adapter_names():
        raise model_not_found(req.model)
    metrics = request.app[METRICS]
    started = time.perf_counter()
    job = engine.submit(req)
    metrics.queued.set(engine.pending)
    watcher = asyncio.create_task(_cancel_on_disconnect(request, job))
    try:
        prefilled = await job.next()
        assert isinstance(prefilled, Prefilled)
        metrics.ttft.observe(time.perf_counter() - started)
        builder = ResponseBuilder(endpoint, req.model)
        if req.stream:
            return await _stream(request, job, builder, prefilled, req.include_usage,
                                 lambda done: _record(metrics, req.model, done))
        text: list[str] = []
        while not isinstance(event := await job.next(), Finished):
            text.append(event.text)
        _record(metrics, req.model, event)
        return json_response(completion_body(builder, "".join(text), event), headers=kv_headers(event.kv))
    finally:
        metrics.queued.set(engine.pending)
        job.cancel()
        watcher.cancel()


def _record(metrics: ModelServerMetrics, model: str, done: Finished) -> None:
    metrics.requests.labels(model, done.finish_reason).inc()
    metrics.prompt_tokens.inc(done.prompt_tokens)
    metrics.generation_tokens.inc(done.completion_tokens)
    if done.kv.entries_full:
        metrics.kv_kept_ratio.observe(done.kv.entries_kept / done.kv.entries_full)


async def _stream(request: web.Request, job: GenerationJob, builder: ResponseBuilder, prefilled: Prefilled,
                  include_usage: bool, on_finished: Callable[[Finished], None]) -> web.StreamResponse:
    """SSE after prefill (so a prompt error is still a plain error response), ending in ``data: [DONE]``."""
    response = await open_event_stream(request, kv_headers(prefilled.kv))
    try:
        if builder.chat:
            await response.write(encode_event(role_chunk(builder)))
        while True:
            try:
                event = await job.next()
            except RequestError as exc:  # failed mid-way: vLLM sends the error as an event, then [DONE]
                await response.write(encode_event(exc.body()))
                break
            if isinstance(event, TextDelta):
                await response.write(encode_event(text_chunk(builder, event.text)))
                continue
            assert isinstance(event, Finished)
            on_finished(event)
            await response.write(encode_event(final_chunk(builder, event)))
            if include_usage:
                await response.write(encode_event(builder.usage_chunk(usage_of(event))))
            break
        await response.write(encode_event(DONE))
        await response.write_eof()
    except (ConnectionResetError, ConnectionError):
        job.cancel()
    return response


async def _cancel_on_disconnect(request: web.Request, job: GenerationJob) -> None:
    """Stop generating for a client that went away (aiohttp does not cancel handlers on disconnect)."""
    while True:
        await asyncio.sleep(DISCONNECT_POLL_S)
        transport = request.transport
        if transport is None or transport.is_closing():
            job.cancel()
            return


async def list_models(request: web.Request) -> web.Response:
    """The base model and every loaded adapter (``parent`` names the base model, as vLLM lists them)."""
    engine = request.app[ENGINE]
    created = int(time.time())
    cards = [{"id": engine.model_name, "object": "model", "created": created, "owned_by": "cachesvc",
              "root": engine.config.model, "parent": None, "max_model_len": engine.max_model_len or None}]
    registry = engine.registry
    for name in engine.adapter_names():
        with contextlib.suppress(RequestError):  # unloaded since names() was read
            info = registry.info(name)
            cards.append({"id": name, "object": "model", "created": created, "owned_by": "cachesvc",
                          "root": info.path, "parent": engine.model_name, "max_model_len": engine.max_model_len})
    return json_response({"object": "list", "data": cards})


async def load_lora_adapter(request: web.Request) -> web.Response:
    """vLLM's runtime LoRA load: ``{lora_name, lora_path}``; 200 with a plain-text confirmation."""
    engine = request.app[ENGINE]
    body = await read_json(request, MAX_BODY_BYTES)
    if not isinstance(body, dict):
        raise RequestError(400, "The request body must be a JSON object.")
    name, path = body.get("lora_name"), body.get("lora_path")
    if not isinstance(name, str) or not isinstance(path, str) or not name or not path:
        raise RequestError(400, "Both 'lora_name' and 'lora_path' must be provided.", param="lora_name")
    if name == engine.model_name:
        raise RequestError(400, f"The lora adapter '{name}' has the base model's name.", param="lora_name")
    await _adapter_op(request, "load", lambda eng: eng.registry.load(name, path))
    return web.Response(text=f"Success: LoRA adapter '{name}' added successfully.")


async def unload_lora_adapter(request: web.Request) -> web.Response:
    """vLLM's runtime LoRA unload: ``{lora_name}``; 404 for an adapter that is not loaded."""
    body = await read_json(request, MAX_BODY_BYTES)
    if not isinstance(body, dict):
        raise RequestError(400, "The request body must be a JSON object.")
    name = body.get("lora_name")
    if not isinstance(name, str) or not name:
        raise RequestError(400, "'lora_name' needs to be provided to unload a LoRA adapter.", param="lora_name")
    await _adapter_op(request, "unload", lambda eng: eng.registry.unload(name))
    return web.Response(text=f"Success: LoRA adapter '{name}' removed successfully.")


async def _adapter_op(request: web.Request, operation: str, fn: Callable[[ModelEngine], object]) -> None:
    """Run a registry operation on the engine's thread and count it."""
    engine, metrics = request.app[ENGINE], request.app[METRICS]
    try:
        await engine.call(fn)
    except RequestError as exc:
        metrics.adapter_ops.labels(operation, str(exc.status)).inc()
        raise
    metrics.adapter_ops.labels(operation, "200").inc()
    metrics.adapters_loaded.set(len(engine.adapter_names()))


async def metrics(request: web.Request) -> web.Response:
    registry = request.app[METRICS]
    registry.queued.set(request.app[ENGINE].pending)
    return web.Response(body=registry.render(), headers={"Content-Type": registry.content_type})


async def health(request: web.Request) -> web.Response:
    """vLLM's probe: 200 with an empty body once the model is loaded, 503 before (or if it failed)."""
    return web.Response(status=200 if request.app[ENGINE].status == "ready" else 503)


async def healthz(request: web.Request) -> web.Response:
    """State, queue and counters as JSON; 503 until the model is loaded."""
    engine = request.app[ENGINE]
    stats = engine.stats
    body = {"status": engine.status, "model": engine.model_name, "queued": engine.pending,
            "adapters": engine.adapter_names(), "kv_policy": engine.config.kv_policy,
            "kv_policy_options": engine.config.kv_policy_options,
            "kv_budget": engine.config.kv_budget, "load_seconds": engine.load_seconds,
            "requests": stats.requests, "prompt_tokens": stats.prompt_tokens,
            "completion_tokens": stats.completion_tokens, "busy_seconds": round(stats.busy_s, 3)}
    if engine.load_error:
        body["error"] = engine.load_error
    return json_response(body, status=200 if engine.status == "ready" else 503)
