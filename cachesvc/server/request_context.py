"""One completions request on its way through the proxy: what was parsed, where it goes, what each stage cost."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from aiohttp import web

from cachesvc.cache.controls import CacheControls
from cachesvc.cache.request_key import CacheRequest
from cachesvc.upstreams.upstream import Upstream


@dataclass
class RequestContext:
    http: web.Request
    req: CacheRequest
    controls: CacheControls
    upstream: Upstream
    stages: dict[str, float] = field(default_factory=dict)  # lookup stage -> seconds, in the order they ran
    headers: dict[str, str] = field(default_factory=dict)  # said on every answer to this request
    model_override: str | None = None  # the "model" sent upstream instead of the client's (a routed adapter)
    response_id: str | None = None  # the upstream answer's id, once the relay has seen it

    @contextmanager
    def timed(self, stage: str) -> Iterator[None]:
        """Time a lookup stage into ``stages``."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self.stages[stage] = time.perf_counter() - started

    def server_timing(self) -> str:
        """The lookup's cost by stage as a standard Server-Timing header (milliseconds)."""
        return ", ".join(f"{name};dur={seconds * 1000:.3f}" for name, seconds in self.stages.items())
