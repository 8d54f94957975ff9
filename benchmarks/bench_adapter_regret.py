"""Regret of the adapter routers against the best fixed cache in hindsight, as the horizon grows: cumulative
(net) regret at log-spaced T, its fitted growth exponent, page-ins and paging time, for several slot counts K.
Draws the regret-vs-T plot (docs/adapter_regret.png; needs matplotlib: ``pip install -e '.[bench]'``).

    python benchmarks/bench_adapter_regret.py [--steps 100000] [--capacities 2 4 8] [--adapters 15]
                                              [--cost-weight 1.0] [--plot docs/adapter_regret.png]

Contexts: the bundled MiniLM embeddings of the questions of 50 domains (Zipf popularity), projected as a pool
projects them. Utilities are functions of the context plus noise: adapter a's expected reward is
``clip(0.5 + 0.4 * theta_a . x / s, 0, 1)``, with theta_a a seeded random unit vector and s scaling the spread
over the workload (so that the better adapter for a request really depends on it); rewards are Bernoulli. Page-in
seconds are lognormal around 0.3 s with sigma 1 (about 40 ms to 2.4 s: the reported range).

Regret is against the best fixed set of K adapters for the first T requests, each request routed to the set's
best member with true utilities, paying no paging. *Net* regret also charges the router its paging time at
``--cost-weight`` reward per second (the quantity the cache-aware routers trade); *raw* regret ignores paging.
The exponent is the slope of log(net regret) against log(T) over T >= T/10 (the tail); none where the router's
net reward beats the best fixed cache there (negative regret: paging paid for itself).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINTS = 12


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--capacities", type=int, nargs="+", default=[2, 4, 8])
    parser.add_argument("--adapters", type=int, default=15)
    parser.add_argument("--cost-weight", type=float, default=1.0)
    parser.add_argument("--routers", nargs="+", default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plot", type=Path, default=ROOT / "docs" / "adapter_regret.png")
    return parser.parse_args(argv)


def workload(args: argparse.Namespace):
    import sys

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench_adapter_routing import domain_texts

    from cachesvc.config import EmbeddingConfig
    from cachesvc.embedding.encoders import load_encoder
    from cachesvc.policies.routing.context import DEFAULT_DIM, ContextProjection
    from cachesvc.policies.routing.simulation import Workload

    encode, _ = load_encoder(EmbeddingConfig())
    texts = domain_texts()
    domains = sorted(texts)
    vectors = {d: np.asarray(encode(texts[d]), dtype=np.float64) for d in domains}
    rng = np.random.default_rng(args.seed)
    weights = 1.0 / np.arange(1, len(domains) + 1) ** 1.0
    picks = rng.permutation(len(domains))[rng.choice(len(domains), size=args.steps, p=weights / weights.sum())]
    project = ContextProjection(384, DEFAULT_DIM, seed=args.seed)
    table = {d: np.stack([project(v) for v in vectors[d]]) for d in domains}
    contexts = np.stack([table[domains[d]][rng.integers(len(table[domains[d]]))] for d in picks])
    theta = rng.standard_normal((args.adapters, DEFAULT_DIM))
    theta /= np.linalg.norm(theta, axis=1, keepdims=True)
    scores = contexts[:, :-1] @ theta.T
    scores -= scores.mean(axis=0)
    expected = np.clip(0.5 + 0.4 * scores / (2 * scores.std()), 0.0, 1.0)
    page_s = 0.3 * np.exp(rng.standard_normal(args.adapters))
    return Workload(contexts, expected, page_s), project.size


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from cachesvc.policies.routing.hindsight_oracle import best_fixed_set
    from cachesvc.policies.routing.registry import ROUTERS, make_router
    from cachesvc.policies.routing.router import RouterSettings
    from cachesvc.policies.routing.simulation import simulate

    names = args.routers or sorted(ROUTERS)
    work, dim = workload(args)
    marks = np.unique(np.geomspace(1000, args.steps, CHECKPOINTS).astype(int))
    print(f"{args.steps} requests, {args.adapters} adapters, capacities {args.capacities}, cost weight "
          f"{args.cost_weight}/s, page-ins lognormal around 0.3 s, seed {args.seed}\n")
    curves: dict[int, dict[str, np.ndarray]] = {}
    for capacity in args.capacities:
        oracle = np.array([best_fixed_set(work.expected[:t], capacity)[1] for t in marks])
        curves[capacity] = {}
        print(f"K = {capacity}\n\n| router | reward | raw regret | net regret | net regret / linucb-lru's | "
              f"exponent | page-ins | paging s | us/request |\n|---|---|---|---|---|---|---|---|---|")
        rows = []
        for name in names:
            router = make_router(name, RouterSettings(arms=args.adapters, dim=dim, capacity=capacity,
                                                      cost_weight=args.cost_weight, seed=args.seed))
            started = time.perf_counter()
            out = simulate(router, work, capacity, seed=args.seed)
            elapsed = (time.perf_counter() - started) / args.steps * 1e6
            earned = np.cumsum(work.expected[np.arange(args.steps), out.choices])[marks - 1]
            paid = np.cumsum(out.step_paging_s)[marks - 1] * args.cost_weight
            net = oracle - (earned - paid)  # negative: paging beat the best fixed cache
            tail = marks >= args.steps / 10
            exponent = (float(np.polyfit(np.log(marks[tail]), np.log(net[tail]), 1)[0]) if (net[tail] > 0).all()
                        else float("nan"))
            curves[capacity][name] = net
            rows.append((name, earned[-1], oracle[-1] - earned[-1], net[-1], exponent,
                         out.page_ins + out.planned_page_ins, out.paging_s, elapsed))
        lru = next(r[3] for r in rows if r[0] == "linucb-lru") if "linucb-lru" in names else np.nan
        for name, earned_t, raw, net_t, exponent, page_ins, paging, us in sorted(rows, key=lambda r: r[3]):
            shown = f"{exponent:.2f}" if np.isfinite(exponent) else "- (below the oracle)"
            print(f"| {name} | {earned_t:.0f} | {raw:.0f} | {net_t:.0f} | {net_t / lru:.2f} | {shown} | "
                  f"{page_ins} | {paging:.0f} | {us:.0f} |")
        print(f"\nhindsight oracle reward at T = {args.steps}: {oracle[-1]:.0f}\n", flush=True)
    plot(args, marks, curves)
    return 0


def plot(args: argparse.Namespace, marks: np.ndarray, curves: dict[int, dict[str, np.ndarray]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(curves), figsize=(5 * len(curves), 4), squeeze=False)
    for axis, (capacity, by_router) in zip(axes[0], curves.items(), strict=True):
        for name, net in sorted(by_router.items()):
            axis.plot(marks, net, marker="o", markersize=3, label=name)
        start = max(abs(float(net[0])) for net in by_router.values())
        axis.plot(marks, marks * start / marks[0], "k:", linewidth=0.8, label="linear (from the worst start)")
        axis.set_xscale("log")
        axis.set_yscale("symlog", linthresh=100)  # net regret goes negative where paging beats the fixed cache
        axis.set_title(f"K = {capacity} of {args.adapters} adapters")
        axis.set_xlabel("requests T")
        axis.set_ylabel("net regret vs best fixed cache")
        axis.grid(True, which="both", alpha=0.3)
    axes[0][-1].legend(fontsize=7)
    figure.tight_layout()
    args.plot.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(args.plot, dpi=110)
    print(f"plot: {args.plot}")


if __name__ == "__main__":
    raise SystemExit(main())
