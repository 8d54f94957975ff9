"""Everything a running proxy holds, in one object reached through a typed app key (no module globals)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from cachesvc.answer import Answer
from cachesvc.config import Config
from cachesvc.embedder import Embedder
from cachesvc.metrics import Metrics
from cachesvc.semantic_cache import SemanticCache
from cachesvc.single_flight import SingleFlight
from cachesvc.upstream import UpstreamPool


@dataclass
class ProxyState:
    config: Config
    metrics: Metrics
    upstreams: UpstreamPool
    embedder: Embedder
    cache: SemanticCache | None = None  # set once the model is loaded and the index rebuilt
    classifier: Any = None  # CategoryClassifier
    flights: SingleFlight[Answer] = field(default_factory=SingleFlight)
    startup_error: str | None = None
    model_engine: Any = None  # the embedded model server's ModelEngine, when there is no upstream

    @property
    def ready(self) -> bool:
        return self.cache is not None

    def tenant_of(self, request: web.Request) -> str:
        """The trusted tenant header when configured, else a hash of the API key: answers never cross tenants."""
        header = self.config.server.tenant_header
        if header and request.headers.get(header):
            return "tenant:" + request.headers[header]
        auth = request.headers.get("Authorization")
        if auth:
            return "key:" + hashlib.sha256(auth.encode()).hexdigest()[:32]
        return "anonymous"


STATE = web.AppKey("cachesvc_state", ProxyState)
