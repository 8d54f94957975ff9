"""The cache on its own: TTL, quotas (expired first, then LRU), exact replacement, isolation, invalidation."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cachesvc.cache.entry import EntryDraft, EntryScope
from cachesvc.cache.selector import Selector
from cachesvc.cache.semantic_cache import Hit, LookupTimings, SemanticCache
from cachesvc.cache.stores import create_store
from cachesvc.config import CacheConfig, StoreConfig
from cachesvc.metrics import Metrics
from cachesvc.openai.answer import Answer
from cachesvc.policies.cache.categories import DEFAULT_CATEGORIES
from cachesvc.policies.cache.load_adaptive import EffectivePolicy, effective_policy
from cachesvc.policies.verify.judgement import RuleJudge

DIM = 8


@dataclasses.dataclass(frozen=True)
class Verdict:
    accepted: bool
    reason: str = ""


def accept_all(query: str, cached: str, similarity: float, category: str) -> Verdict:
    return Verdict(True)


def unit(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=DIM).astype(np.float32)
    return v / np.linalg.norm(v)


def answer(text: str) -> Answer:
    return Answer("chat", "m",
                  [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}])


async def make_cache(store: str = "memory", path: Path | None = None, verify: Any = accept_all, url: str = "",
                     **categories: Any) -> SemanticCache:
    cats = dict(DEFAULT_CATEGORIES)
    for name, fields in categories.items():
        cats[name] = dataclasses.replace(cats[name], **fields)
    store_config = StoreConfig(kind=store, path=str(path or "unused"), url=url or "redis://127.0.0.1:1/0")
    config = CacheConfig(categories=cats, store=store_config)
    cache = SemanticCache(config, create_store(config.store), RuleJudge(verify), Metrics())
    await cache.start(DIM)
    return cache


async def put(cache: SemanticCache, key: str, vector: np.ndarray, *, partition: str = "p", category: str = "code",
              ttl: float = 60, **fields: Any) -> int:
    scope = EntryScope(partition, key, fields.get("tenant", "t"), fields.get("namespace", "default"), category, "m")
    entry = await cache.insert(EntryDraft(scope, key, vector, ttl, 2.0), answer(key))
    assert entry is not None
    return entry.entry_id


def policy(category: str = "code", pressure: float = 0.0) -> EffectivePolicy:
    return effective_policy(DEFAULT_CATEGORIES[category], pressure)


async def semantic(cache: SemanticCache, vector: np.ndarray, partition: str = "p", pressure: float = 0.0,
                   max_age: float | None = None) -> Hit | None:
    return await cache.lookup_semantic(partition, "q", vector, policy(pressure=pressure), max_age, LookupTimings())


async def test_exact_and_semantic_lookup() -> None:
    cache = await make_cache()
    v = unit(1)
    await put(cache, "k1", v)
    hit = await cache.lookup_exact("k1", lambda c: policy(c), None)
    assert hit is not None and hit.tier == "exact"
    hit = await semantic(cache, v)
    assert hit is not None and hit.similarity == pytest.approx(1.0, abs=1e-5)
    orthogonal = np.zeros(DIM, dtype=np.float32)
    orthogonal[int(np.argmin(np.abs(v)))] = 1.0
    orthogonal -= v * float(orthogonal @ v)
    orthogonal /= np.linalg.norm(orthogonal)
    assert await semantic(cache, orthogonal) is None  # dissimilar (cosine 0): below the threshold
    assert await semantic(cache, v, partition="other") is None  # other partitions never see it


async def test_verifier_rejection_is_not_served() -> None:
    cache = await make_cache(verify=lambda q, c, s, cat: Verdict(False, "number-mismatch"))
    await put(cache, "k1", unit(1))
    timings = LookupTimings()
    assert await cache.lookup_semantic("p", "q", unit(1), policy(), None, timings) is None
    assert timings.rejections == ["number-mismatch"]


async def test_ttl_and_load_stretch_and_max_age() -> None:
    cache = await make_cache()
    v = unit(3)
    await put(cache, "k", v, ttl=0.2)
    time.sleep(0.3)
    assert await semantic(cache, v) is None, "past its TTL"
    assert await semantic(cache, v, pressure=1.0) is not None, "under full load the TTL stretches (factor 2)"
    assert await semantic(cache, v, pressure=1.0, max_age=0.1) is None, "max-age still wins"
    time.sleep(0.2)
    assert await semantic(cache, v, pressure=1.0) is None, "never past the hard expiry"
    assert await cache.sweep_expired() == 1 and len(cache) == 0


async def test_quota_evicts_least_recently_used_within_the_category() -> None:
    cache = await make_cache(code={"max_entries": 3})
    ids = [await put(cache, f"k{i}", unit(10 + i)) for i in range(3)]
    await put(cache, "other", unit(50), category="knowledge")
    assert await semantic(cache, unit(10)) is not None  # k0 becomes most recently used
    await put(cache, "k3", unit(13))
    assert cache.entries_by_category() == {"code": 3, "knowledge": 1}
    assert await cache.lookup_exact("k1", lambda c: policy(c), None) is None, "k1 was least recently used"
    assert await cache.lookup_exact("k0", lambda c: policy(c), None) is not None
    assert ids[1] not in [i for i, _ in cache.index.search("p", unit(11), 10)]


async def test_quota_drops_expired_entries_before_live_ones() -> None:
    cache = await make_cache(code={"max_entries": 2})
    await put(cache, "old", unit(1), ttl=0.05)  # hard expiry after 0.1 s
    await put(cache, "live", unit(2))
    time.sleep(0.15)
    await put(cache, "new", unit(3))
    assert await cache.lookup_exact("live", lambda c: policy(c), None) is not None
    assert len(cache) == 2


async def test_same_exact_key_replaces_the_entry() -> None:
    cache = await make_cache()
    first = await put(cache, "k", unit(1))
    second = await put(cache, "k", unit(2))
    assert len(cache) == 1 and first != second
    assert [i for i, _ in cache.index.search("p", unit(1), 5)] == [second]


async def test_invalidation_by_selector() -> None:
    cache = await make_cache()
    await put(cache, "a", unit(1), namespace="n1", tenant="t1")
    await put(cache, "b", unit(2), namespace="n2", tenant="t1")
    await put(cache, "c", unit(3), namespace="n2", tenant="t2", category="math")
    assert len(await cache.invalidate(Selector(namespace="n2"), dry_run=True)) == 2 and len(cache) == 3
    assert len(await cache.invalidate(Selector(tenant="t1", namespace="n2"))) == 1
    assert len(await cache.invalidate(Selector(category="math"))) == 1
    assert len(await cache.invalidate(Selector(everything=True))) == 1 and len(cache) == 0


async def test_oversized_answers_are_not_stored() -> None:
    cache = await make_cache()
    cache._config.max_entry_bytes = 100
    draft = EntryDraft(EntryScope("p", "big", "t", "d", "code", "m"), "q", unit(1), 60, 1)
    entry = await cache.insert(draft, answer("x" * 1000))
    assert entry is None and len(cache) == 0


@pytest.mark.parametrize("kind", ["memory", "sqlite", "redis"])
async def test_store_round_trip_and_restart(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    path = tmp_path / "cache.db"
    url = request.getfixturevalue("redis_server").url if kind == "redis" else ""
    cache = await make_cache(kind, path, url=url)
    await put(cache, "k1", unit(1))
    await put(cache, "k2", unit(2), ttl=0.05)
    stored = await cache._store.get_by_exact_key("k1")
    assert stored is not None and stored.answer == answer("k1") and np.allclose(stored.vector, unit(1))
    await cache.close()
    if kind in ("sqlite", "redis"):
        time.sleep(0.15)
        reopened = await make_cache(kind, path, url=url)
        assert len(reopened) == 1, "the expired entry is dropped at start-up"
        assert (await semantic(reopened, unit(1))) is not None
        await reopened.close()
