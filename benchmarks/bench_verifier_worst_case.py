"""The near-miss verifier's cost on long, adversarial question pairs (one core, pure Python, nothing cached): what
`cache.max_query_chars` bounds. Pairs of random words from a small vocabulary (many partial matches), one word
repeated, and negations against plain words, at 1,000 to 16,000 characters.

    python benchmarks/bench_verifier_worst_case.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

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
    args = parser.parse_args()
    rng = random.Random(0)
    cases = {n: pairs(n, rng) for n in LENGTHS}
    kinds = list(cases[LENGTHS[0]])
    print("\nverify() ms, median of", args.repeats, "(a fresh verifier each time: no cached analyses)\n")
    print("| characters | " + " | ".join(kinds) + " |\n|---:|" + "---:|" * len(kinds))
    for n in LENGTHS:
        cells = []
        for kind in kinds:
            a, b = cases[n][kind]
            times = []
            for _ in range(args.repeats):
                verifier = NearMissVerifier(cache_size=0)
                started = time.perf_counter()
                verifier.verify(a, b, 0.9, "code")
                times.append(time.perf_counter() - started)
            cells.append(f"{statistics.median(times) * 1000:.1f}")
        print(f"| {n:,} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
