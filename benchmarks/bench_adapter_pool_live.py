"""Adapter routers live: the proxy with an adapter pool in front of the reference model server (real SmolLM2, real
LoRA adapters trained by ``cachesvc make-adapters``), real page-ins through the runtime-LoRA endpoints, rewards sent
through ``POST /v1/feedback``. Reward, page-ins, measured page-in cost and time to first token per router.

    python benchmarks/bench_adapter_pool_live.py [--adapters DIR] [--requests 90] [--capacity 1]
                                                 [--routers polar polar+ linucb-lru random]

Workload: prompts cut from the held-out texts of the three adapter domains (code, legal, docs), drawn with
popularity 0.6 / 0.25 / 0.15 (seeded, the same stream for every router). The reward of an answer is 1 when the
adapter that served it is the prompt's own domain's, else 0 (ground truth a deployment would get from its users).
Streamed, 2 output tokens; time to first token is measured at the client, and split into cold answers (the
request waited for its adapter's load call: ``x-cachesvc-adapter-paged-ms``) and warm ones. The epoch is 16
requests so that the controller plans a few times in a short run. Each router starts from a fresh proxy and an
empty model server.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

DOMAINS = ("code", "legal", "docs")
POPULARITY = (0.6, 0.25, 0.15)
PROMPT_CHARS = 240


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--adapters", type=Path, default=None, help="adapters made by make-adapters (default: "
                                                                        "make them in a temporary directory)")
    parser.add_argument("--requests", type=int, default=90)
    parser.add_argument("--capacity", type=int, default=1)
    parser.add_argument("--routers", nargs="+", default=["polar", "polar+", "linucb-lru", "random"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--verbose", action="store_true", help="print each router's (domain, adapter, how) stream")
    return parser.parse_args(argv)


def prompts(count: int, seed: int) -> list[tuple[str, str]]:
    from cachesvc.model_server.adapter_corpora import domain_texts, split

    pool = {d: [t[:PROMPT_CHARS] for t in split(domain_texts(d, limit=60))[1]] for d in DOMAINS}
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(DOMAINS), size=count, p=POPULARITY)
    return [(DOMAINS[d], pool[DOMAINS[d]][rng.integers(len(pool[DOMAINS[d]]))]) for d in picks]


async def run_router(router: str, args: argparse.Namespace, adapters: Path, loaded: Any, encode: Any,
                     stream: list[tuple[str, str]]) -> dict[str, float]:
    import aiohttp
    from aiohttp.test_utils import TestServer

    from cachesvc.config import ModelServerConfig, config_from_dict
    from cachesvc.embedding.embedder import Embedder
    from cachesvc.model_server.app import ENGINE, create_model_server_app
    from cachesvc.model_server.engine import ModelEngine
    from cachesvc.server.app import create_app
    from cachesvc.server.services import SERVICES

    settings = ModelServerConfig(lora_dir=str(adapters), max_loras=args.capacity)
    model_app = create_model_server_app(settings, engine=ModelEngine(settings, loaded=loaded))
    model_server = TestServer(model_app, host="127.0.0.1")
    await model_server.start_server()
    while model_app[ENGINE].status == "loading":
        await asyncio.sleep(0.05)
    config = config_from_dict({"adapter_pools": [{
        "name": "assistants", "upstreams": [f"http://127.0.0.1:{model_server.port}/v1"], "capacity": args.capacity,
        "router": router, "server": "cachesvc", "epoch": 16, "seed": args.seed,
        "adapters": [{"name": d, "path": str(adapters / d)} for d in DOMAINS]}], "cache": {"enabled": False}})
    app = create_app(config, embedder=Embedder(config.cache.embedding, encode=encode))
    proxy = TestServer(app, host="127.0.0.1")
    await proxy.start_server()
    services = app[SERVICES]
    while not services.embedder.started:
        await asyncio.sleep(0.05)
    base = f"http://127.0.0.1:{proxy.port}/v1"
    ttft, reward, served, cold = [], 0.0, [], []
    try:
        async with aiohttp.ClientSession() as http:
            for domain, text in stream:
                started = time.perf_counter()
                body = {"model": "assistants", "messages": [{"role": "user", "content": text}], "max_tokens": 2,
                        "stream": True, "temperature": 0}
                async with http.post(f"{base}/chat/completions", json=body) as response:
                    adapter = response.headers.get("x-cachesvc-adapter")
                    cold.append("x-cachesvc-adapter-paged-ms" in response.headers)
                    first, response_id = None, None
                    async for line in response.content:
                        if first is None and line.startswith(b"data: {"):
                            first = time.perf_counter() - started
                            response_id = line.split(b'"id":"', 1)[1].split(b'"', 1)[0].decode()
                assert first is not None and response_id is not None, f"no answer from {router}"
                ttft.append(first)
                value = 1.0 if adapter == domain else 0.0
                served.append(f"{domain[0]}{(adapter or '?')[0]}{response.headers.get('x-cachesvc-routed', '?')[0]}")
                reward += value
                async with http.post(f"{base}/feedback", json={"id": response_id, "reward": value}) as answer:
                    assert answer.status == 200, await answer.text()
        pool = services.pools.pools[0]
        stats = pool.stats()
        if args.verbose:
            print(router, " ".join(served), file=sys.stderr)
        measured = pool.router.cost.measured > 0
        cold_ttft = [t for t, c in zip(ttft, cold, strict=True) if c]
        warm_ttft = [t for t, c in zip(ttft, cold, strict=True) if not c]
        return {"reward": reward, "page_ins": float(stats["page_ins"]),
                "cold50": float(np.median(cold_ttft)) if cold_ttft else float("nan"), "cold_n": float(len(cold_ttft)),
                "warm50": float(np.median(warm_ttft)) if warm_ttft else float("nan"),
                "page_s": float(pool.router.cost.seconds[measured].mean()) if measured.any() else float("nan"),
                "ttft50": float(np.percentile(ttft, 50)), "ttft99": float(np.percentile(ttft, 99))}
    finally:
        await proxy.close()
        registry = model_app[ENGINE].registry
        for name in list(registry.names()):
            registry.unload(name)
        await model_server.close()


async def main_async(args: argparse.Namespace) -> int:
    from cachesvc.config import EmbeddingConfig
    from cachesvc.embedding.encoders import load_encoder
    from cachesvc.model_server.hf_model import load_smollm2

    adapters = args.adapters
    if adapters is None:
        adapters = Path(tempfile.mkdtemp(prefix="cachesvc-adapters-"))
        subprocess.run([sys.executable, "-m", "cachesvc", "make-adapters", "--out", str(adapters)], check=True)
    encode, _ = load_encoder(EmbeddingConfig())
    loaded = load_smollm2()
    stream = prompts(args.requests, args.seed)
    print(f"{args.requests} requests (code {sum(d == 'code' for d, _ in stream)}, legal "
          f"{sum(d == 'legal' for d, _ in stream)}, docs {sum(d == 'docs' for d, _ in stream)}), capacity "
          f"{args.capacity} of 3 adapters, epoch 16, streamed, 2 tokens\n")
    print("| router | reward | page-ins | measured page-in cost s (mean over adapters) | TTFT p50 s | TTFT p99 s | "
          "TTFT p50 cold (requests) / warm s |")
    print("|---|---|---|---|---|---|---|")
    for router in args.routers:
        r = await run_router(router, args, adapters, loaded, encode, stream)
        print(f"| {router} | {r['reward']:.0f} / {args.requests} | {r['page_ins']:.0f} | {r['page_s']:.3f} | "
              f"{r['ttft50']:.3f} | {r['ttft99']:.3f} | {r['cold50']:.3f} ({r['cold_n']:.0f}) / {r['warm50']:.3f} |",
              flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    return asyncio.run(main_async(parse_args(argv)))


if __name__ == "__main__":
    raise SystemExit(main())
