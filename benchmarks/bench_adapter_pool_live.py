"""Adapter routers live, on a real model with a measured utility: the proxy with an adapter pool in front of the
reference model server (real SmolLM2, six real LoRA adapters from ``cachesvc make-adapters``), real page-ins
through the runtime-LoRA endpoints, rewards sent through ``POST /v1/feedback``.

    python benchmarks/bench_adapter_pool_live.py [--adapters DIR] [--requests 300] [--capacity 2]
        [--routers polar+ polar linucb-lru ...] [--replay-steps 20000] [--seed 0]

Workload: prompts cut from the held-out texts of the six adapter domains (code, legal, docs, cpp, readme, build),
the domains drawn with Zipf popularity in a seeded order, the same stream for every router.
Utility, measured rather than assumed: before any request, every adapter's mean log-likelihood per token of each
prompt's text is computed on the same model. The reward of an answer is the answering adapter's per-token
likelihood relative to the best adapter's for that prompt, ``exp(loss_best - loss_adapter)``, in (0, 1]. The best
adapter for a prompt is whichever measures lowest, often not the prompt's own domain's.
Regret is against the best fixed set of ``capacity`` adapters in hindsight on the same stream. Streamed, 1 output
token; time to first token is measured at the client and split into cold answers (the request waited for its
adapter's load call, ``x-cachesvc-adapter-paged-ms``) and warm ones. Each router starts from a fresh proxy and an
empty model server.

``--replay-steps`` then replays a longer stream from the same prompts and measured utilities through the simulator
(same routers, same contexts the proxy computes, page-in seconds as measured live), where T can be large.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_ROUTERS = ["polar+", "polar", "linucb-lru", "linucb-lfu", "greedy-resident", "static-top-k", "random"]


@dataclass(frozen=True)
class Prompts:
    """The prompt pool and its measured utility."""

    texts: list[str]
    domains: list[str]
    losses: np.ndarray  # (P, N + 1): base model, then each adapter; mean NLL per token of the prompt's text

    @property
    def rewards(self) -> np.ndarray:
        """(P, N): each adapter's per-token likelihood relative to the prompt's best adapter."""
        adapters = self.losses[:, 1:]
        return np.exp(adapters.min(axis=1, keepdims=True) - adapters)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from cachesvc.model_server.adapter_corpora import DOMAINS

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--adapters", type=Path, default=None, help="adapters made by make-adapters (default: "
                                                                        "make them in a temporary directory)")
    parser.add_argument("--domains", nargs="+", default=list(DOMAINS))
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--capacity", type=int, default=2)
    parser.add_argument("--epoch", type=int, default=32)
    parser.add_argument("--routers", nargs="+", default=DEFAULT_ROUTERS)
    parser.add_argument("--per-domain", type=int, default=20, help="prompts cut per domain")
    parser.add_argument("--prompt-chars", type=int, default=240)
    parser.add_argument("--zipf", type=float, default=1.0)
    parser.add_argument("--replay-steps", type=int, default=20_000, help="0: no offline replay")
    parser.add_argument("--replay-only", action="store_true", help="skip the live runs (page-in seconds: 0.1 s)")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def cut_prompts(domains: list[str], per_domain: int, chars: int) -> tuple[list[str], list[str]]:
    """``(texts, domains)``: up to ``per_domain`` prompts per domain, consecutive slices of its held-out texts taken
    round-robin over the texts, so that many texts are represented."""
    from cachesvc.model_server.adapter_corpora import domain_texts, split

    texts, labels = [], []
    for domain in domains:
        heldout = split(domain_texts(domain))[1]
        slices = [[t[i:i + chars] for i in range(0, len(t) - chars // 2, chars)] for t in heldout]
        chosen: list[str] = []
        for depth in range(max(map(len, slices), default=0)):
            chosen += [s[depth] for s in slices if depth < len(s) and len(s[depth].split()) >= 8]
            if len(chosen) >= per_domain:
                break
        texts += chosen[:per_domain]
        labels += [domain] * len(chosen[:per_domain])
    return texts, labels


def measure_losses(loaded: Any, adapters: Path, names: list[str], texts: list[str]) -> np.ndarray:
    """(P, N + 1) mean next-token NLL of each text under the base model and under each adapter; kept beside the
    adapters (keyed by the texts and the adapters' files), since it is minutes of CPU."""
    import hashlib

    key = hashlib.sha1("\0".join([*texts, *names]).encode())
    for name in names:
        for file in sorted((adapters / name).iterdir()):
            key.update(f"{file.name}:{file.stat().st_size}:{file.stat().st_mtime_ns}".encode())
    saved = adapters / f".utility-{key.hexdigest()[:16]}.npy"
    if saved.exists():
        return np.load(saved)
    table = _losses(loaded, adapters, names, texts)
    np.save(saved, table)
    return table


def _losses(loaded: Any, adapters: Path, names: list[str], texts: list[str]) -> np.ndarray:
    import torch

    from cachesvc.model_server.adapters import AdapterRegistry

    model, tokenizer = loaded
    registry = AdapterRegistry(copy.deepcopy(model), max_loaded=len(names))
    for name in names:
        registry.load(name, str(adapters / name))
    ids = [torch.tensor([tokenizer(t, add_special_tokens=False)["input_ids"]]) for t in texts]
    table = np.zeros((len(texts), len(names) + 1))
    with torch.no_grad():
        for column, name in enumerate([None, *names]):
            with registry.active(name) as active:
                active.eval()
                for row, x in enumerate(ids):
                    table[row, column] = float(active(input_ids=x, labels=x).loss)
    return table


def draw_stream(prompts: Prompts, domains: list[str], steps: int, zipf: float, seed: int) -> np.ndarray:
    """Prompt indices: a domain by Zipf popularity (seeded order), then a prompt of that domain uniformly."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(domains))
    weights = 1.0 / np.arange(1, len(domains) + 1) ** zipf
    picks = order[rng.choice(len(domains), size=steps, p=weights / weights.sum())]
    members = [np.flatnonzero(np.array(prompts.domains) == d) for d in domains]
    return np.array([members[d][rng.integers(len(members[d]))] for d in picks])


async def run_router(router: str, args: argparse.Namespace, adapters: Path, loaded: Any, encode: Any,
                     prompts: Prompts, stream: np.ndarray) -> dict[str, Any]:
    import aiohttp
    from aiohttp.test_utils import TestServer

    from cachesvc.config import ModelServerConfig, config_from_dict
    from cachesvc.embedding.embedder import Embedder
    from cachesvc.model_server.app import ENGINE, create_model_server_app
    from cachesvc.model_server.engine import ModelEngine
    from cachesvc.server.app import create_app
    from cachesvc.server.services import SERVICES

    names = args.domains
    rewards = prompts.rewards
    settings = ModelServerConfig(lora_dir=str(adapters), max_loras=args.capacity)
    model_app = create_model_server_app(settings, engine=ModelEngine(settings, loaded=loaded))
    model_server = TestServer(model_app, host="127.0.0.1")
    await model_server.start_server()
    while model_app[ENGINE].status == "loading":
        await asyncio.sleep(0.05)
    config = config_from_dict({"adapter_pools": [{
        "name": "assistants", "upstreams": [f"http://127.0.0.1:{model_server.port}/v1"], "capacity": args.capacity,
        "router": router, "server": "cachesvc", "epoch": args.epoch, "seed": args.seed,
        "adapters": [{"name": d, "path": str(adapters / d)} for d in names]}], "cache": {"enabled": False}})
    app = create_app(config, embedder=Embedder(config.cache.embedding, encode=encode))
    proxy = TestServer(app, host="127.0.0.1")
    await proxy.start_server()
    services = app[SERVICES]
    while not services.embedder.started:
        await asyncio.sleep(0.05)
    base = f"http://127.0.0.1:{proxy.port}/v1"
    ttft, cold, chosen = [], [], []
    started_all = time.perf_counter()
    try:
        async with aiohttp.ClientSession() as http:
            for index in stream:
                started = time.perf_counter()
                body = {"model": "assistants", "messages": [{"role": "user", "content": prompts.texts[index]}],
                        "max_tokens": 1, "stream": True, "temperature": 0}
                async with http.post(f"{base}/chat/completions", json=body) as response:
                    assert response.status == 200, await response.text()
                    adapter = response.headers["x-cachesvc-adapter"]
                    cold.append("x-cachesvc-adapter-paged-ms" in response.headers)
                    first, response_id = None, None
                    async for line in response.content:
                        if first is None and line.startswith(b"data: {"):
                            first = time.perf_counter() - started
                            response_id = line.split(b'"id":"', 1)[1].split(b'"', 1)[0].decode()
                assert first is not None and response_id is not None, f"no answer from {router}"
                ttft.append(first)
                arm = names.index(adapter)
                chosen.append(arm)
                feedback = {"id": response_id, "reward": round(float(rewards[index, arm]), 6)}
                async with http.post(f"{base}/feedback", json=feedback) as answer:
                    assert answer.status == 200, await answer.text()
        wall = time.perf_counter() - started_all
        pool = services.pools.pools[0]
        stats = pool.stats()
        measured = pool.router.cost.measured > 0
        cold_ttft = [t for t, c in zip(ttft, cold, strict=True) if c]
        warm_ttft = [t for t, c in zip(ttft, cold, strict=True) if not c]
        served = rewards[stream, np.array(chosen)]
        best = prompts.losses[stream, 1:].argmin(axis=1)
        return {
            "reward": float(served.sum()), "best_share": float(np.mean(np.array(chosen) == best)),
            "page_ins": stats["page_ins"], "page_s": np.where(measured, pool.router.cost.seconds, np.nan),
            "cold50": float(np.median(cold_ttft)) if cold_ttft else float("nan"), "cold_n": len(cold_ttft),
            "warm50": float(np.median(warm_ttft)) if warm_ttft else float("nan"), "wall": wall,
            "ttft50": float(np.percentile(ttft, 50)), "ttft99": float(np.percentile(ttft, 99)),
            "curve": np.cumsum(served),
        }
    finally:
        await proxy.close()
        registry = model_app[ENGINE].registry
        for name in list(registry.names()):
            registry.unload(name)
        await model_server.close()


def replay(args: argparse.Namespace, prompts: Prompts, encode: Any, page_s: np.ndarray) -> None:
    """The same routers in the simulator on a longer stream of the same prompts and measured utilities."""
    from cachesvc.policies.routing.context import ContextProjection
    from cachesvc.policies.routing.hindsight_oracle import best_fixed_set
    from cachesvc.policies.routing.registry import make_router
    from cachesvc.policies.routing.router import RouterSettings
    from cachesvc.policies.routing.simulation import Workload, simulate

    stream = draw_stream(prompts, args.domains, args.replay_steps, args.zipf, args.seed + 1)
    embeddings = np.asarray(encode(prompts.texts), dtype=np.float64)
    project = ContextProjection(embeddings.shape[1], 32, seed=args.seed)
    contexts = np.stack([project(e) for e in embeddings])[stream]
    expected = prompts.rewards[stream]
    workload = Workload(contexts, expected, page_s, noise=False)
    _, oracle = best_fixed_set(expected, args.capacity)
    print(f"\nReplay in the simulator: T = {args.replay_steps} (seed {args.seed + 1}), the same prompts, utilities and "
          f"contexts, page-in seconds as measured live ({', '.join(f'{s:.3f}' for s in page_s)}).\n")
    print("| router | reward / T | regret vs best fixed set | regret / oracle's reward | page-ins | paging s | "
          "net reward (1 per paging second) | net / oracle's |")
    print("|---|---|---|---|---|---|---|---|")
    print(f"| hindsight-oracle (fixed {args.capacity}) | {oracle / args.replay_steps:.4f} | 0 | 0 | 0 | 0 | "
          f"{oracle:.0f} | 1.000 |")
    for name in args.routers:
        router = make_router(name, RouterSettings(arms=len(args.domains), dim=project.size, capacity=args.capacity,
                                                  epoch=args.epoch, seed=args.seed))
        out = simulate(router, workload, args.capacity, seed=args.seed)
        regret = oracle - out.expected_reward
        net = out.net(1.0)
        print(f"| {name} | {out.expected_reward / args.replay_steps:.4f} | {regret:.0f} | {regret / oracle:.4f} | "
              f"{out.page_ins + out.planned_page_ins} | {out.paging_s:.1f} | {net:.0f} | {net / oracle:.3f} |",
              flush=True)


async def main_async(args: argparse.Namespace) -> int:
    from cachesvc.config import EmbeddingConfig
    from cachesvc.embedding.encoders import load_encoder
    from cachesvc.model_server.hf_model import load_smollm2
    from cachesvc.policies.routing.hindsight_oracle import best_fixed_set

    adapters = args.adapters
    if adapters is None:
        adapters = Path(tempfile.mkdtemp(prefix="cachesvc-adapters-"))
        subprocess.run([sys.executable, "-m", "cachesvc", "make-adapters", "--out", str(adapters),
                        "--domains", *args.domains], check=True)
    encode, _ = load_encoder(EmbeddingConfig())
    loaded = load_smollm2()
    started = time.perf_counter()
    texts, labels = cut_prompts(args.domains, args.per_domain, args.prompt_chars)
    prompts = Prompts(texts, labels, measure_losses(loaded, adapters, args.domains, texts))
    own = np.array([args.domains.index(d) for d in labels])
    best = prompts.losses[:, 1:].argmin(axis=1)
    print(f"Utility measured on {len(texts)} prompts ({args.per_domain} per domain, {args.prompt_chars} characters) "
          f"in {time.perf_counter() - started:.0f} s. Mean loss (nats/token) by prompt domain:\n")
    print("| prompt domain | base | own domain's adapter | best adapter | best adapter is its own domain's | "
          "reward of own / of the mean other adapter |")
    print("|---|---|---|---|---|---|")
    rewards = prompts.rewards
    for i, domain in enumerate(args.domains):
        rows = own == i
        others = np.delete(rewards[rows], i, axis=1).mean()
        print(f"| {domain} | {prompts.losses[rows, 0].mean():.3f} | {prompts.losses[rows, 1 + i].mean():.3f} | "
              f"{prompts.losses[rows, 1:].min(axis=1).mean():.3f} | {np.mean(best[rows] == i):.2f} | "
              f"{rewards[rows, i].mean():.3f} / {others:.3f} |")

    stream = draw_stream(prompts, args.domains, args.requests, args.zipf, args.seed)
    counts = {d: int(np.sum(np.array(labels)[stream] == d)) for d in args.domains}
    expected = rewards[stream]
    fixed, oracle = best_fixed_set(expected, args.capacity)
    print(f"\n{args.requests} requests through the proxy ({', '.join(f'{d} {n}' for d, n in counts.items())}), "
          f"capacity {args.capacity} of {len(args.domains)} adapters, epoch {args.epoch}, streamed, 1 token. Best "
          f"fixed set in hindsight: {', '.join(d for d, f in zip(args.domains, fixed, strict=True) if f)}, reward "
          f"{oracle:.1f}; the best adapter for every request would score {args.requests}.\n")
    print("| router | reward | regret vs best fixed set | regret at T/2 | chose the best adapter | page-ins | "
          "TTFT p50 / p99 s | TTFT p50 cold (requests) / warm s | wall s |")
    print("|---|---|---|---|---|---|---|---|---|")
    half_oracle = best_fixed_set(expected[: args.requests // 2], args.capacity)[1]
    measured_page_s = []
    for router in [] if args.replay_only else args.routers:
        r = await run_router(router, args, adapters, loaded, encode, prompts, stream)
        measured_page_s.append(r["page_s"])
        half = half_oracle - r["curve"][args.requests // 2 - 1]
        print(f"| {router} | {r['reward']:.1f} | {oracle - r['reward']:.1f} | {half:.1f} | {r['best_share']:.2f} | "
              f"{r['page_ins']} | {r['ttft50']:.3f} / {r['ttft99']:.3f} | {r['cold50']:.3f} ({r['cold_n']}) / "
              f"{r['warm50']:.3f} | {r['wall']:.0f} |", flush=True)
    if args.replay_steps:
        page_s = np.nanmean(np.stack(measured_page_s), axis=0) if measured_page_s else np.full(len(args.domains), .1)
        replay(args, prompts, encode, np.nan_to_num(page_s, nan=float(np.nanmean(page_s))))
    return 0


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    return asyncio.run(main_async(parse_args(argv)))


if __name__ == "__main__":
    raise SystemExit(main())
