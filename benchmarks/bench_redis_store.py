"""Benchmark the Redis document store against the memory and sqlite stores (not part of the test suite).

Puts N small entries (a 384-wide float32 vector, a ~200-byte answer) pipelined (put_many), times one-at-a-time puts,
get and get_by_exact_key latencies (sequential, one request in flight), and a full scan, the start-up index rebuild,
reported per 100k entries. Starts its own redis-server on a free loopback port (tests/redis_server.py) unless given
--url; with --url it works under its own prefix and deletes what it wrote.

    python benchmarks/bench_redis_store.py
    python benchmarks/bench_redis_store.py --entries 20000 --url redis://127.0.0.1:6379/0
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cachesvc.cache.entry import CacheEntry, EntryScope
from cachesvc.cache.stores.memory import MemoryStore
from cachesvc.cache.stores.redis import RedisSettings, RedisStore
from cachesvc.cache.stores.sqlite import SqliteStore
from cachesvc.config import StoreConfig
from cachesvc.openai.answer import Answer

DIM = 384


def make_entries(n: int, dim: int) -> list[CacheEntry]:
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(n, dim)).astype(np.float32)
    now = time.time()
    entries = []
    for i in range(n):
        scope = EntryScope(f"p{i % 50}", f"exact-{i:08d}", "key:" + "ab" * 16, "default", "code", "m")
        text = f"answer {i}: " + "lorem ipsum dolor sit amet " * 7
        ans = Answer("chat", "m", [{"index": 0, "message": {"role": "assistant", "content": text},
                                    "finish_reason": "stop"}], usage={"prompt_tokens": 12, "completion_tokens": 48})
        entries.append(CacheEntry(i + 1, scope, f"question {i}", ans, vectors[i], now, 3600.0, now + 7200.0))
    return entries


def percentile(samples: list[float], q: float) -> float:
    return float(np.percentile(np.array(samples), q))


async def measure(store, entries: list[CacheEntry], lookups: int, singles: int) -> dict[str, float]:
    n = len(entries)
    t0 = time.perf_counter()
    if isinstance(store, RedisStore):
        await store.put_many(entries)
    else:
        for e in entries:
            await store.put(e)
    put_s = time.perf_counter() - t0

    extra = entries[:singles]
    t0 = time.perf_counter()
    for e in extra:  # re-put one at a time: a replace, one round trip each
        await store.put(e)
    single_s = time.perf_counter() - t0

    rng = random.Random(1)
    picks = [rng.choice(entries) for _ in range(lookups)]
    get_lat, exact_lat = [], []
    for e in picks:
        t = time.perf_counter()
        got = await store.get(e.entry_id)
        get_lat.append(time.perf_counter() - t)
        assert got is not None
        t = time.perf_counter()
        got = await store.get_by_exact_key(e.scope.exact_key)
        exact_lat.append(time.perf_counter() - t)
        assert got is not None

    t0 = time.perf_counter()
    seen = 0
    async for _ in store.scan():
        seen += 1
    scan_s = time.perf_counter() - t0
    assert seen == n, (seen, n)
    return {"put_per_s": n / put_s, "single_put_per_s": len(extra) / single_s,
            "get_p50_ms": percentile(get_lat, 50) * 1e3, "get_p99_ms": percentile(get_lat, 99) * 1e3,
            "exact_p50_ms": percentile(exact_lat, 50) * 1e3, "exact_p99_ms": percentile(exact_lat, 99) * 1e3,
            "scan_s_per_100k": scan_s * 100_000 / n, "scan_s": scan_s}


async def run(args: argparse.Namespace, url: str) -> None:
    entries = make_entries(args.entries, args.dim)
    results = {}
    memory = MemoryStore()
    await memory.open()
    results["memory"] = await measure(memory, entries, args.lookups, args.singles)
    await memory.close()

    with tempfile.TemporaryDirectory() as tmp:
        sqlite = SqliteStore(StoreConfig(kind="sqlite", path=str(Path(tmp) / "bench.sqlite3")))
        await sqlite.open()
        results["sqlite"] = await measure(sqlite, entries, args.lookups, args.singles)
        await sqlite.close()

    redis = RedisStore(StoreConfig(kind="redis"), RedisSettings(url=url, prefix=args.prefix, scan_batch=args.batch))
    await redis.open()
    try:
        results[f"redis (batch {args.batch})"] = await measure(redis, entries, args.lookups, args.singles)
        info = await redis.client.info("memory")
        used_mb = int(info["used_memory"]) / 2**20
    finally:
        await redis.delete(e.entry_id for e in entries)
        await redis.client.delete("{" + args.prefix + "}layout")
        await redis.close()

    from redis.utils import HIREDIS_AVAILABLE

    parser = "hiredis" if HIREDIS_AVAILABLE else "pure-Python"
    print(f"{args.entries} entries, {args.dim}-wide float32 vectors, ~200-byte answers; {args.lookups} sequential "
          f"lookups; redis-py {parser} reply parser; redis used_memory {used_mb:.0f} MiB when full")
    print("bulk: redis put_many (scan_batch puts per round trip), memory and sqlite put in a loop; 1 by 1: replaces")
    header = (f"{'store':<18} {'put/s (bulk)':>13} {'put/s (1 by 1)':>15} {'get p50 ms':>11} {'get p99 ms':>11} "
              f"{'exact p50 ms':>13} {'exact p99 ms':>13} {'scan s/100k':>12}")
    print(header)
    print("-" * len(header))
    for name, r in results.items():
        print(f"{name:<18} {r['put_per_s']:>13,.0f} {r['single_put_per_s']:>15,.0f} {r['get_p50_ms']:>11.3f} "
              f"{r['get_p99_ms']:>11.3f} {r['exact_p50_ms']:>13.3f} {r['exact_p99_ms']:>13.3f} "
              f"{r['scan_s_per_100k']:>12.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=DIM)
    parser.add_argument("--lookups", type=int, default=5000)
    parser.add_argument("--singles", type=int, default=2000, help="one-at-a-time puts timed")
    parser.add_argument("--batch", type=int, default=500, help="scan_batch (ZSCAN step and pipeline size)")
    parser.add_argument("--prefix", default="cachesvc-bench:")
    parser.add_argument("--url", help="an existing Redis (default: start one on a free loopback port)")
    args = parser.parse_args()
    if args.url:
        asyncio.run(run(args, args.url))
        return
    from tests.redis_server import RedisServer

    with tempfile.TemporaryDirectory() as tmp:
        server = RedisServer(Path(tmp)).start()
        try:
            asyncio.run(run(args, server.url))
        finally:
            server.stop()


if __name__ == "__main__":
    main()
