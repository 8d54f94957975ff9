"""Build the pair model's training data from the shipped seeds, train it, calibrate it, write pair_model.json.

    cachesvc train-pair-model [--out FILE] [--seed 0]

Deterministic for one seed, one embedding model and one library stack: the same file comes out every time.
Training domains and calibration domains are disjoint (``split_domains``); no evaluation data is read.
"""

from __future__ import annotations

import logging
import random
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from cachesvc.config import EmbeddingConfig
from cachesvc.embedding.encoders import load_encoder
from cachesvc.embedding.word_vectors import WordVectors
from cachesvc.policies.cache.categories import DEFAULT_CATEGORIES
from cachesvc.policies.verify.learned_verifier import same_wording_key
from cachesvc.policies.verify.pair_features import FEATURE_NAMES, pair_features
from cachesvc.policies.verify.pair_model import MODEL_FILE, PairModel
from cachesvc.policies.verify.pair_training.dataset import (
    Intent,
    Pair,
    pairs_from_intents,
    seed_intents,
    split_domains,
)
from cachesvc.policies.verify.pair_training.perturb import LOOK_ALIKES, PARAPHRASES
from cachesvc.policies.verify.verifier import NearMissVerifier
from cachesvc.policies.verify.wordnet import WordNet, load_wordnet
from cachesvc.verifier.wordnet_data import default_wordnet_dir

log = logging.getLogger(__name__)

NEIGHBOURS = 3  # nearest questions of other intents taken as negatives, per question
CANDIDATES = 4  # as the cache: nearest cached questions the verifier sees per lookup
TREES, DEPTH, LEARNING_RATE = 300, 4, 0.05
HAND_WRITTEN = ("paraphrase", "sibling", "neighbour")  # pairs of real questions: weigh more than rewrites
HAND_WRITTEN_WEIGHT = 3.0


