"""`cachesvc serve` without an upstream: the reference model server runs in the same process, on a free loopback
port, as the proxy's only upstream, so one command runs client -> proxy -> cache -> model."""

from __future__ import annotations

import logging
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

from aiohttp import web

from cachesvc.config import Config, UpstreamConfig
from cachesvc.model_server.app import create_model_server_app
from cachesvc.model_server.engine import ModelEngine

log = logging.getLogger("cachesvc")
EMBEDDED_UPSTREAM = "embedded"


def embed_model_server(
    config: Config, model: tuple[Any, Any] | None = None
) -> tuple[ModelEngine, Callable[[web.Application], AsyncIterator[None]]]:
    """Point ``config.upstreams`` at a model server bound now to a free loopback port; returns the engine and a
    cleanup context that serves it while the proxy runs."""
    # The model loads on the engine's thread while the embedding model loads on the embedder's: transformers'
    # lazy imports are not safe when two threads run them at once, so they run here first.
    from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: F401  (imported for the side effect)

    engine = ModelEngine(config.model_server, loaded=model)  # checks the KV policy options before a port is taken
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    upstream = UpstreamConfig(url=f"http://127.0.0.1:{port}/v1", name=EMBEDDED_UPSTREAM)
    upstream.validate("upstreams[0]")
    config.upstreams = [upstream]
    model_app = create_model_server_app(config.model_server, engine=engine)

    async def serve(_: web.Application) -> AsyncIterator[None]:
        runner = web.AppRunner(model_app, access_log=None)
        await runner.setup()
        await web.SockSite(runner, sock).start()
        log.info("no upstream configured: model server %s (%s) on %s", engine.model_name, config.model_server.model,
                 upstream.url)
        yield
        await runner.cleanup()

    return engine, serve
