"""Prometheus metrics of the model server (one registry per app), exposed at GET /metrics: what vLLM's dashboards
watch: requests, tokens, queue depth, time to first token, decode speed, KV entries kept, adapter operations."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

_TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class ModelServerMetrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("cachesvc_model_requests", "Finished generations by model and finish reason",
                                ["model", "finish_reason"], registry=r)
        self.prompt_tokens = Counter("cachesvc_model_prompt_tokens", "Prompt tokens prefilled", registry=r)
        self.generation_tokens = Counter("cachesvc_model_generation_tokens", "Tokens generated", registry=r)
        self.queued = Gauge("cachesvc_model_requests_queued", "Requests waiting or running", registry=r)
        self.ttft = Histogram("cachesvc_model_time_to_first_token_seconds", "Queueing plus prefill",
                              buckets=_TTFT_BUCKETS, registry=r)
        self.kv_kept_ratio = Histogram("cachesvc_model_kv_kept_ratio", "Fraction of the prompt's KV entries kept",
                                       buckets=(0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0), registry=r)
        self.adapter_ops = Counter("cachesvc_model_adapter_operations", "LoRA loads and unloads by outcome",
                                   ["operation", "status"], registry=r)
        self.adapters_loaded = Gauge("cachesvc_model_adapters_loaded", "LoRA adapters loaded", registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)
