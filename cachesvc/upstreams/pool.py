"""The upstreams behind the proxy, and which serve a model.

A model goes to the upstreams listing it, else to the catch-alls (``models`` empty); several of them serve it as a
``FailoverUpstream`` (upstreams/failover.py: tried in order of health, then config order), one alone as itself.
"""

from __future__ import annotations

from cachesvc.config import LoadPolicyConfig, UpstreamConfig
from cachesvc.metrics import Metrics
from cachesvc.openai.errors import RequestError
from cachesvc.upstreams.failover import FailoverUpstream
from cachesvc.upstreams.upstream import Upstream


class UpstreamPool:
    """Routes a model name to the upstreams that serve it (those listing it, else the catch-alls)."""

    def __init__(self, configs: list[UpstreamConfig], load: LoadPolicyConfig, metrics: Metrics) -> None:
        self.upstreams = [Upstream(c, load, metrics) for c in configs]
        self._metrics = metrics
        self._groups: dict[tuple[int, ...], FailoverUpstream] = {}  # by member indexes: one per distinct set

    async def open(self) -> None:
        for upstream in self.upstreams:
            await upstream.open()

    async def close(self) -> None:
        for upstream in self.upstreams:
            await upstream.close()

    def candidates(self, model: str) -> list[Upstream]:
        """The upstreams that serve ``model``, in config order (empty: none does)."""
        listed = [u for u in self.upstreams if u.config.models and model in u.config.models]
        return listed or [u for u in self.upstreams if not u.config.models]

    def for_model(self, model: str) -> Upstream:
        """The upstream for ``model``: the only one serving it, or a failover group of all that do."""
        chosen = self.candidates(model)
        if not chosen:
            known = sorted({m for u in self.upstreams for m in u.config.models})
            raise RequestError(404, f"The model {model!r} does not exist or is not served here (known: {known}).",
                               param="model", code="model_not_found")
        if len(chosen) == 1:
            return chosen[0]
        key = tuple(self.upstreams.index(u) for u in chosen)
        group = self._groups.get(key)
        if group is None:
            group = self._groups[key] = FailoverUpstream(chosen, self._metrics)
        return group

    @property
    def default(self) -> Upstream:
        """Where a pass-through call that names no model goes: the first upstream configured."""
        if not self.upstreams:
            raise RequestError(404, "No upstream is configured for requests other than the adapter pools'.",
                               code="model_not_found")
        return self.upstreams[0]

    def stats(self) -> dict[str, dict[str, object]]:
        return {upstream.name: upstream.stats() for upstream in self.upstreams}
