"""One adapter pool: its replicas (each an upstream and a pager), what is resident where, the router, and the
page-ins that keep the chosen adapters resident.

A request for the pool's name is routed (the router picks the adapter from the query's context); a request
naming one of its adapters goes to that adapter and still counts for residency and learning. Either way the
request goes to a replica that holds the adapter (the least busy one: adapter affinity), and is paged in only when
none does: onto a replica with a free slot, else over the router's victim among adapters with nothing in flight.

The proxy keeps its own residency table per replica and reconciles it with the server's listing at start, after
any failed call, and when an upstream answers that it does not hold an adapter it should (a restarted server:
vLLM's 404, SGLang's 400, as the pager reads them); such a request is sent once more, after the adapter was paged
in again, before anything reached the client. A page-in
that fails (path missing, refused, timed out) marks the adapter unavailable for ``FAILED_ADAPTER_S`` and the
request falls back: to ``fallback_adapter`` when it is resident, else to the best resident adapter, else a 503.
Page-ins are measured (the load call, plus the extra wait of the first answer after it against the adapter's
warm answers) and fed to the router's cost model. Epoch plans are applied in the background, one at a time.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cachesvc.config import AdapterPoolConfig, LoadPolicyConfig, UpstreamConfig
from cachesvc.metrics import Metrics
from cachesvc.openai.errors import RequestError
from cachesvc.policies.routing.context import ContextProjection
from cachesvc.policies.routing.placement import place
from cachesvc.policies.routing.registry import make_router
from cachesvc.policies.routing.rewards import REWARDS, AnswerSeen
from cachesvc.policies.routing.router import RouterSettings
from cachesvc.routing.router_state import read_state, save_state
from cachesvc.upstreams.adapter_pager import AdapterPager, PagerError, make_pager
from cachesvc.upstreams.upstream import Upstream

log = logging.getLogger("cachesvc")

EMBEDDING_DIM = 384  # the bundled embedding model's; a smaller model caps the context dimension at its own
FAILED_ADAPTER_S = 60.0  # an adapter whose load failed is not tried again for this long
RECONCILE_EVERY_S = 5.0  # a stale replica is listed again at most this often
SAVE_EVERY_S = 10.0
DRAIN_WAIT_S = 15.0  # a plan waits this long at most for in-flight requests on adapters it unloads
DRAIN_POLL_S = 0.02
WARM_SMOOTHING = 0.2


@dataclass
class Replica:
    name: str
    upstream: Upstream
    pager: AdapterPager
    resident: set[str] = field(default_factory=set)
    inflight: Counter[str] = field(default_factory=Counter)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    stale: bool = True
    reconciled_at: float = float("-inf")

    def busy(self) -> int:
        return self.upstream.load.inflight


@dataclass
class Routed:
    """Where one request goes: the adapter, the replica, how it was chosen, and what the router saw."""

    adapter: str
    arm: int
    replica: Replica
    context: np.ndarray
    how: str  # router | direct | fallback
    model_field: str
    paged_s: float | None = None  # the load call's seconds when this request paged its adapter in
    released: bool = False


class AdapterPool:
    def __init__(self, config: AdapterPoolConfig, load: LoadPolicyConfig, metrics: Metrics) -> None:
        self.config = config
        self.name = config.name
        self._metrics = metrics
        self.adapters = [a.name for a in config.adapters]
        self._index = {name: i for i, name in enumerate(self.adapters)}
        self._paths = {a.name: a.path for a in config.adapters}
        self.replicas = []
        for i, url in enumerate(config.upstreams):
            upstream = Upstream(UpstreamConfig(url=url, name=f"{config.name}-{i}", api_key=config.api_key,
                                               max_connections=config.max_concurrency), load, metrics)
            pager = make_pager(config.server, url, api_key=config.api_key, load_timeout_s=config.load_timeout_s)
            self.replicas.append(Replica(f"{config.name}-{i}", upstream, pager))
        self._projections: dict[int, ContextProjection] = {}  # by the embedding's length
        self.context_size = min(config.context_dim, EMBEDDING_DIM) + 1
        self.router = make_router(config.router, RouterSettings(
            arms=len(self.adapters), dim=self.context_size, capacity=config.capacity * len(self.replicas),
            alpha=config.alpha, cost_weight=config.paging_cost.weight, prior_page_s=config.paging_cost.prior_s,
            epoch=config.epoch, seed=config.seed))
        self.reward_function = REWARDS[config.reward]
        self._failed_until: dict[str, float] = {}
        self._warm_upstream_s: dict[str, float] = {}
        self._plan_task: asyncio.Task[None] | None = None
        self._planned: np.ndarray | None = None  # the resident set being made, while a plan is applied
        self._state_path = Path(config.state_path).expanduser() if config.state_path else None
        self._saved_at = time.monotonic()
        self._save_task: asyncio.Task[None] | None = None
        self.page_ins = 0
        self.page_outs = 0
        self.page_in_failures = 0

    # -- lifetime ----------------------------------------------------------------------------------------------
    async def open(self) -> None:
        for replica in self.replicas:
            await replica.upstream.open()
            await replica.pager.open()
        if self._state_path is not None:
            state = await asyncio.to_thread(read_state, self._state_path, self.name, self.adapters)
            if state is not None:
                try:
                    self.router.load_state_dict(state)
                    log.info("pool %s: router state resumed from %s (%d requests seen)", self.name,
                             self._state_path, self.router.steps)
                except (ValueError, KeyError, TypeError) as exc:
                    log.warning("pool %s: router state %s does not fit (%s); starting afresh", self.name,
                                self._state_path, exc)
        for replica in self.replicas:
            await self._reconcile(replica)

    async def close(self) -> None:
        for task in (self._plan_task, self._save_task):
            if task is not None and not task.done():
                task.cancel()
        await self.save()
        for replica in self.replicas:
            await replica.pager.close()
            await replica.upstream.close()

    async def save(self) -> None:
        if self._state_path is None:
            return
        state = self.router.state_dict()
        await asyncio.to_thread(save_state, self._state_path, self.name, self.adapters, state)
        self._saved_at = time.monotonic()

    # -- the request path --------------------------------------------------------------------------------------
    def owns(self, model: str) -> bool:
        return model == self.name or model in self._index

    def context_of(self, embedding: np.ndarray | None) -> np.ndarray:
        """The router's context for a query embedding (no embedding: the bias alone)."""
        if embedding is None:
            context = np.zeros(self.context_size)
            context[-1] = 1.0
            return context
        size = int(np.asarray(embedding).size)
        projection = self._projections.get(size)
        if projection is None:
            projection = ContextProjection(size, self.context_size - 1, seed=self.config.seed)
            if projection.size != self.context_size:
                raise RequestError(500, f"The embedding model's {size} dimensions are fewer than pool "
                                   f"{self.name!r}'s context_dim.", code="adapter_context")
            self._projections[size] = projection
        return projection(embedding)

    async def route(self, model: str, embedding: np.ndarray | None) -> Routed:
        """Choose the adapter and the replica for one request and make the adapter resident there."""
        context = self.context_of(embedding)
        for stale in self.replicas:
            if stale.stale:
                await self._reconcile(stale)
        if model == self.name:
            # While a plan is being applied, route as if it were done: a request must not undo it.
            resident = self._planned if self._planned is not None else self._available_mask()
            arm, how = self.router.route(context, resident), "router"
        else:
            arm, how = self._index[model], "direct"
            self.router.observe_direct(context, arm)
        adapter = self.adapters[arm]
        replica = self._holder(adapter)
        paged_s = None
        if replica is None:
            try:
                replica, paged_s = await self._page_in(adapter)
            except (PagerError, RequestError) as exc:
                replica, adapter, arm = self._fallback(adapter, context, exc)
                how = "fallback"
        routed = Routed(adapter, arm, replica, context, how, self._model_field(adapter), paged_s)
        replica.inflight[adapter] += 1
        self._metrics.record_adapter_routed(self.name, adapter, how)
        self._maybe_plan()
        return routed

    def release(self, routed: Routed, status: int, upstream_s: float | None) -> None:
        """The request is over: count it out; learn the page-in's cold cost; a 404 means the server lost it."""
        if routed.released:
            return
        routed.released = True
        replica, adapter = routed.replica, routed.adapter
        replica.inflight[adapter] -= 1
        if replica.inflight[adapter] <= 0:
            del replica.inflight[adapter]
        if status == 0:  # no answer at all (unreachable, timed out): list the replica again before trusting it
            replica.stale = True
            return
        if status in (400, 404):  # vLLM says 404 for an adapter it lost, SGLang 400: list the replica again
            if status == 404:
                replica.resident.discard(adapter)
            replica.stale = True
            log.warning("pool %s: %s answered %d for adapter %r; listing it again", self.name, replica.name,
                        status, adapter)
            return
        answered = status == 200 and upstream_s is not None
        warm = self._warm_upstream_s.get(adapter)
        if routed.paged_s is not None:
            cold_extra = max(0.0, upstream_s - warm) if answered and warm is not None and upstream_s else 0.0
            cost = routed.paged_s + cold_extra
            self.router.record_page_in(routed.arm, cost)
            self._metrics.record_adapter_page_seconds(self.name, cost)
        elif answered and upstream_s is not None:
            self._warm_upstream_s[adapter] = upstream_s if warm is None else warm + WARM_SMOOTHING * (
                upstream_s - warm)

    def lost(self, routed: Routed, status: int, message: str) -> bool:
        """The replica answered that it does not hold the routed adapter (it restarted since the proxy loaded it):
        the adapter leaves its table and the replica is listed again by the next route, at once. Then the request
        may be sent again, since nothing was generated."""
        replica = routed.replica
        if not replica.pager.lost_adapter(status, message):
            return False
        replica.resident.discard(routed.adapter)
        replica.stale, replica.reconciled_at = True, float("-inf")
        self._metrics.record_adapter_resident(self.name, replica.name, len(replica.resident))
        self._metrics.record_adapter_lost(self.name, replica.name)
        log.warning("pool %s: %s no longer holds adapter %r (restarted?); paging it in again", self.name,
                    replica.name, routed.adapter)
        return True

    def learn(self, arm: int, context: np.ndarray, reward: float, source: str) -> None:
        self.router.learn(arm, context, reward)
        self._metrics.record_adapter_feedback(self.name, source, reward)
        if self._state_path is not None and time.monotonic() - self._saved_at > SAVE_EVERY_S and (
                self._save_task is None or self._save_task.done()):
            self._saved_at = time.monotonic()
            self._save_task = asyncio.get_running_loop().create_task(self.save())

    def auto_reward(self, routed: Routed, text: str, finish_reason: str | None, upstream_s: float) -> None:
        if self.reward_function is not None:
            reward = self.reward_function(AnswerSeen(text, finish_reason, upstream_s))
            self.learn(routed.arm, routed.context, min(1.0, max(0.0, reward)), "automatic")

    # -- residency ---------------------------------------------------------------------------------------------
    def _available_mask(self) -> np.ndarray:
        mask = np.zeros(len(self.adapters), dtype=bool)
        for replica in self.replicas:
            for name in replica.resident:
                mask[self._index[name]] = True
        return mask

    def _holder(self, adapter: str) -> Replica | None:
        holders = [r for r in self.replicas if adapter in r.resident]
        return min(holders, key=lambda r: (r.busy(), r.name)) if holders else None

    def _model_field(self, adapter: str) -> str:
        return self.replicas[0].pager.model_field(self.config.base_model or "", adapter)

    async def _page_in(self, adapter: str) -> tuple[Replica, float | None]:
        """The replica now holding ``adapter`` and the load call's seconds (None: another request loaded it)."""
        now = time.monotonic()
        if self._failed_until.get(adapter, 0.0) > now:
            raise RequestError(503, f"Adapter {adapter!r} failed to load recently; not tried again yet.",
                               code="adapter_unavailable")
        capacity = self.config.capacity
        order = sorted(self.replicas, key=lambda r: (len(r.resident) >= capacity, r.busy(), r.name))
        replica = order[0]
        async with replica.lock:
            if adapter in replica.resident:
                return replica, None
            if len(replica.resident) >= capacity:
                evictable = np.zeros(len(self.adapters), dtype=bool)
                for name in replica.resident:
                    if not replica.inflight.get(name):
                        evictable[self._index[name]] = True
                if not evictable.any():
                    raise RequestError(503, f"Every adapter on {replica.name} is busy; {adapter!r} cannot be "
                                       "paged in now.", code="adapter_unavailable")
                victim = self.adapters[self.router.victim(evictable, self._index[adapter])]
                await self._unload(replica, victim)
            return replica, await self._load(replica, adapter, "loaded")

    async def _load(self, replica: Replica, adapter: str, result: str) -> float | None:
        """Load ``adapter`` onto ``replica`` (its lock held): the load call's seconds, or None when the server
        had it already (our table was behind: nothing was measured). Any other failure raises PagerError."""
        try:
            seconds: float | None = await replica.pager.load(adapter, self._paths[adapter])
        except PagerError as exc:
            if exc.kind != "duplicate":
                self._load_failed(replica, adapter, exc)
                raise
            replica.stale = True
            seconds = None
        else:
            self.page_ins += 1
            self._metrics.record_adapter_page_in(self.name, replica.name, result)
        replica.resident.add(adapter)
        self._metrics.record_adapter_resident(self.name, replica.name, len(replica.resident))
        return seconds

    async def _unload(self, replica: Replica, adapter: str) -> None:
        """Unload an adapter with nothing in flight. It leaves the table first, before any await, so that no
        request is routed to it while the server drops it."""
        replica.resident.discard(adapter)
        self._metrics.record_adapter_resident(self.name, replica.name, len(replica.resident))
        try:
            await replica.pager.unload(adapter)
        except PagerError as exc:
            if exc.kind not in ("unknown_adapter",):
                replica.stale = True  # whether it is still there: the next listing says
                self._metrics.record_adapter_page_out(self.name, replica.name, exc.kind)
                raise
        self.page_outs += 1
        self._metrics.record_adapter_page_out(self.name, replica.name, "unloaded")

    def _load_failed(self, replica: Replica, adapter: str, exc: PagerError) -> None:
        self.page_in_failures += 1
        self._metrics.record_adapter_page_in(self.name, replica.name, exc.kind)
        if exc.kind in ("not_found", "refused", "bad_response"):
            self._failed_until[adapter] = time.monotonic() + FAILED_ADAPTER_S
        if exc.kind != "not_found":
            replica.stale = True
        log.warning("pool %s: paging %r into %s failed: %s", self.name, adapter, replica.name, exc)

    def _fallback(self, wanted: str, context: np.ndarray, exc: Exception) -> tuple[Replica, str, int]:
        fallback = self.config.fallback_adapter
        if fallback is not None and fallback != wanted and self._holder(fallback) is not None:
            holder = self._holder(fallback)
            assert holder is not None
            return holder, fallback, self._index[fallback]
        resident = self._available_mask()
        resident[self._index[wanted]] = False
        if resident.any():
            scores = np.where(resident, self.router.model.means(context), -np.inf)
            arm = int(np.argmax(scores))
            holder = self._holder(self.adapters[arm])
            assert holder is not None
            return holder, self.adapters[arm], arm
        message = exc.message if isinstance(exc, (PagerError, RequestError)) else str(exc)
        raise RequestError(503, f"Adapter {wanted!r} of pool {self.name!r} could not be made resident ({message}) "
                           "and no other adapter is resident.", code="adapter_unavailable") from None

    async def _reconcile(self, replica: Replica) -> None:
        now = time.monotonic()
        if now - replica.reconciled_at < RECONCILE_EVERY_S:
            return
        replica.reconciled_at = now
        try:
            listed = await replica.pager.loaded()
        except PagerError as exc:
            log.warning("pool %s: could not list adapters on %s: %s", self.name, replica.name, exc)
            return
        replica.resident = {name for name in listed if name in self._index}
        replica.stale = False
        self._metrics.record_adapter_resident(self.name, replica.name, len(replica.resident))

    # -- the controller ----------------------------------------------------------------------------------------
    def _maybe_plan(self) -> None:
        plan = self.router.plan(self._available_mask())
        if plan is None or (self._plan_task is not None and not self._plan_task.done()):
            return
        self._planned = np.asarray(plan, dtype=bool)
        self._plan_task = asyncio.get_running_loop().create_task(self._apply(self._planned))

    async def _apply(self, plan: np.ndarray) -> None:
        """Make the planned set resident: placed across replicas, unloading what leaves (when idle) first."""
        try:
            await self._apply_plan(plan)
        finally:
            self._planned = None

    async def _apply_plan(self, plan: np.ndarray) -> None:
        chosen = sorted((int(a) for a in np.flatnonzero(plan)), key=lambda a: -int(self.router.uses[a]))
        current = [{self._index[n] for n in r.resident} for r in self.replicas]
        targets = place(chosen, current, self.config.capacity, demand=self.router.uses.astype(float))
        for replica, target in zip(self.replicas, targets, strict=True):
            wanted = {self.adapters[a] for a in target}
            async with replica.lock:
                try:
                    leaving = sorted(replica.resident - wanted)
                    replica.resident.difference_update(leaving)  # no new request is routed to them from here on
                    await self._drained(replica, set(leaving))
                    for name in leaving:
                        if replica.inflight.get(name):
                            replica.resident.add(name)  # still busy after the wait: it stays this epoch
                        else:
                            await self._unload(replica, name)
                    for name in sorted(wanted - replica.resident):
                        if len(replica.resident) >= self.config.capacity:
                            break
                        if self._failed_until.get(name, 0.0) > time.monotonic():
                            continue
                        try:
                            seconds = await self._load(replica, name, "planned")
                        except PagerError:
                            continue
                        if seconds is not None:
                            self.router.record_page_in(self._index[name], seconds)
                except PagerError:
                    continue  # the replica is marked stale; the next request lists it again
                finally:
                    self._metrics.record_adapter_resident(self.name, replica.name, len(replica.resident))

    async def _drained(self, replica: Replica, leaving: set[str]) -> None:
        """Wait (bounded) until the adapters about to leave ``replica`` have nothing in flight (the request that
        ended the epoch is itself in flight on one of them). They are out of the table meanwhile, so new requests
        for them queue on the replica's lock instead of keeping them busy forever."""
        deadline = time.monotonic() + DRAIN_WAIT_S
        while any(replica.inflight.get(name) for name in leaving) and time.monotonic() < deadline:
            await asyncio.sleep(DRAIN_POLL_S)

    def describe(self) -> dict[str, Any]:
        """The pool for /admin/adapters: its stats and, per adapter, what the router has learned of it."""
        router = self.router
        counts, sums = router.model.counts, router.model.reward_sums
        where = {name: [r.name for r in self.replicas if name in r.resident] for name in self.adapters}
        return {"name": self.name, **self.stats(), "epoch_length": self._epoch_length(),
                "adapters": [{
                    "name": name, "resident_on": where[name], "rewards": int(counts[i]),
                    "mean_reward": round(float(sums[i] / counts[i]), 4) if counts[i] else None,
                    "routed": int(router.uses[i]), "page_in_s": round(float(router.cost.seconds[i]), 4),
                    "page_in_measured": int(router.cost.measured[i]),
                } for i, name in enumerate(self.adapters)]}

    def _epoch_length(self) -> int | None:
        length = getattr(self.router, "epoch_length", None)
        return int(length()) if callable(length) else None

    def stats(self) -> dict[str, Any]:
        router = self.router
        return {
            "router": router.name, "adapters": self.adapters, "capacity_per_replica": self.config.capacity,
            "requests_routed": router.steps, "rewards": int(router.model.counts.sum()),
            "page_ins": self.page_ins, "page_outs": self.page_outs, "page_in_failures": self.page_in_failures,
            "reward_total": round(float(router.model.reward_sums.sum()), 4),
            "page_in_seconds": {a: round(float(s), 4) for a, s in zip(self.adapters, router.cost.seconds,
                                                                       strict=True)},
            "replicas": {r.name: {"url": r.upstream.config.url, "resident": sorted(r.resident),
                                  "inflight": dict(r.inflight), "stale": r.stale} for r in self.replicas},
        }
