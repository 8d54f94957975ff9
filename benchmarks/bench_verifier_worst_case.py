"""The verifiers' cost on long, adversarial question pairs (nothing cached): what `cache.max_query_chars` bounds.
Pairs of random words from a small vocabulary (many partial matches), one word repeated, and negations against
plain words, at 1,000 to 16,000 characters. The near-miss rules run alone (one core, pure Python); the learned
verifier also embeds the words it compares (a fresh word-vector cache each time, so every word is new).

    python benchmarks/bench_verifier_worst_case.py [--repeats 3] [--verifiers near-miss learned]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable
from typing import Any

from cachesvc.policies.verify.verifier import NearMissVerifier

WORDS = "the quick brown fox jumps over a lazy dog in paris 12 python not cannot big small unsafe safe".split()
LENGTHS = (1_000, 2_000, 4_000, 8_000, 16_000)


def pairs(n: int, rng: random.Random) -> dict[str, tuple[str, str]]:
    def words(count: int) -> str:
        return " ".join(rng.choice(WORDS) for _ in range(count))[:n]

    return {"random words": (words(n // 5), words(n // 5)), "one word repeated": ("a " * (n // 2), "b " * (n // 2)),
            "negations": ("not " * (n // 4), "a " * (n // 2)), "negating prefixes": ("unsafe " * (n // 7),
                                                                                 "safe " * (n // 5))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--verifiers", nargs="+", default=["near-miss", "learned"], choices=["near-miss", "learned"])
    args = parser.parse_args()
    for name in args.verifiers:
        table(name, args.repeats)


def make_verifier(name: str) -> Callable[[str, str], object]:
    if name == "near-miss":
        rules = NearMissVerifier(cache_size=0)
        return lambda a, b: rules.verify(a, b, 0.9, "code")
    from cachesvc.config import EmbeddingConfig
    from cachesvc.embedding.encoders import load_encoder
    from cachesvc.embedding.word_vectors import WordVectors
    from cachesvc.policies.verify.learned_verifier import LearnedVerifier
    from cachesvc.policies.verify.pair_model import load_pair_model
    from cachesvc.policies.verify.wordnet import load_wordnet
    from cachesvc.verifier.wordnet_data import default_wordnet_dir

    global _SHARED
    if _SHARED is None:
        _SHARED = (load_encoder(EmbeddingConfig())[0], load_wordnet(default_wordnet_dir()), load_pair_model())
    encode, wordnet, model = _SHARED
    learned = LearnedVerifier(wordnet, model, WordVectors(encode), rules=NearMissVerifier(cache_size=0))
    return lambda a, b: learned.judge(a, [(b, 0.9)], "code")


_SHARED: tuple[Any, Any, Any] | None = None


def table(name: str, repeats: int) -> None:
    rng = random.Random(0)
    cases = {n: pairs(n, rng) for n in LENGTHS}
    kinds = list(cases[LENGTHS[0]])
    print(f"\n{name}: ms per pair, median of {repeats} (a fresh verifier each time: no cached analyses)\n")
    print("| characters | " + " | ".join(kinds) + " |\n|---:|" + "---:|" * len(kinds))
    for n in LENGTHS:
        cells = []
        for kind in kinds:
            a, b = cases[n][kind]
            times = []
            for _ in range(repeats):
                verify = make_verifier(name)
                started = time.perf_counter()
                verify(a, b)
                times.append(time.perf_counter() - started)
            cells.append(f"{statistics.median(times) * 1000:.1f}")
        print(f"| {n:,} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
