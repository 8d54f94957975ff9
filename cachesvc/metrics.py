"""Prometheus metrics, one registry per app (no process-global state), exposed at GET /metrics."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("cachesvc_requests", "Proxied requests by endpoint and cache result",
                                ["endpoint", "cache", "tier"], registry=r)
        self.bypass = Counter("cachesvc_bypass", "Requests that skipped the cache, by reason", ["reason"], registry=r)
        self.lookup_seconds = Histogram("cachesvc_lookup_seconds", "Cache lookup time by stage", ["stage"],
                                        buckets=_LATENCY_BUCKETS, registry=r)
        self.request_seconds = Histogram("cachesvc_request_seconds", "Time to answer, by cache result", ["cache"],
                                         buckets=_LATENCY_BUCKETS, registry=r)
        self.upstream_requests = Counter("cachesvc_upstream_requests", "Requests sent upstream by status",
                                         ["upstream", "status"], registry=r)
        self.upstream_inflight = Gauge("cachesvc_upstream_inflight", "Requests in flight per upstream",
                                       ["upstream"], registry=r)
        self.upstream_load = Gauge("cachesvc_upstream_load", "Load level per upstream (0 idle, 1 full)",
                                   ["upstream"], registry=r)
        self.entries = Gauge("cachesvc_cache_entries", "Live cache entries by category", ["category"], registry=r)
        self.evictions = Counter("cachesvc_cache_evictions", "Entries removed, by category and reason",
                                 ["category", "reason"], registry=r)
        self.write_skipped = Counter("cachesvc_cache_write_skipped", "Answers not cached, by reason", ["reason"],
                                     registry=r)
        self.verifier_rejections = Counter("cachesvc_verifier_rejections",
                                           "Similar cached questions rejected as near-misses, by reason",
                                           ["reason"], registry=r)
        self.singleflight_waiters = Counter("cachesvc_singleflight_waiters",
                                            "Requests that waited for an identical in-flight miss", registry=r)
        self.hit_similarity = Histogram("cachesvc_hit_similarity", "Similarity of served semantic hits",
                                        buckets=(0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 0.98, 1.0), registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)
