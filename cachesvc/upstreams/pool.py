"""The upstreams behind the proxy, and which one serves a model."""

from __future__ import annotations

from cachesvc.config import LoadPolicyConfig, UpstreamConfig
from cachesvc.metrics import Metrics
from cachesvc.openai.errors import RequestError
from cachesvc.upstreams.upstream import Upstream


class UpstreamPool:
    """Routes a model name to the upstream that serves it (the first listing it, else the first catch-all)."""

    def __init__(self, configs: list[UpstreamConfig], load: LoadPolicyConfig, metrics: Metrics) -> None:
        self.upstreams = [Upstream(c, load, metrics) for c in configs]

    async def open(self) -> None:
        for upstream in self.upstreams:
            await upstream.open()

    async def close(self) -> None:
        for upstream in self.upstreams:
            await upstream.close()

    def for_model(self, model: str) -> Upstream:
        listed = [u for u in self.upstreams if u.config.models and model in u.config.models]
        catch_all = [u for u in self.upstreams if not u.config.models]
        chosen = listed or catch_all
        if not chosen:
            known = sorted({m for u in self.upstreams for m in u.config.models})
            raise RequestError(404, f"The model {model!r} does not exist or is not served here (known: {known}).",
                               param="model", code="model_not_found")
        return chosen[0]

    @property
    def default(self) -> Upstream:
        if not self.upstreams:
            raise RequestError(404, "No upstream is configured for requests other than the adapter pools'.",
                               code="model_not_found")
        return self.upstreams[0]

    def stats(self) -> dict[str, dict[str, object]]:
        return {upstream.name: upstream.stats() for upstream in self.upstreams}
