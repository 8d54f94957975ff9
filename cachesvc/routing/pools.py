"""Every configured adapter pool, found by the model name a request gives (the pool's or one of its adapters'),
and the feedback book shared by them."""

from __future__ import annotations

from typing import Any

from cachesvc.config import AdapterPoolConfig, LoadPolicyConfig
from cachesvc.metrics import Metrics
from cachesvc.routing.adapter_pool import AdapterPool
from cachesvc.routing.feedback import FeedbackBook


class AdapterPools:
    def __init__(self, configs: list[AdapterPoolConfig], load: LoadPolicyConfig, metrics: Metrics) -> None:
        self.pools = [AdapterPool(c, load, metrics) for c in configs]
        self._by_model = {model: pool for pool in self.pools for model in (pool.name, *pool.adapters)}
        self._by_name = {pool.name: pool for pool in self.pools}
        ttl = max((c.feedback_ttl_s for c in configs), default=3600.0)
        self.feedback = FeedbackBook(ttl, sum(c.max_feedback_ids for c in configs) or 1)

    def __bool__(self) -> bool:
        return bool(self.pools)

    def for_model(self, model: str) -> AdapterPool | None:
        return self._by_model.get(model)

    def by_name(self, name: str) -> AdapterPool | None:
        return self._by_name.get(name)

    def models(self) -> list[tuple[str, str | None]]:
        """(model id, parent) for /v1/models: each pool, and each adapter under its pool."""
        return [(p.name, None) for p in self.pools] + [(a, p.name) for p in self.pools for a in p.adapters]

    async def open(self) -> None:
        for pool in self.pools:
            await pool.open()

    async def close(self) -> None:
        for pool in self.pools:
            await pool.close()

    def stats(self) -> dict[str, Any]:
        return {"pools": {pool.name: pool.stats() for pool in self.pools}, "feedback_pending": len(self.feedback)}
