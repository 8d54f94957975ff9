"""Adapter routers on real query embeddings: reward, regret, page-ins, paging time and time to first token of
every router behind the same simulated adapter cache, with the best fixed cache in hindsight as the oracle.

    python benchmarks/bench_adapter_routing.py [--steps 8000] [--adapters 15] [--capacity 3] [--cost-weight 1.0]
                                               [--drift] [--dims 4 8 16 32 64 384] [--seeds 0 1 2]

Workload: the questions of the verifier's training seeds and evaluation sets (about 50 domains, embedded with the
bundled all-MiniLM-L6-v2), domains drawn with Zipf popularity; each adapter is the specialist of a few domains
(expected reward 0.85 there, 0.3 elsewhere; rewards are Bernoulli). Page-in seconds per adapter are drawn from a
lognormal around ``--page-s`` (the reported range is hundreds of ms to seconds). ``--drift`` reverses the
popularity half way. Net reward = reward - cost_weight * paging seconds, the quantity the cache-aware routers
trade. Figures are medians over ``--seeds``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SOURCES = [*sorted((ROOT / "policies" / "verify" / "pair_training" / "seeds").glob("*.jsonl")),
           ROOT / "benchmarks" / "data" / "verifier_eval" / "domains.jsonl"]
SPECIALIST, OTHER = 0.85, 0.3


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=8000)
    parser.add_argument("--adapters", type=int, default=15)
    parser.add_argument("--capacity", type=int, default=3)
    parser.add_argument("--cost-weight", type=float, default=1.0, help="reward given up per second of paging")
    parser.add_argument("--page-s", type=float, default=0.5, help="median page-in seconds")
    parser.add_argument("--zipf", type=float, default=1.0)
    parser.add_argument("--drift", action="store_true", help="reverse the domains' popularity half way")
    parser.add_argument("--dim", type=int, default=None, help="context dimension (default: the shipped one)")
    parser.add_argument("--dims", type=int, nargs="*", default=None, help="also sweep polar+ over these")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    return parser.parse_args(argv)


def domain_texts() -> dict[str, list[str]]:
    texts: dict[str, list[str]] = {}
    for path in SOURCES:
        for line in path.read_text().splitlines():
            if line.strip():
                row = json.loads(line)
                texts.setdefault(row["domain"], []).extend(row["paraphrases"])
    return texts


def build(args: argparse.Namespace, vectors: dict[str, np.ndarray], seed: int):
    """(embeddings (T, 384), expected (T, N), page seconds (N,)) for one seed."""
    rng = np.random.default_rng(seed)
    domains = sorted(vectors)
    order = rng.permutation(len(domains))
    weights = 1.0 / np.arange(1, len(domains) + 1) ** args.zipf
    weights /= weights.sum()
    picks = order[rng.choice(len(domains), size=args.steps, p=weights)]
    if args.drift:
        later = order[::-1][rng.choice(len(domains), size=args.steps, p=weights)]
        picks[args.steps // 2:] = later[args.steps // 2:]
    specialist = rng.permutation(np.arange(len(domains)) % args.adapters)
    embeddings = np.stack([vectors[domains[d]][rng.integers(len(vectors[domains[d]]))] for d in picks])
    expected = np.full((args.steps, args.adapters), OTHER)
    expected[np.arange(args.steps), specialist[picks]] = SPECIALIST
    page_s = args.page_s * np.exp(0.5 * rng.standard_normal(args.adapters))
    return embeddings, expected, page_s


def run(args: argparse.Namespace, vectors: dict[str, np.ndarray], names: list[str], dim: int) -> dict[str, dict]:
    from cachesvc.policies.routing.context import ContextProjection
    from cachesvc.policies.routing.hindsight_oracle import best_fixed_set
    from cachesvc.policies.routing.registry import make_router
    from cachesvc.policies.routing.router import RouterSettings
    from cachesvc.policies.routing.simulation import Workload, simulate

    rows: dict[str, list[dict]] = {name: [] for name in [*names, "hindsight-oracle"]}
    for seed in args.seeds:
        embeddings, expected, page_s = build(args, vectors, seed)
        project = ContextProjection(embeddings.shape[1], dim, seed=seed)
        contexts = np.stack([project(e) for e in embeddings])
        workload = Workload(contexts, expected, page_s)
        best = float(expected.max(axis=1).sum())
        _, oracle = best_fixed_set(expected, args.capacity)
        rows["hindsight-oracle"].append({"reward": oracle, "regret": best - oracle, "page_ins": 0, "paging_s": 0.0,
                                         "net": oracle, "ttft50": 0.04, "ttft99": 0.04, "us": 0.0})
        for name in names:
            router = make_router(name, RouterSettings(arms=args.adapters, dim=project.size, capacity=args.capacity,
                                                      cost_weight=args.cost_weight, seed=seed))
            started = time.perf_counter()
            out = simulate(router, workload, args.capacity, seed=seed)
            elapsed = time.perf_counter() - started
            rows[name].append({"reward": out.expected_reward, "regret": out.regret,
                               "page_ins": out.page_ins + out.planned_page_ins, "paging_s": out.paging_s,
                               "net": out.net(args.cost_weight), "ttft50": float(np.percentile(out.ttft_s, 50)),
                               "ttft99": float(np.percentile(out.ttft_s, 99)), "us": elapsed / args.steps * 1e6})
    return {name: {k: float(np.median([r[k] for r in runs])) for k in runs[0]} for name, runs in rows.items()}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from cachesvc.config import EmbeddingConfig
    from cachesvc.embedding.encoders import load_encoder
    from cachesvc.policies.routing.context import DEFAULT_DIM
    from cachesvc.policies.routing.registry import ROUTERS

    encode, _ = load_encoder(EmbeddingConfig())
    texts = domain_texts()
    vectors = {d: np.asarray(encode(t), dtype=np.float64) for d, t in texts.items()}
    names = sorted(ROUTERS)
    dim = args.dim or DEFAULT_DIM
    print(f"{len(vectors)} domains, {sum(len(t) for t in texts.values())} questions; {args.adapters} adapters, "
          f"capacity {args.capacity}, {args.steps} requests, cost weight {args.cost_weight}/s, median page-in "
          f"{args.page_s}s, zipf {args.zipf}, drift {args.drift}, context dim {dim}, seeds {args.seeds}\n")
    table = run(args, vectors, names, dim)
    oracle = table["hindsight-oracle"]["net"]
    print("| router | reward | regret | page-ins | paging s | net reward | net / oracle's | TTFT p50 / p99 s "
          "| us/request |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, r in sorted(table.items(), key=lambda kv: -kv[1]["net"]):
        print(f"| {name} | {r['reward']:.0f} | {r['regret']:.0f} | {r['page_ins']:.0f} | {r['paging_s']:.0f} | "
              f"{r['net']:.0f} | {r['net'] / oracle:.3f} | {r['ttft50']:.2f} / {r['ttft99']:.2f} | {r['us']:.0f} |")
    if args.dims:
        print("\n| context dim | polar+ reward | regret | net reward | us/request |\n|---|---|---|---|---|")
        for dim in args.dims:
            r = run(args, vectors, ["polar+"], dim)["polar+"]
            print(f"| {dim} | {r['reward']:.0f} | {r['regret']:.0f} | {r['net']:.0f} | {r['us']:.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
