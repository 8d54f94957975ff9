"""POST /v1/chat/completions and /v1/completions: look up, or forward and remember.

bypass (no lookup, no write) -> exact tier -> embed + classify -> semantic tier -> single flight -> upstream,
streamed back as it arrives; a complete, successful answer is stored before the stream's ``[DONE]`` goes out.
"""

from __future__ import annotations

import time

import numpy as np
from aiohttp import web

from cachesvc.cache.categorizer import Categorizer
from cachesvc.cache.controls import parse_controls
from cachesvc.cache.entry import CacheEntry, EntryDraft, EntryScope
from cachesvc.cache.request_key import parse_request
from cachesvc.cache.semantic_cache import Hit, LookupTimings, SemanticCache
from cachesvc.cache.single_flight import SingleFlight
from cachesvc.config import Config
from cachesvc.embedding.embedder import Embedder
from cachesvc.metrics import Metrics
from cachesvc.openai import codec
from cachesvc.openai.answer import Answer
from cachesvc.openai.errors import RequestError
from cachesvc.openai.http import Handler, read_json, request_error_response
from cachesvc.openai.protocol import Endpoint
from cachesvc.policies.cache.load_adaptive import EffectivePolicy, effective_policy
from cachesvc.routing.adapter_pool import AdapterPool
from cachesvc.routing.pools import AdapterPools
from cachesvc.server.rate_limits import RateLimited, TenantRateLimits
from cachesvc.server.request_context import RequestContext
from cachesvc.server.tenants import TenantResolver
from cachesvc.server.upstream_relay import UPSTREAM_MS_HEADER, Remember, UpstreamRelay, write_answer
from cachesvc.upstreams.pool import UpstreamPool
from cachesvc.verifier.agreement import AgreementMonitor, HitSample
from cachesvc.verifier.judge import Judge

Outcome = tuple[web.StreamResponse, str]  # the response and its result: hit, miss, bypass or error


