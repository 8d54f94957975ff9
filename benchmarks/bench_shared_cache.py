"""Benchmark the shared (Redis) cache across replicas (not part of the test suite). Three measurements, one run:

1. propagation: replica A (this process) inserts entries one by one; replica B (another process, its own Redis
   connections and event loop) follows the change feed; the delay from A's acknowledged insert to B having the
   entry in its index, p50/p99 (one host, one clock).
2. rebuild: N entries in Redis, the time for a fresh replica to start (scan, decode, index), per 100k entries.
3. throughput: the proxy end to end (real embedding model, stand-in upstream) with the memory store and with the
   Redis store: semantic hits and misses per second at a fixed concurrency, and their median latency.

Starts its own redis-server on a free loopback port (tests/redis_server.py).

    python benchmarks/bench_shared_cache.py
    python benchmarks/bench_shared_cache.py --inserts 500 --rebuild 20000 --requests 200
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_redis_store import make_entries
from cachesvc.cache.entry import EntryDraft, EntryScope
from cachesvc.cache.semantic_cache import SemanticCache
from cachesvc.cache.stores import create_store
from cachesvc.cache.stores.redis import RedisStore
from cachesvc.config import CacheConfig, StoreConfig
from cachesvc.metrics import Metrics
from cachesvc.openai.answer import Answer
from cachesvc.policies.verify.judgement import RuleJudge
from tests.redis_server import RedisServer

DIM = 384


class _Accept:
    accepted = True
    reason = ""


def _accept(*_: Any) -> _Accept:
    return _Accept()


def make_cache(url: str, *, follow: bool = True) -> SemanticCache:
    config = CacheConfig(store=StoreConfig(kind="redis", url=url))
    return SemanticCache(config, create_store(config.store), RuleJudge(_accept), Metrics(), follow=follow)


def _follower_process(url: str, expected: int, out: Any, ready: Any) -> None:
    """Replica B: follow the feed, report (entry_id, time adopted) for each entry A inserts."""

    async def main() -> None:
        cache = make_cache(url)
        seen: dict[int, float] = {}
        adopt = cache._adopt

        async def timed_adopt(entries: Any) -> int:
            n = await adopt(entries)
            now = time.time()
            for e in entries:
                seen.setdefault(e.entry_id, now)
            return n

        cache._adopt = timed_adopt  # type: ignore[method-assign]
        await cache.start(DIM)
        ready.set()
        deadline = time.monotonic() + 120
        while len(seen) < expected and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        await cache.close()
        out.send(seen)

    asyncio.run(main())


async def propagation(url: str, inserts: int, interval_s: float) -> dict[str, float]:
    ctx = multiprocessing.get_context("spawn")
    receiver, sender = ctx.Pipe(duplex=False)
    ready = ctx.Event()
    follower = ctx.Process(target=_follower_process, args=(url, inserts, sender, ready))
    follower.start()
    if not ready.wait(120):
        raise RuntimeError("replica B did not start")
    a = make_cache(url, follow=False)
    await a.start(DIM)
    rng = np.random.default_rng(1)
    acked: dict[int, float] = {}
    answer = Answer("chat", "m", [{"index": 0, "message": {"role": "assistant", "content": "x" * 200},
                                   "finish_reason": "stop"}])
    for i in range(inserts):
        v = rng.normal(size=DIM).astype(np.float32)
        v /= np.linalg.norm(v)
        scope = EntryScope(f"p{i % 8}", f"prop-{i}", "t", "default", "code", "m")
        entry = await a.insert(EntryDraft(scope, f"q{i}", v, 3600, 2.0), answer)
        assert entry is not None
        acked[entry.entry_id] = time.time()
        await asyncio.sleep(interval_s)
    seen = receiver.recv() if receiver.poll(150) else {}
    follower.join(30)
    await a.close()
    delays = [(seen[i] - t) * 1000 for i, t in acked.items() if i in seen]
    return {"inserts": inserts, "arrived": len(delays), "p50_ms": float(np.percentile(delays, 50)),
            "p99_ms": float(np.percentile(delays, 99)), "max_ms": float(np.max(delays))}


async def rebuild(url: str, n: int) -> dict[str, float]:
    store = RedisStore(StoreConfig(kind="redis", url=url, prefix="rebuild:"))
    await store.open()
    entries = make_entries(n, DIM)
    t0 = time.perf_counter()
    await store.put_many(entries)
    load_s = time.perf_counter() - t0
    await store.close()
    config = CacheConfig(store=StoreConfig(kind="redis", url=url, prefix="rebuild:"))
    cache = SemanticCache(config, create_store(config.store), RuleJudge(_accept), Metrics(), follow=False)
    t1 = time.perf_counter()
    loaded = await cache.start(DIM)
    start_s = time.perf_counter() - t1
    await cache.close()
    return {"entries": loaded, "bulk_put_s": load_s, "start_s": start_s, "start_s_per_100k": start_s * 100_000 / n}


async def throughput(url: str, requests: int, concurrency: int) -> list[dict[str, Any]]:
    import aiohttp
    from aiohttp.test_utils import TestServer

    from cachesvc.config import config_from_dict
    from cachesvc.server.app import create_app
    from cachesvc.server.services import SERVICES
    from cachesvc.upstreams.stub import create_stub_app

    stub = TestServer(create_stub_app(), host="127.0.0.1")
    await stub.start_server()
    upstream = f"http://127.0.0.1:{stub.port}/v1"
    rows = []
    topics = ["sort a list", "read a file", "parse JSON", "open a socket", "format a date", "join strings",
              "reverse a string", "merge two dicts", "count words", "make a class"]
    for kind in ("memory", "redis"):
        store: dict[str, Any] = {"kind": kind}
        if kind == "redis":
            store |= {"url": url, "prefix": "bench-throughput:"}
        config = config_from_dict({"upstreams": [{"url": upstream}], "cache": {"store": store}})
        app = create_app(config)
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        services = app[SERVICES]
        for _ in range(1200):
            if services.ready or services.warmup.error:
                break
            await asyncio.sleep(0.05)
        base = f"http://127.0.0.1:{server.port}/v1/chat/completions"
        async with aiohttp.ClientSession() as http:
            async def ask(text: str, base: str = base) -> tuple[str, float]:
                body = {"model": "stub-model", "temperature": 0, "messages": [{"role": "user", "content": text}]}
                t = time.perf_counter()
                async with http.post(base, json=body) as r:
                    await r.read()
                    return r.headers.get("x-cachesvc-cache", "?"), time.perf_counter() - t

            for topic in topics:  # seed: one cached answer per topic
                await ask(f"How do I {topic} in Python?")

            async def phase(texts: list[str]) -> dict[str, Any]:
                sem = asyncio.Semaphore(concurrency)
                results: list[tuple[str, float]] = []

                async def one(text: str) -> None:
                    async with sem:
                        results.append(await ask(text))

                t0 = time.perf_counter()
                await asyncio.gather(*(one(t) for t in texts))
                wall = time.perf_counter() - t0
                kinds = [k for k, _ in results]
                return {"rps": len(texts) / wall, "p50_ms": float(np.median([s for _, s in results])) * 1000,
                        "hit_share": kinds.count("hit") / len(kinds)}

            hits = await phase([f"how do i {topics[i % len(topics)]} in python" for i in range(requests)])
            misses = await phase([f"Question number {i} about {topics[i % len(topics)]}, variant {i * 7919}?"
                                  for i in range(requests)])
        rows.append({"store": kind, "hit": hits, "miss": misses})
        await server.close()
    await stub.close()
    return rows


async def run(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        server = RedisServer(Path(tmp)).start()
        try:
            p = await propagation(server.url, args.inserts, args.interval_ms / 1000)
            print("\npropagation (A acknowledged -> B indexed; separate processes, one host)")
            print(f"{'inserts':>8} {'arrived':>8} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
            print(f"{p['inserts']:>8} {p['arrived']:>8} {p['p50_ms']:>8.2f} {p['p99_ms']:>8.2f} {p['max_ms']:>8.2f}")
            r = await rebuild(server.url, args.rebuild)
            print("\nrebuild (a fresh replica's start: scan, decode, index)")
            print(f"{'entries':>8} {'start s':>8} {'s/100k':>8} {'bulk put s':>10}")
            print(f"{r['entries']:>8} {r['start_s']:>8.2f} {r['start_s_per_100k']:>8.2f} {r['bulk_put_s']:>10.2f}")
            rows = await throughput(server.url, args.requests, args.concurrency)
            print(f"\nthroughput through the proxy ({args.requests} requests per phase, concurrency "
                  f"{args.concurrency})")
            print(f"{'store':>7} {'hit rps':>8} {'hit p50':>8} {'hits':>5} {'miss rps':>9} {'miss p50':>9}")
            base = rows[0]
            for row in rows:
                h, m = row["hit"], row["miss"]
                print(f"{row['store']:>7} {h['rps']:>8.1f} {h['p50_ms']:>7.1f}ms {h['hit_share']:>5.2f} "
                      f"{m['rps']:>9.1f} {m['p50_ms']:>8.1f}ms")
            red = rows[1]
            print(f"redis/memory: hit rps x{red['hit']['rps'] / base['hit']['rps']:.2f}, "
                  f"miss rps x{red['miss']['rps'] / base['miss']['rps']:.2f}")
        finally:
            server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--inserts", type=int, default=1000)
    parser.add_argument("--interval-ms", type=float, default=2.0, help="pause between A's inserts")
    parser.add_argument("--rebuild", type=int, default=100_000, help="entries for the rebuild measurement")
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=16)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
