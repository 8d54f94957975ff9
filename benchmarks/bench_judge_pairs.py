"""The judge against the learned pair model on the same held-out pairs: how often each says "one answer serves
both" to two paraphrases of one intent, and to an intent and its look-alike sibling.

    python benchmarks/bench_judge_pairs.py --judge-url http://127.0.0.1:8091/v1 [--pairs 100] [--data FILE ...]

The judge is asked exactly as the server asks it (cachesvc.verifier.judge.Judge: same prompt, same parsing). The
learned model's row is read at its shipped bar and at the bar where it serves as many look-alikes as the judge did,
so that the two are compared at one false-accept rate. Pairs are drawn with a fixed seed from the evaluation sets,
which neither was trained or tuned on.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
EVAL = ROOT / "benchmarks" / "data" / "verifier_eval"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--judge-url", required=True, help="an OpenAI-compatible endpoint ending in /v1")
    parser.add_argument("--judge-model", default="judge")
    parser.add_argument("--data", type=Path, nargs="+", default=[EVAL / "domains.jsonl", EVAL / "devlike.jsonl"])
    parser.add_argument("--pairs", type=int, default=100, help="pairs of each kind per data file")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def sample_pairs(rows: list[dict], count: int, seed: int) -> list[tuple[str, str, str, bool]]:
    """(question, other question, category, same intent?): ``count`` paraphrase pairs and ``count`` sibling pairs."""
    rng = random.Random(seed)
    by_id = {r["intent_id"]: r for r in rows}
    same, different = [], []
    for r in rows:
        texts = r["paraphrases"]
        i, j = rng.sample(range(len(texts)), 2)
        same.append((texts[i], texts[j], r["category"], True))
        sibling = by_id.get(r.get("sibling_of") or "")
        if sibling is not None:
            different.append((rng.choice(texts), rng.choice(sibling["paraphrases"]), r["category"], False))
    rng.shuffle(same)
    rng.shuffle(different)
    return same[:count] + different[:count]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from cachesvc.config import EmbeddingConfig, JudgeConfig
    from cachesvc.embedding.encoders import load_encoder
    from cachesvc.embedding.word_vectors import WordVectors
    from cachesvc.policies.verify.learned_verifier import LearnedVerifier
    from cachesvc.policies.verify.pair_model import load_pair_model
    from cachesvc.policies.verify.wordnet import load_wordnet
    from cachesvc.verifier.judge import Judge
    from cachesvc.verifier.wordnet_data import default_wordnet_dir

    encode, _ = load_encoder(EmbeddingConfig())
    learned = LearnedVerifier(load_wordnet(default_wordnet_dir()), load_pair_model(None), WordVectors(encode))
    judge = Judge(JudgeConfig(url=args.judge_url, model=args.judge_model, timeout_s=60.0))
    loop = asyncio.new_event_loop()
    loop.run_until_complete(judge.open())

    print("| data | judge: paraphrases yes | judge: look-alikes yes | judge s/pair | learned at its bar: "
          "paraphrases / look-alikes | learned at the judge's look-alike rate: paraphrases |")
    print("|---|---|---|---|---|---|")
    for path in args.data:
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        pairs = sample_pairs(rows, args.pairs, args.seed)
        vectors = np.asarray(encode([t for a, b, _, _ in pairs for t in (a, b)]), dtype=np.float32)
        verdicts, probabilities, accepted = [], [], []
        started = time.perf_counter()
        for index, (a, b, category, _) in enumerate(pairs):
            verdicts.append(loop.run_until_complete(judge.same_question(a, b)) is True)
            similarity = float(vectors[2 * index] @ vectors[2 * index + 1])
            judgement = learned.judge(a, [(b, similarity)], category)[0]
            probabilities.append(judgement.probability)
            accepted.append(judgement.accepted)
        per_pair = (time.perf_counter() - started) / len(pairs)
        same = np.array([p[3] for p in pairs])
        verdicts_a, probs_a, accepted_a = np.array(verdicts), np.array(probabilities), np.array(accepted)
        judge_fpr = verdicts_a[~same].mean()
        bar = np.quantile(probs_a[~same], 1.0 - judge_fpr) if judge_fpr > 0 else np.inf
        print(f"| {path.name} | {verdicts_a[same].mean():.1%} | {judge_fpr:.1%} | {per_pair:.2f} | "
              f"{accepted_a[same].mean():.1%} / {accepted_a[~same].mean():.1%} | "
              f"{(probs_a[same] >= bar).mean():.1%} |", flush=True)
    print(f"judge calls {judge.calls}, failures {judge.failures}", file=sys.stderr)
    loop.run_until_complete(judge.close())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
