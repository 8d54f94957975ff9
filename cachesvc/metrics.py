"""Prometheus metrics, one registry per app (no process-global state), exposed at GET /metrics.

Components record through the methods below (``record_bypass(reason)``), never through the collectors, so
metric names and labels are decided in this file alone.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_BREAKER_STATES = {"closed": 0, "half_open": 1, "open": 2}


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self._requests = Counter("cachesvc_requests", "Proxied requests by endpoint and cache result",
                                 ["endpoint", "cache", "tier"], registry=r)
        self._bypass = Counter("cachesvc_bypass", "Requests that skipped the cache, by reason", ["reason"], registry=r)
        self._lookup_seconds = Histogram("cachesvc_lookup_seconds", "Cache lookup time by stage", ["stage"],
                                         buckets=_LATENCY_BUCKETS, registry=r)
        self._request_seconds = Histogram("cachesvc_request_seconds", "Time to answer, by cache result", ["cache"],
                                          buckets=_LATENCY_BUCKETS, registry=r)
        self._upstream_requests = Counter("cachesvc_upstream_requests", "Requests sent upstream by status",
                                          ["upstream", "status"], registry=r)
        self._upstream_inflight = Gauge("cachesvc_upstream_inflight", "Requests in flight per upstream",
                                        ["upstream"], registry=r)
        self._upstream_load = Gauge("cachesvc_upstream_load", "Load level per upstream (0 idle, 1 full)",
                                    ["upstream"], registry=r)
        self._upstream_retries = Counter("cachesvc_upstream_retries", "Requests sent to an upstream again, by "
                                         "what failed (a status, connect_error, unanswered)", ["upstream", "reason"],
                                         registry=r)
        self._upstream_failovers = Counter("cachesvc_upstream_failovers", "Requests passed from a failed upstream to "
                                           "the next serving the model, by what failed", ["upstream", "reason"],
                                           registry=r)
        self._upstream_breaker = Gauge("cachesvc_upstream_breaker_state", "Circuit breaker per upstream (0 closed, "
                                       "1 half-open, 2 open)", ["upstream"], registry=r)
        self._upstream_short_circuits = Counter("cachesvc_upstream_short_circuits", "Attempts refused at once "
                                                "because the upstream's breaker was open", ["upstream"], registry=r)
        self._entries = Gauge("cachesvc_cache_entries", "Live cache entries by category", ["category"], registry=r)
        self._evictions = Counter("cachesvc_cache_evictions", "Entries removed, by category and reason",
                                  ["category", "reason"], registry=r)
        self._write_skipped = Counter("cachesvc_cache_write_skipped", "Answers not cached, by reason", ["reason"],
                                      registry=r)
        self._verifier_rejections = Counter("cachesvc_verifier_rejections",
                                            "Similar cached questions rejected as near-misses, by reason",
                                            ["reason"], registry=r)
        self._singleflight_waiters = Counter("cachesvc_singleflight_waiters",
                                             "Requests that waited for an identical in-flight miss", registry=r)
        self._hit_agreement = Gauge("cachesvc_hit_agreement",
                                    "Share of sampled semantic hits whose answer agreed with a fresh upstream answer "
                                    "(latest checks window), by category", ["category"], registry=r)
        self._agreement_checks = Counter("cachesvc_hit_agreement_checks",
                                         "Sampled semantic hits compared with a fresh upstream answer, by category "
                                         "and result", ["category", "result"], registry=r)
        self._judge_verdicts = Counter("cachesvc_judge_verdicts", "Judge model verdicts on borderline candidates",
                                       ["mode", "verdict"], registry=r)
        self._hit_confidence = Histogram("cachesvc_hit_confidence", "Verifier probability of served semantic hits",
                                         buckets=(0.5, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99, 1.0), registry=r)
        self._adapter_routed = Counter("cachesvc_adapter_requests", "Requests sent to a pool's adapter, by how it "
                                       "was chosen (router, direct, fallback)", ["pool", "adapter", "how"],
                                       registry=r)
        self._adapter_page_ins = Counter("cachesvc_adapter_page_ins", "Adapter loads on a replica, by result",
                                         ["pool", "replica", "result"], registry=r)
        self._adapter_page_seconds = Histogram("cachesvc_adapter_page_in_seconds", "Measured page-in cost (load "
                                               "call plus the cold first answer's extra wait)", ["pool"],
                                               buckets=_LATENCY_BUCKETS, registry=r)
        self._adapter_resident = Gauge("cachesvc_adapter_resident", "Adapters resident per replica, as the proxy "
                                       "knows them", ["pool", "replica"], registry=r)
        self._adapter_feedback = Counter("cachesvc_adapter_feedback", "Rewards given to the router, by source",
                                         ["pool", "source"], registry=r)
        self._adapter_reward = Counter("cachesvc_adapter_reward", "Cumulative reward given to the router",
                                       ["pool"], registry=r)
        self._adapter_page_outs = Counter("cachesvc_adapter_page_outs", "Adapter unloads on a replica, by result",
                                          ["pool", "replica", "result"], registry=r)
        self._adapter_lost = Counter("cachesvc_adapter_lost", "Requests whose replica no longer held their adapter "
                                     "(it restarted): paged in again and sent once more", ["pool", "replica"],
                                     registry=r)
        self._hit_similarity = Histogram("cachesvc_hit_similarity", "Similarity of served semantic hits",
                                         buckets=(0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 0.98, 1.0), registry=r)
        # tenants: labelled by configured tenant names only (every other tenant is "other"), never by a key
        self._rate_limited = Counter("cachesvc_rate_limited", "Requests refused with 429, by the limit reached "
                                     "(requests, tokens) and tenant", ["limit", "tenant"], registry=r)
        self._tenant_tokens = Counter("cachesvc_tenant_tokens", "Upstream tokens charged to tenants' limits",
                                      ["tenant"], registry=r)
        self._rate_limiter_unavailable = Counter("cachesvc_rate_limiter_unavailable", "Requests served without "
                                                 "a rate-limit check (the shared limiter was unreachable)",
                                                 registry=r)
        self._tenant_rejected = Counter("cachesvc_tenant_rejected", "Requests refused with 401 (no listed key), "
                                        "by reason", ["reason"], registry=r)
        self._tenant_header_ignored = Counter("cachesvc_tenant_header_ignored", "Trusted tenant headers ignored "
                                              "because the peer is not in tenants.trusted_sources", registry=r)
        self._feed_changes = Counter("cachesvc_feed_changes", "Other replicas' changes read from the shared "
                                     "store's change feed, by operation and result (applied; skipped: nothing to do "
                                     "here, as a rebuild or an exact lookup got there first, or the entry is gone)",
                                     ["op", "result"], registry=r)
        self._feed_delay = Histogram("cachesvc_feed_propagation_seconds", "From a change applied in the shared "
                                     "store to this replica applying it (skipped changes are not timed)",
                                     buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
                                              30, 60), registry=r)
        self._feed_resyncs = Counter("cachesvc_feed_resyncs", "Rescans of the shared store (the change feed did not "
                                     "reach back far enough, or the store lost its data)", registry=r)
        self._store_degraded = Gauge("cachesvc_store_degraded", "1 while the shared store is unreachable (requests "
                                     "go straight upstream)", registry=r)

    # ---- the request path -----------------------------------------------------------------------------

    def record_bypass(self, endpoint: str, reason: str) -> None:
        """A request that skipped the cache (no lookup, no write)."""
        self._bypass.labels(reason).inc()
        self._requests.labels(endpoint, "bypass", "").inc()

    def record_miss(self, endpoint: str) -> None:
        self._requests.labels(endpoint, "miss", "").inc()

    def record_hit(self, endpoint: str, tier: str, similarity: float) -> None:
        """A request answered from the cache: ``tier`` is exact, semantic or inflight."""
        self._requests.labels(endpoint, "hit", tier).inc()
        if tier == "semantic":
            self._hit_similarity.observe(similarity)

    def record_singleflight_wait(self) -> None:
        self._singleflight_waiters.inc()

    def record_answered(self, result: str, seconds: float) -> None:
        """Time to answer a request whose result was hit, miss, bypass or error."""
        self._request_seconds.labels(result).observe(seconds)

    def record_lookup_stage(self, stage: str, seconds: float) -> None:
        self._lookup_seconds.labels(stage).observe(seconds)

    # ---- the cache ------------------------------------------------------------------------------------

    def record_write_skipped(self, reason: str) -> None:
        """An answer that was not stored (too large, truncated, aborted, ...)."""
        self._write_skipped.labels(reason).inc()

    def record_eviction(self, category: str, reason: str) -> None:
        self._evictions.labels(category, reason).inc()

    def record_verifier_rejection(self, reason: str) -> None:
        self._verifier_rejections.labels(reason).inc()

    def record_agreement(self, category: str, agreed: bool, rate: float) -> None:
        self._agreement_checks.labels(category, "agree" if agreed else "disagree").inc()
        self._hit_agreement.labels(category).set(rate)

    def record_judge_verdict(self, mode: str, verdict: bool | None) -> None:
        self._judge_verdicts.labels(mode, "none" if verdict is None else ("yes" if verdict else "no")).inc()

    def record_adapter_routed(self, pool: str, adapter: str, how: str) -> None:
        self._adapter_routed.labels(pool, adapter, how).inc()

    def record_adapter_page_in(self, pool: str, replica: str, result: str) -> None:
        self._adapter_page_ins.labels(pool, replica, result).inc()

    def record_adapter_page_seconds(self, pool: str, seconds: float) -> None:
        self._adapter_page_seconds.labels(pool).observe(seconds)

    def record_adapter_resident(self, pool: str, replica: str, count: int) -> None:
        self._adapter_resident.labels(pool, replica).set(count)

    def record_adapter_feedback(self, pool: str, source: str, reward: float) -> None:
        self._adapter_feedback.labels(pool, source).inc()
        self._adapter_reward.labels(pool).inc(reward)

    def record_adapter_page_out(self, pool: str, replica: str, result: str) -> None:
        self._adapter_page_outs.labels(pool, replica, result).inc()

    def record_adapter_lost(self, pool: str, replica: str) -> None:
        self._adapter_lost.labels(pool, replica).inc()

    def record_hit_confidence(self, probability: float) -> None:
        self._hit_confidence.observe(probability)

    def set_entries(self, category: str, count: int) -> None:
        self._entries.labels(category).set(count)

    # ---- the shared store -----------------------------------------------------------------------------

    def record_feed_change(self, op: str, delay_s: float, applied: bool = True) -> None:
        self._feed_changes.labels(op, "applied" if applied else "skipped").inc()
        if applied:
            self._feed_delay.observe(max(0.0, delay_s))

    def record_feed_resync(self) -> None:
        self._feed_resyncs.inc()

    def set_store_degraded(self, degraded: bool) -> None:
        self._store_degraded.set(1 if degraded else 0)

    # ---- tenants ---------------------------------------------------------------------------------------

    def record_rate_limited(self, limit: str, tenant: str = "other") -> None:
        """A request refused with 429: ``limit`` is requests or tokens; ``tenant`` a configured name or other."""
        self._rate_limited.labels(limit, tenant).inc()

    def record_tenant_tokens(self, tenant: str, tokens: int) -> None:
        self._tenant_tokens.labels(tenant).inc(tokens)

    def record_rate_limiter_unavailable(self) -> None:
        self._rate_limiter_unavailable.inc()

    def record_tenant_rejected(self, reason: str) -> None:
        """A request refused for its key: ``reason`` is missing_key or unknown_key."""
        self._tenant_rejected.labels(reason).inc()

    def record_tenant_header_ignored(self) -> None:
        self._tenant_header_ignored.inc()

    # ---- upstreams ------------------------------------------------------------------------------------

    def record_upstream_started(self, upstream: str) -> None:
        self._upstream_inflight.labels(upstream).inc()

    def record_upstream_finished(self, upstream: str, status: int, load_level: float) -> None:
        """An upstream request ended with ``status`` (0: no answer at all); ``load_level`` is its load now."""
        self._upstream_inflight.labels(upstream).dec()
        self._upstream_requests.labels(upstream, str(status)).inc()
        self._upstream_load.labels(upstream).set(load_level)

    def record_upstream_retry(self, upstream: str, reason: str) -> None:
        self._upstream_retries.labels(upstream, reason).inc()

    def record_upstream_failover(self, upstream: str, reason: str) -> None:
        """``upstream`` failed (``reason``) and the request went on to the next upstream serving its model."""
        self._upstream_failovers.labels(upstream, reason).inc()

    def set_upstream_breaker_state(self, upstream: str, state: str) -> None:
        self._upstream_breaker.labels(upstream).set(_BREAKER_STATES.get(state, 0))

    def record_upstream_short_circuit(self, upstream: str) -> None:
        self._upstream_short_circuits.labels(upstream).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
