"""Embedding backends (torch vs ONNX Runtime) x intra-op threads: single-query latency and batch-of-64 throughput.

    python benchmarks/bench_embedding.py                      # torch and onnx, 1 and 2 threads
    python benchmarks/bench_embedding.py --backends onnx --threads 1 --queries 500

Each (backend, threads) runs in a fresh process, so torch's global thread setting and warm caches do not leak
between rows. Prints a markdown table: single-query median/p99 ms (one text per call, as a lone request costs),
batch-of-64 queries/s (as the micro-batcher runs under concurrency; once with 64 similar short questions, once
with 60 of them and 4 long texts), and the lowest cosine between the row's
vectors and the torch 1-thread vectors over the same texts (the similarity thresholds assume torch's vectors).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SUBJECTS = ["a list in Python", "a string in JavaScript", "a dictionary by value", "a pandas DataFrame",
            "rows in SQL", "a git branch", "a Rust vector", "files in bash", "a JSON array in Go", "a C++ map"]
ACTIONS = ["How do I sort", "What is the fastest way to reverse", "Can you show me how to filter",
           "Explain how to deduplicate", "Why does my code fail when I iterate over"]
EXTRA = ["", " without using a loop", " and keep the original order, please", " in one line",
         " when it has millions of entries and memory is tight"]


def texts(n: int) -> list[str]:
    out = []
    for i in range(n):
        out.append(f"{ACTIONS[i % len(ACTIONS)]} {SUBJECTS[(i // 5) % len(SUBJECTS)]}{EXTRA[(i // 3) % len(EXTRA)]}?")
    return out


CHECK_TEXTS = texts(50) + ["", "hi", "Ünïcödé 日本語 🚀", "word " * 400]


def child(backend: str, threads: int, queries: int, batches: int, vectors_out: str) -> dict:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from cachesvc.config import EmbeddingConfig
    from cachesvc.embedding.encoders import load_encoder

    started = time.perf_counter()
    encode, used = load_encoder(EmbeddingConfig(backend=backend, threads=threads))
    load_s = time.perf_counter() - started
    np.save(vectors_out, np.asarray(encode(CHECK_TEXTS), dtype=np.float32))
    qs = texts(queries)
    for q in qs[:20]:
        encode([q])
    times = []
    for q in qs:
        t = time.perf_counter()
        encode([q])
        times.append((time.perf_counter() - t) * 1000)
    batch = texts(64)
    encode(batch)
    t = time.perf_counter()
    for _ in range(batches):
        encode(batch)
    qps = 64 * batches / (time.perf_counter() - t)
    # A micro-batch as concurrency makes it: 60 short questions and 4 pasted stack traces (about 250 tokens).
    mixed = texts(60) + [f"Here is my stack trace {i}, please explain what went wrong: " + "x = compute(y) " * 60
                         for i in range(4)]
    encode(mixed)
    t = time.perf_counter()
    for _ in range(max(1, batches // 2)):
        encode(mixed)
    mixed_qps = 64 * max(1, batches // 2) / (time.perf_counter() - t)
    return {"mixed_qps": mixed_qps, "backend": used, "threads": threads, "median_ms": statistics.median(times),
            "p99_ms": float(np.percentile(times, 99)), "qps": qps, "load_s": load_s, "loadavg": os.getloadavg()[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backends", default="torch,onnx")
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--queries", type=int, default=300, help="single-query calls per row")
    parser.add_argument("--batches", type=int, default=10, help="batches of 64 per row")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        backend, threads, out = args.child.split(",", 2)
        print(json.dumps(child(backend, int(threads), args.queries, args.batches, out)))
        return
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        reference = Path(tmp) / "reference.npy"
        configs = [(b, int(t)) for b in args.backends.split(",") for t in args.threads.split(",")]
        if ("torch", 1) not in configs:
            configs.insert(0, ("torch-reference", 1))
        for backend, threads in configs:
            is_reference = (backend, threads) in (("torch", 1), ("torch-reference", 1))
            out = reference if is_reference else Path(tmp) / f"{backend}{threads}.npy"
            name = "torch" if backend == "torch-reference" else backend
            result = subprocess.run(
                [sys.executable, __file__, "--child", f"{name},{threads},{out}", "--queries", str(args.queries),
                 "--batches", str(args.batches)], check=True, capture_output=True, text=True)
            row = json.loads(result.stdout.strip().splitlines()[-1])
            row["vectors"] = str(out)
            if backend != "torch-reference":
                rows.append(row)
        ref = np.load(reference)
        print("| backend | threads | single query median ms | p99 ms | batch of 64, queries/s "
              "| mixed batch of 64 (60 short + 4 long), queries/s | min cosine vs torch | load avg |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|")
        for row in rows:
            cos = float((np.load(row["vectors"]) * ref).sum(1).min())
            print(f"| {row['backend']} | {row['threads']} | {row['median_ms']:.1f} | {row['p99_ms']:.1f} | "
                  f"{row['qps']:.0f} | {row['mixed_qps']:.0f} | {cos:.7f} | {row['loadavg']:.1f} |")


if __name__ == "__main__":
    main()
