"""The proxy's parts, built once by ``create_app`` and reached by handlers through one typed app key."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from aiohttp import web

from cachesvc.cache.semantic_cache import SemanticCache
from cachesvc.cache.single_flight import SingleFlight
from cachesvc.config import Config
from cachesvc.embedding.embedder import Embedder
from cachesvc.metrics import Metrics
from cachesvc.openai.answer import Answer
from cachesvc.routing.pools import AdapterPools
from cachesvc.server.cache_warmup import CacheWarmup
from cachesvc.server.completions import CompletionsService
from cachesvc.server.rate_limits import TenantRateLimits
from cachesvc.server.tenants import TenantResolver
from cachesvc.upstreams.pool import UpstreamPool
from cachesvc.verifier.agreement import AgreementMonitor
from cachesvc.verifier.judge import Judge
from cachesvc.verifier.runtime import VerifierRuntime

if TYPE_CHECKING:  # the model server's engine imports torch; only its type is needed here
    from cachesvc.model_server.engine import ModelEngine


@dataclass(frozen=True)
class ProxyServices:
    config: Config
    metrics: Metrics
    upstreams: UpstreamPool
    embedder: Embedder
    cache: SemanticCache
    flights: SingleFlight[Answer]
    warmup: CacheWarmup
    completions: CompletionsService
    verifier: VerifierRuntime
    agreement: AgreementMonitor
    pools: AdapterPools
    tenants: TenantResolver = field(default_factory=TenantResolver)  # who is who (tenants: in the config)
    limits: TenantRateLimits | None = None  # their rate limits (pass-through; completions holds its own reference)
    judge: Judge | None = None
    model_engine: ModelEngine | None = None  # the embedded model server's, when no upstream is configured

    @property
    def ready(self) -> bool:
        """The cache is online (embedding model loaded, index rebuilt)."""
        return self.cache.ready


SERVICES = web.AppKey("cachesvc_services", ProxyServices)