class CompletionsService:
    """The cached completions path, built once with its collaborators."""

    def __init__(self, config: Config, *, cache: SemanticCache, embedder: Embedder, categorizer: Categorizer,
                 upstreams: UpstreamPool, flights: SingleFlight[Answer], metrics: Metrics,
                 judge: Judge | None = None, agreement: AgreementMonitor | None = None,
                 pools: AdapterPools | None = None, tenants: TenantResolver | None = None,
                 limits: TenantRateLimits | None = None) -> None:
        self._config = config
        self._tenants = tenants or TenantResolver(config.tenants, metrics)
        self._limits = limits  # None: no rate limits
        self._pools = pools
        self._judge = judge
        self._agreement = agreement
        self._cache = cache
        self._embedder = embedder
        self._categorizer = categorizer
        self._upstreams = upstreams
        self._flights = flights
        self._metrics = metrics
        self._relay = UpstreamRelay(metrics)

    def handler(self, endpoint: Endpoint) -> Handler:
        async def handle(request: web.Request) -> web.StreamResponse:
            return await self.handle(request, endpoint)
        return handle

    async def handle(self, request: web.Request, endpoint: Endpoint) -> web.StreamResponse:
        started = time.perf_counter()
        try:
            if self._limits is not None:  # every request counts, hits included
                await self._limits.admit(self._tenants.of_request(request))
            response, result = await self._answer(request, endpoint)
        except RateLimited as exc:
            response, result = request_error_response(exc, {"x-cachesvc-cache": "bypass", **exc.headers}), "error"
        except RequestError as exc:
            response, result = request_error_response(exc, {"x-cachesvc-cache": "bypass"}), "error"
        self._metrics.record_answered(result, time.perf_counter() - started)
        return response

    async def _answer(self, request: web.Request, endpoint: Endpoint) -> Outcome:
        cache_config = self._config.cache
        body = await read_json(request, self._config.server.max_body_bytes)
        req = parse_request(endpoint, body)
        controls = parse_controls(request.headers, body, cache_config.categories)
        pool = self._pools.for_model(req.model) if self._pools else None
        upstream = pool.replicas[0].upstream if pool is not None else self._upstreams.for_model(req.model)
        ctx = RequestContext(request, req, controls, upstream)
        reason = self._bypass_reason(ctx)
        if reason is not None:
            return await self._bypass(ctx, reason, {})

        query = req.query
        if query is not None and len(query) > cache_config.max_query_chars:
            query = None  # exact tier only: no lookup work grows with the question past the bound
            ctx.headers["x-cachesvc-semantic"] = "skipped:query_too_long"
        tenant = self._tenants.of_request(request).id
        namespace = controls.namespace or cache_config.default_namespace
        partition = req.partition(tenant, namespace)
        exact_key = req.exact_key(partition)
        pressure = ctx.upstream.load.pressure()

        def policy_for(category: str) -> EffectivePolicy:
            return effective_policy(cache_config.category(category), pressure)

        if controls.may_read and cache_config.exact:
            with ctx.timed("exact"):
                hit = await self._cache.lookup_exact(exact_key, policy_for, controls.max_age_s)
            if hit is not None:
                return await self._serve_hit(ctx, hit), "hit"

        vector, category = await self._embed_and_classify(ctx, query)
        category_policy = cache_config.category(category)
        if not category_policy.enabled:
            return await self._bypass(ctx, "category_disabled", {"x-cachesvc-category": category})

        if controls.may_read and vector is not None and category_policy.semantic and query is not None:
            timings = LookupTimings()
            hit = await self._cache.lookup_semantic(partition, query, vector, policy_for(category),
                                                    controls.max_age_s, timings)
            for stage in ("search", "verify", "fetch"):
                ctx.stages[stage] = getattr(timings, f"{stage}_s")
                self._metrics.record_lookup_stage(stage, ctx.stages[stage])
            if hit is None and timings.best_rejected is not None and self._judge is not None:
                hit = await self._ask_judge(ctx, query, timings.best_rejected, category, pressure)
            if hit is not None:
                return await self._serve_hit(ctx, hit), "hit"

        draft = None
        if controls.may_write:
            scope = EntryScope(partition, exact_key, tenant, namespace, category, req.model)
            draft = EntryDraft(scope, query, vector, controls.ttl_s or category_policy.ttl_s,
                               category_policy.max_ttl_factor)
        return await self._miss(ctx, exact_key, category, draft)

    def _bypass_reason(self, ctx: RequestContext) -> str | None:
        cache_config = self._config.cache
        if not cache_config.enabled:
            return "disabled"
        if ctx.controls.no_store:
            return "no_store"
        if not self._cache.ready:
            return "warming_up"
        temperature = ctx.req.temperature
        if not ctx.controls.sampled:
            if temperature is None and not cache_config.cache_unset_temperature:
                return "temperature_unset"
            if temperature is not None and temperature > cache_config.max_cacheable_temperature:
                return "temperature"
        return None

    async def _embed_and_classify(self, ctx: RequestContext, query: str | None) -> tuple[np.ndarray | None, str]:
        """The vector of the text matched semantically (None: not matched) and the request's category (a client's
        override wins; a question too long to match gets the surface rules on its first part)."""
        category = ctx.controls.category
        vector = None
        if query is not None and self._config.cache.semantic:
            with ctx.timed("embed"):
                vector = await self._embedder.embed(query)
            self._metrics.record_lookup_stage("embed", ctx.stages["embed"])
            if category is None:
                with ctx.timed("classify"):
                    category = await self._categorizer.classify(query, vector)
        elif category is None and ctx.req.query is not None:
            with ctx.timed("classify"):
                category = await self._categorizer.classify_by_rules(
                    ctx.req.query[: self._config.cache.max_query_chars])
        return vector, category or "default"

    async def classify(self, query: str, vector: np.ndarray) -> str:
        """The category the proxy would give ``query`` (admin's explain endpoint)."""
        return await self._categorizer.classify(query, vector) or "default"

    async def _bypass(self, ctx: RequestContext, reason: str, headers: dict[str, str]) -> Outcome:
        self._metrics.record_bypass(ctx.req.endpoint, reason)
        response, _ = await self._forward(ctx, {"x-cachesvc-cache": "bypass", **ctx.headers, **headers},
                                          lambda answer: self._remember(ctx, answer, None))
        return response, "bypass"

    async def _ask_judge(self, ctx: RequestContext, query: str, near_miss: tuple[CacheEntry, float, float],
                         category: str, pressure: float) -> Hit | None:
        """A borderline candidate (probability within the judge's band under the bar) goes to the judge: a cached
        yes serves it; inline mode waits for a verdict within its budget; background mode asks for next time."""
        assert self._judge is not None
        entry, similarity, probability = near_miss
        cached_question = entry.query or ""
        judge_config = self._config.cache.judge
        assert judge_config is not None
        if self._judge.cached(query, cached_question) is True:
            ctx.headers["x-cachesvc-verified-by"] = "judge"
            return Hit(entry, "semantic", similarity, probability)
        if probability < self._cache.verifier_bar(category, pressure) - judge_config.band:
            return None
        if self._judge.mode == "background":
            if self._judge.same_question_later(query, cached_question):
                self._metrics.record_judge_verdict("background", None)
            return None
        with ctx.timed("judge"):
            verdict = await self._judge.inline(query, cached_question)
        self._metrics.record_judge_verdict("inline", verdict)
        if verdict:
            ctx.headers["x-cachesvc-verified-by"] = "judge"
            return Hit(entry, "semantic", similarity, probability)
        return None

    async def _serve_hit(self, ctx: RequestContext, hit: Hit) -> web.StreamResponse:
        entry = hit.entry
        self._metrics.record_hit(ctx.req.endpoint, hit.tier, hit.similarity)
        if hit.confidence is not None:
            self._metrics.record_hit_confidence(hit.confidence)
            if self._agreement is not None and ctx.req.query is not None and self._agreement.sampled():
                self._agreement.check_later(HitSample(
                    ctx.req.endpoint, ctx.req.body, dict(ctx.http.headers), ctx.upstream, ctx.req.query,
                    entry.query or "", entry.answer, entry.scope.category, hit.confidence))
        headers = {
            "x-cachesvc-cache": "hit",
            "x-cachesvc-tier": hit.tier,
            "x-cachesvc-category": entry.scope.category,
            "x-cachesvc-similarity": f"{hit.similarity:.4f}",
            **({"x-cachesvc-confidence": f"{hit.confidence:.4f}"} if hit.confidence is not None else {}),
            **self._adapter_of_hit(ctx, entry),
            "x-cachesvc-entry": str(entry.entry_id),
            "Age": str(int(entry.age(time.time()))),
            "Server-Timing": ctx.server_timing(),
            **ctx.headers,
        }
        return await write_answer(ctx, entry.answer, headers)

    def _adapter_of_hit(self, ctx: RequestContext, entry: CacheEntry) -> dict[str, str]:
        """For a pool's model: the adapter that produced the cached answer (the model its upstream named)."""
        if not self._pools or self._pools.for_model(ctx.req.model) is None:
            return {}
        return {"x-cachesvc-adapter": entry.answer.model.rpartition(":")[2]}

    async def _miss(self, ctx: RequestContext, exact_key: str, category: str, draft: EntryDraft | None) -> Outcome:
        """Ask upstream, unless an identical request already does: then share its answer."""
        endpoint = ctx.req.endpoint
        flight = None
        if ctx.controls.may_read:
            flight = self._flights.join(exact_key)
            if not flight.leader:
                self._metrics.record_singleflight_wait()
                leaders_answer = await self._flights.wait(flight)
                if leaders_answer is not None:
                    self._metrics.record_hit(endpoint, "inflight", 1.0)
                    headers = {"x-cachesvc-cache": "hit", "x-cachesvc-tier": "inflight",
                               "x-cachesvc-category": category, "x-cachesvc-similarity": "1.0000", **ctx.headers}
                    return await write_answer(ctx, leaders_answer, headers), "hit"
                flight = None  # the leader got nothing shareable: ask for ourselves
        self._metrics.record_miss(endpoint)
        headers = {"x-cachesvc-cache": "miss", "x-cachesvc-category": category,
                   "Server-Timing": ctx.server_timing(), **ctx.headers}
        shared: Answer | None = None
        try:
            response, shared = await self._forward(ctx, headers, lambda answer: self._remember(ctx, answer, draft),
                                                   draft.vector if draft is not None else None)
            return response, "miss"
        finally:
            if flight is not None:
                self._flights.land(flight, shared)

    async def _forward(self, ctx: RequestContext, headers: dict[str, str], remember: Remember,
                       vector: np.ndarray | None = None) -> tuple[web.StreamResponse, Answer | None]:
        """Send the request upstream; for an adapter pool's model, to the adapter and replica routing chose."""
        pool = self._pools.for_model(ctx.req.model) if self._pools else None
        if pool is None:
            return await self._relay.forward(ctx, headers, remember)
        query = ctx.req.query
        if vector is None and query is not None and self._embedder.started:
            vector = await self._embedder.embed(query[: self._config.cache.max_query_chars])
        response, shared, lost = await self._forward_routed(ctx, pool, headers, remember, vector, retry=True)
        if lost:  # the replica had restarted and lost the adapter: paged in again, asked once more
            response, shared, _ = await self._forward_routed(ctx, pool, {**headers, "x-cachesvc-adapter-lost": "1"},
                                                             remember, vector, retry=False)
        return response, shared

    async def _forward_routed(self, ctx: RequestContext, pool: AdapterPool, headers: dict[str, str],
                              remember: Remember, vector: np.ndarray | None,
                              retry: bool) -> tuple[web.StreamResponse, Answer | None, bool]:
        """Route the request in ``pool`` and send it to the chosen replica and adapter. With ``retry``, an answer
        saying the replica no longer holds the adapter is not relayed: the third value says to route again."""
        with ctx.timed("route"):
            routed = await pool.route(ctx.req.model, vector)
        ctx.upstream = routed.replica.upstream
        ctx.model_override = routed.model_field
        headers = {**headers, "x-cachesvc-adapter": routed.adapter, "x-cachesvc-replica": routed.replica.name,
                   "x-cachesvc-routed": routed.how}
        if routed.paged_s is not None:  # this request waited for its adapter's load call: a cold answer
            headers["x-cachesvc-adapter-paged-ms"] = f"{routed.paged_s * 1000:.1f}"
        tenant = self._tenants.of_request(ctx.http).id
        feedback = self._pools.feedback if self._pools else None
        status, sent = 0, time.perf_counter()

        async def remember_routed(answer: Answer) -> Answer | None:
            shared = await remember(answer)
            if feedback is not None and ctx.response_id is not None:
                feedback.record(ctx.response_id, tenant, pool.name, routed.adapter, routed.arm, routed.context,
                                pool.config.feedback_ttl_s)
            finish = answer.choices[0].get("finish_reason") if answer.choices else None
            pool.auto_reward(routed, answer.text(), finish, time.perf_counter() - sent)
            return shared

        response: web.StreamResponse | None = None
        try:
            response, shared = await self._relay.forward(ctx, headers, remember_routed)
            status = response.status
            if retry and status in (400, 404) and isinstance(response, web.Response) and not response.prepared \
                    and pool.lost(routed, status, _error_message(response)):
                status = 0  # no answer to learn from
                return response, None, True
            return response, shared, False
        finally:
            upstream_ms = response.headers.get(UPSTREAM_MS_HEADER) if response is not None else None
            pool.release(routed, status, float(upstream_ms) / 1000 if upstream_ms else None)

    async def _remember(self, ctx: RequestContext, answer: Answer, draft: EntryDraft | None) -> Answer | None:
        """Cache the answer if it may be cached; returns it when it may be shared with identical waiters."""
        if self._limits is not None:  # an upstream answer's tokens count against its tenant (hits cost none)
            await self._limits.charge(self._tenants.of_request(ctx.http), answer)
        reason = answer.cacheable_reason(ctx.req.has_tools)
        if reason is not None:
            self._metrics.record_write_skipped(reason)
            return None
        if draft is not None and self._cache.ready:
            await self._cache.insert(draft, answer)
        return answer


def _error_message(response: web.Response) -> str:
    """The message of an OpenAI-style error answer not sent yet ("" when it has none)."""
    body = response.body
    try:
        parsed = codec.loads(body) if isinstance(body, bytes) else None
    except codec.JSONDecodeError:
        return ""
    error = parsed.get("error") if isinstance(parsed, dict) else None
    message = error.get("message") if isinstance(error, dict) else None
    return message if isinstance(message, str) else ""
