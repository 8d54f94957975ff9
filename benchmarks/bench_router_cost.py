"""What a router costs the proxy per request: one route (score every arm) plus one update, and, apart, one
page-in's victim choice and one epoch plan. One BLAS thread (set before numpy loads), medians over repeats.

    python benchmarks/bench_router_cost.py [--arms 15 100] [--requests 2000]
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import numpy as np  # after the thread settings

ROUTERS = ("linucb-lru", "polar", "polar+")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arms", type=int, nargs="+", default=[15, 100])
    parser.add_argument("--requests", type=int, default=2000)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from cachesvc.policies.routing.context import DEFAULT_DIM
    from cachesvc.policies.routing.registry import make_router
    from cachesvc.policies.routing.router import RouterSettings

    dim = DEFAULT_DIM + 1
    print(f"context {dim} (the default, bias included), one BLAS thread, {args.requests} requests after a "
          f"500-request warm-up\n")
    print("| arms | slots | router | route + update ms | victim ms | epoch plan ms |\n|---|---|---|---|---|---|")
    for arms in args.arms:
        capacity = max(2, arms // 6)
        for name in ROUTERS:
            router = make_router(name, RouterSettings(arms=arms, dim=dim, capacity=capacity))
            rng = np.random.default_rng(0)
            contexts = rng.standard_normal((500 + args.requests, dim))
            contexts[:, -1] = 1.0
            resident = np.zeros(arms, dtype=bool)
            resident[:capacity] = True
            for x in contexts[:500]:
                router.learn(router.route(x, resident), x, float(rng.random()))
            started = time.perf_counter()
            for x in contexts[500:]:
                router.learn(router.route(x, resident), x, float(rng.random()))
            per_request = (time.perf_counter() - started) / args.requests * 1e3
            victim = _median_ms(router.victim, resident, capacity)
            plan = (_median_ms(router.resident_for_next_epoch, resident, ())
                    if hasattr(router, "resident_for_next_epoch") else float("nan"))
            print(f"| {arms} | {capacity} | {name} | {per_request:.3f} | {victim:.2f} | "
                  f"{'-' if np.isnan(plan) else f'{plan:.2f}'} |", flush=True)
    return 0


def _median_ms(fn: Callable[..., object], *args: object, repeats: int = 20) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn(*args)
        times.append(time.perf_counter() - started)
    return float(np.median(times)) * 1e3


if __name__ == "__main__":
    raise SystemExit(main())