@dataclass
class Featurizer:
    wordnet: WordNet
    vectors: dict[str, np.ndarray]
    words: WordVectors
    rules: NearMissVerifier

    def rows(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
        out = np.zeros((len(pairs), len(FEATURE_NAMES)), dtype=np.float32)
        for i, (a, b) in enumerate(pairs):
            seen = self.rules.inspect(a, b)
            similarity = float(np.dot(self.vectors[a], self.vectors[b]))
            out[i], _ = pair_features(seen.a, seen.b, seen.diff, similarity, seen.reason, self.wordnet, self.words)
        return out


def neighbour_negatives(intents: list[Intent], vectors: dict[str, np.ndarray]) -> list[Pair]:
    """Each question against its nearest questions of other intents: what a cache's nearest neighbour often is."""
    texts = [(t, i) for i in intents for t in i.paraphrases]
    matrix = np.stack([vectors[t] for t, _ in texts])
    sims = matrix @ matrix.T
    codes = {intent.intent_id: n for n, intent in enumerate(intents)}
    owner = np.array([codes[i.intent_id] for _, i in texts])
    sims[owner[:, None] == owner[None, :]] = -1.0
    pairs = []
    for row, (text, intent) in enumerate(texts):
        for col in np.argsort(-sims[row], kind="stable")[:NEIGHBOURS]:
            pairs.append(Pair(text, texts[col][0], 0, "neighbour", intent.domain, intent.category))
    return pairs


def lookup_candidates(intents: list[Intent], vector_of: Callable[[str], np.ndarray], wordnet: WordNet,
                      seed: int) -> list[Pair]:
    """The pairs a cache would put before the verifier: one paraphrase of every intent cached (each in turn), the
    others and a look-alike rewrite as queries, their nearest cached questions above the category's pre-filter."""
    rng = random.Random(seed)
    pairs: list[Pair] = []
    rounds = min(len(i.paraphrases) for i in intents)
    for k in range(rounds):
        cached = [i.paraphrases[k] for i in intents]
        cached_matrix = np.stack([vector_of(t) for t in cached])
        queries: list[tuple[str, Intent | None, Intent]] = []
        for intent in intents:
            queries.extend((t, intent, intent) for j, t in enumerate(intent.paraphrases) if j != k)
            name = rng.choice(sorted(LOOK_ALIKES))
            changed = LOOK_ALIKES[name](intent.paraphrases[k], wordnet, rng)
            if changed and changed.lower() != intent.paraphrases[k].lower():
                queries.append((changed, None, intent))
            name = rng.choice(sorted(PARAPHRASES))  # repeats with trivial changes: most of a cache's traffic
            reworded = PARAPHRASES[name](intent.paraphrases[k], wordnet, rng)
            if reworded and reworded != intent.paraphrases[k]:
                queries.append((reworded, intent, intent))
        for text, truth, about in queries:
            sims = cached_matrix @ vector_of(text)
            threshold = DEFAULT_CATEGORIES.get(about.category, DEFAULT_CATEGORIES["default"]).similarity_threshold
            for col in np.argsort(-sims, kind="stable")[:CANDIDATES]:
                if sims[col] < threshold:
                    break
                right = truth is not None and intents[col].intent_id == truth.intent_id
                pairs.append(Pair(text, cached[col], int(right), "lookup", about.domain, about.category))
    return pairs


def fit_trees(x: np.ndarray, y: np.ndarray, weights: np.ndarray, seed: int) -> PairModel:
    from sklearn.ensemble import GradientBoostingClassifier

    model = GradientBoostingClassifier(n_estimators=TREES, max_depth=DEPTH, learning_rate=LEARNING_RATE,
                                       subsample=0.8, min_samples_leaf=20, random_state=seed)
    model.fit(x, y, sample_weight=weights)
    nodes = max(e[0].tree_.node_count for e in model.estimators_)
    shape = (len(model.estimators_), nodes)
    feature = np.full(shape, -1, dtype=np.int32)
    threshold = np.zeros(shape, dtype=np.float32)
    left = np.zeros(shape, dtype=np.int32)
    right = np.zeros(shape, dtype=np.int32)
    value = np.zeros(shape, dtype=np.float32)
    for t, (estimator,) in enumerate(model.estimators_):
        tree = estimator.tree_
        n = tree.node_count
        is_leaf = tree.children_left[:n] < 0
        feature[t, :n] = np.where(is_leaf, -1, tree.feature[:n])
        threshold[t, :n] = tree.threshold[:n]
        left[t, :n] = np.where(is_leaf, 0, tree.children_left[:n])
        right[t, :n] = np.where(is_leaf, 0, tree.children_right[:n])
        value[t, :n] = tree.value[:n, 0, 0] * LEARNING_RATE
    probe = x[:64]
    trees_sum = sum(e[0].predict(probe) * LEARNING_RATE for e in model.estimators_)
    init = float(np.median(model.decision_function(probe) - trees_sum))
    packed = PairModel(feature, threshold, left, right, value, init, DEPTH + 1, (1.0, 0.0), {"all": (
        np.zeros(0), np.zeros(0, dtype=bool))}, FEATURE_NAMES, {})
    gap = float(np.max(np.abs(packed.raw(probe) - model.decision_function(probe))))
    if gap > 1e-3:
        raise RuntimeError(f"exported trees disagree with sklearn by {gap}")
    return packed


def fit_platt(raw: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Logistic fit of right answers on the trees' raw score (Newton steps; two parameters cannot overfit)."""
    a, b = 1.0, 0.0
    for _ in range(100):
        p = 1.0 / (1.0 + np.exp(-(a * raw + b)))
        g = np.array([np.sum((p - y) * raw), np.sum(p - y)])
        w = p * (1 - p) + 1e-9
        h = np.array([[np.sum(w * raw * raw), np.sum(w * raw)], [np.sum(w * raw), np.sum(w)]]) + 1e-6 * np.eye(2)
        step = np.linalg.solve(h, g)
        a, b = a - step[0], b - step[1]
        if np.max(np.abs(step)) < 1e-9:
            break
    return float(a), float(b)


def train(out: Path, seed: int = 0, wordnet_dir: Path | None = None) -> dict[str, Any]:
    started = time.time()
    wordnet = load_wordnet(wordnet_dir or default_wordnet_dir())
    intents = seed_intents()
    train_domains, calibration_domains = split_domains(intents)
    training = [i for i in intents if i.domain in train_domains]
    calibration = [i for i in intents if i.domain in calibration_domains]
    pairs = list(pairs_from_intents(training, wordnet, seed))
    encode, backend = load_encoder(EmbeddingConfig())
    texts = sorted({t for p in pairs for t in (p.a, p.b)} | {t for i in intents for t in i.paraphrases})
    vectors = dict(zip(texts, np.asarray(encode(texts), dtype=np.float32), strict=True))

    def vector_of(text: str) -> np.ndarray:
        if text not in vectors:
            vectors[text] = np.asarray(encode([text]), dtype=np.float32)[0]
        return vectors[text]

    pairs += neighbour_negatives(training, vectors)
    candidates = lookup_candidates(calibration, vector_of, wordnet, seed)
    # Pairs worded the same (case, punctuation, contractions aside) are served without the model: leave them out.
    pairs = [p for p in pairs if same_wording_key(p.a) != same_wording_key(p.b)]
    candidates = [p for p in candidates if same_wording_key(p.a) != same_wording_key(p.b)]
    featurizer = Featurizer(wordnet, vectors, WordVectors(encode), NearMissVerifier())
    x = featurizer.rows([(p.a, p.b) for p in pairs])
    y = np.array([p.label for p in pairs], dtype=np.int32)
    kinds = Counter(p.kind.split(":")[0] for p in pairs)
    # Every source of pairs weighs the same in total (pairs of real questions three times a rewrite's), and the
    # two classes weigh the same. Chosen on the calibration domains' AUC (docs/benchmarks.md).
    weights = np.array([(HAND_WRITTEN_WEIGHT if p.kind.split(":")[0] in HAND_WRITTEN else 1.0)
                        / kinds[p.kind.split(":")[0]] for p in pairs])
    for label in (0, 1):
        weights[y == label] *= 0.5 / weights[y == label].sum()
    weights *= len(pairs)
    model = fit_trees(x, y, weights, seed)
    cx = featurizer.rows([(p.a, p.b) for p in candidates])
    cy = np.array([p.label for p in candidates], dtype=np.float64)
    platt = fit_platt(model.raw(cx), cy)
    calibrated = PairModel(model.feature, model.threshold, model.left, model.right, model.value, model.init,
                           model.depth, platt, {}, FEATURE_NAMES, {})
    probs = calibrated.probability(cx)
    table: dict[str, tuple[np.ndarray, np.ndarray]] = {"all": (probs, cy.astype(bool))}
    for category in sorted({p.category for p in candidates}):
        mask = np.array([p.category == category for p in candidates])
        table[category] = (probs[mask], cy[mask].astype(bool))
    meta = {"seed": seed, "embedding_backend": backend, "train_domains": sorted(train_domains),
            "calibration_domains": sorted(calibration_domains), "train_pairs": len(pairs),
            "train_pairs_by_source": dict(sorted(kinds.items())), "calibration_pairs": len(candidates),
            "trees": TREES, "tree_depth": DEPTH, "learning_rate": LEARNING_RATE,
            "calibration_auc": {c: _auc(p, r) for c, (p, r) in table.items()}}
    final = PairModel(model.feature, model.threshold, model.left, model.right, model.value, model.init,
                      model.depth, platt, table, FEATURE_NAMES, meta)
    out.write_bytes(orjson.dumps(final.to_json()))
    log.info("pair model: %d training pairs, %d calibration candidates, %.0f s -> %s", len(pairs), len(candidates),
             time.time() - started, out)
    return meta


def _auc(scores: np.ndarray, right: np.ndarray) -> float | None:
    from sklearn.metrics import roc_auc_score

    return round(float(roc_auc_score(right, scores)), 4) if 0 < right.sum() < len(right) else None


def default_output() -> Path:
    return Path(__file__).resolve().parents[2] / "policies" / "verify" / MODEL_FILE


def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="cachesvc train-pair-model", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=default_output(), help="where to write the model JSON")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--wordnet", type=Path, default=None, help="WordNet 3.0 folder (default: the installed one)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    meta = train(args.out, args.seed, args.wordnet)
    print({k: v for k, v in meta.items() if not k.endswith("domains")})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
