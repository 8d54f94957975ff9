"""The features the learned pair model reads: what two questions share, what each says that the other does not,
and how the words that differ relate (WordNet, the embedding model's word vectors, the near-miss rules).

No feature names a word: every one is a count, a share, a similarity or a relation type, so what the model learns
carries over to domains its training data never named.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from .lexicon import STOPWORDS
from .query_features import Item, QueryFeatures
from .word_diff import WordDiff
from .wordnet import Relation, WordNet

WordVectors = Callable[[Sequence[str]], Mapping[str, np.ndarray]]
"""Unit-length vectors for words (the embedding model run on each word alone), looked up in one batch."""

# Every reason a near-miss rule can give (tests/policies/verify/test_pair_model.py keeps the two in step).
RULE_REASONS = ("number-mismatch", "unit-mismatch", "entity-mismatch", "date-mismatch", "direction-swap",
                "negation", "antonym", "scope-change", "substitution")
_PAIRING = (Relation.SAME, Relation.SYNONYM, Relation.DERIVED, Relation.SIMILAR, Relation.ANTONYM,
            Relation.HYPERNYM, Relation.SISTER, Relation.KIN)
_WH_LONG = frozenset({"long", "much", "many", "often", "far", "old", "big", "soon", "late", "early", "fast"})
_WH = ("how", "what", "which", "who", "where", "when", "why", "whose")
_YES_NO = frozenset({"is", "are", "can", "could", "does", "do", "did", "should", "will", "would", "was", "were",
                     "has", "have", "may", "must"})
_FORMS = ("none", "yes-no", "how", "how-long", "what", "which", "who", "where", "when", "why", "whose")
_UNRELATED_BELOW = 0.45  # word-vector cosine under which two leftover words are not taken as one meaning
MAX_COMPARED = 16  # leftover words per side paired across the sides (a look-alike differs in a few)
MAX_COVERING = 48  # content words per side a leftover may be covered by
MAX_ORDERED = 24  # content words per side whose order is compared (cubic in the count for sandwiched pairs)

FEATURE_NAMES: tuple[str, ...] = (
    "cos", "items_a", "items_b", "items_max", "matched_share", "jaccard",
    *(f"pairs_{r.value}" for r in _PAIRING),
    "left_a", "left_b", "left_min", "left_max", "left_total",
    "left_named_a", "left_named_b",
    "word_sim_min", "word_sim_mean", "word_sim_pairs_min", "unrelated_words",
    "wn_sim_min", "wn_sim_mean",
    "wh_differs", "wh_how_long_vs_how", "yes_no_differs",
    "order_inversions", "sandwiched_inversions", "arrows_swapped",
    "form_a", "form_b", "words_only_a", "words_only_b", "antonym_any", "left_rarity_a", "left_rarity_b",
    "negations_a", "negations_b", "negations_differ",
    "numbers_a", "numbers_b", "numbers_shared",
    *(f"rule_{r}" for r in RULE_REASONS), "rule_any",
)


@dataclass(frozen=True)
class PairEvidence:
    """What the features were computed from, for the explain endpoint."""

    left_a: tuple[str, ...]
    left_b: tuple[str, ...]
    relations: tuple[tuple[str, str, str, float], ...]  # (word a, word b, WordNet relation, word-vector cosine)
    rule: str


def question_form(q: QueryFeatures) -> str:
    """The kind of answer asked for: "how-long" (how long/much/many...), "how", "what", ..., "yes-no", "none"."""
    words = q.words
    for i, word in enumerate(words):
        if word == "how":
            return "how-long" if i + 1 < len(words) and words[i + 1] in _WH_LONG else "how"
        if word in _WH:
            return word
    return "yes-no" if words and words[0] in _YES_NO else "none"


def pair_features(
    a: QueryFeatures, b: QueryFeatures, diff: WordDiff, similarity: float, rule: str, wordnet: WordNet,
    word_vectors: WordVectors,
) -> tuple[np.ndarray, PairEvidence]:
    """One feature row (FEATURE_NAMES) for a query ``a`` and a cached question ``b``."""
    # Bounded work whatever the questions' length: the pairings below are quadratic in these counts.
    left_a, left_b = list(diff.only_a[:MAX_COMPARED]), list(diff.only_b[:MAX_COMPARED])
    items_a_seen, items_b_seen = a.items[:MAX_COVERING], b.items[:MAX_COVERING]
    vectors = word_vectors(sorted({i.surface for i in (*left_a, *left_b, *items_a_seen, *items_b_seen)}))
    pair_counts = dict.fromkeys(_PAIRING, 0)
    relations: list[tuple[str, str, str, float]] = []
    wn_sims: list[float] = []
    pair_sims: list[float] = []
    # Pair leftovers across the sides, closest word-vector first, and ask WordNet how each pair relates.
    scored = sorted(((_cos(vectors, x, y), ia, ib) for ia, x in enumerate(left_a) for ib, y in enumerate(left_b)),
                    reverse=True)
    used_a: set[int] = set()
    used_b: set[int] = set()
    for sim, ia, ib in scored:
        if ia in used_a or ib in used_b:
            continue
        x, y = left_a[ia], left_b[ib]
        relation = wordnet.relation(x.surface, y.surface)
        if relation is Relation.NONE and sim < _UNRELATED_BELOW:
            continue
        used_a.add(ia)
        used_b.add(ib)
        if relation is not Relation.NONE:
            pair_counts[relation] += 1
        relations.append((x.surface, y.surface, relation.value, round(sim, 3)))
        wn_sims.append(wordnet.similarity(x.surface, y.surface))
        pair_sims.append(sim)
    unpaired_a = [x for i, x in enumerate(left_a) if i not in used_a]
    unpaired_b = [y for i, y in enumerate(left_b) if i not in used_b]
    # How well each leftover word is covered by anything on the other side (sink ~ drain, unclog ~ blocked).
    coverage = [max((_cos(vectors, x, y) for y in items_b_seen), default=0.0) for x in left_a]
    coverage += [max((_cos(vectors, y, x) for x in items_a_seen), default=0.0) for y in left_b]
    keys_a, keys_b = a.keys, b.keys
    only_a, only_b = _words_only(a, b, wordnet)[:MAX_COMPARED], _words_only(b, a, wordnet)[:MAX_COMPARED]
    items_a, items_b = len(a.items), len(b.items)
    form_a, form_b = question_form(a), question_form(b)
    row = {
        "cos": similarity, "items_a": items_a, "items_b": items_b, "items_max": max(items_a, items_b),
        "matched_share": diff.matched / max(1, items_a, items_b),
        "jaccard": len(keys_a & keys_b) / max(1, len(keys_a | keys_b)),
        **{f"pairs_{r.value}": n for r, n in pair_counts.items()},
        "left_a": len(unpaired_a), "left_b": len(unpaired_b), "left_min": min(len(unpaired_a), len(unpaired_b)),
        "left_max": max(len(unpaired_a), len(unpaired_b)), "left_total": len(left_a) + len(left_b),
        "left_named_a": sum(_named(x) for x in unpaired_a), "left_named_b": sum(_named(y) for y in unpaired_b),
        "word_sim_min": min(coverage, default=1.0), "word_sim_mean": float(np.mean(coverage)) if coverage else 1.0,
        "word_sim_pairs_min": min(pair_sims, default=1.0),
        "unrelated_words": sum(c < _UNRELATED_BELOW for c in coverage),
        "wn_sim_min": min(wn_sims, default=1.0), "wn_sim_mean": float(np.mean(wn_sims)) if wn_sims else 1.0,
        "wh_differs": float(form_a != form_b and "none" not in (form_a, form_b)),
        "wh_how_long_vs_how": float({form_a, form_b} == {"how", "how-long"}),
        "yes_no_differs": float((form_a == "yes-no") != (form_b == "yes-no")),
        "order_inversions": _inversions(a, b), "sandwiched_inversions": _sandwiched(a, b),
        "arrows_swapped": float(_arrows_swapped(a, b)),
        "form_a": _FORMS.index(form_a), "form_b": _FORMS.index(form_b),
        "words_only_a": len(only_a), "words_only_b": len(only_b),
        "antonym_any": sum(1 for x in only_a for y in only_b if wordnet.relation(x, y) is Relation.ANTONYM),
        "left_rarity_a": max((_rarity(wordnet, x.surface) for x in unpaired_a), default=0.0),
        "left_rarity_b": max((_rarity(wordnet, y.surface) for y in unpaired_b), default=0.0),
        "negations_a": len(a.negations), "negations_b": len(b.negations),
        "negations_differ": float(bool(a.negations) != bool(b.negations)),
        "numbers_a": len(a.numbers), "numbers_b": len(b.numbers), "numbers_shared": len(a.numbers & b.numbers),
        **{f"rule_{r}": float(rule == r) for r in RULE_REASONS}, "rule_any": float(bool(rule)),
    }
    features = np.array([row[name] for name in FEATURE_NAMES], dtype=np.float32)
    evidence = PairEvidence(tuple(x.surface for x in unpaired_a), tuple(y.surface for y in unpaired_b),
                            tuple(relations), rule)
    return features, evidence


def _named(item: Item) -> bool:
    return item.named or any(":" in key for key in item.keys)


def _cos(vectors: Mapping[str, np.ndarray], x: Item, y: Item) -> float:
    vx, vy = vectors.get(x.surface), vectors.get(y.surface)
    if vx is None or vy is None:
        return 0.0
    return float(np.dot(vx, vy))


def _inversions(a: QueryFeatures, b: QueryFeatures) -> int:
    """Pairs of shared content words that come in the opposite order on the two sides ("A to B" vs "B to A")."""
    position_b: dict[str, int] = {}
    for item in b.items[:MAX_ORDERED]:
        for key in item.keys:
            position_b.setdefault(key, item.position)
    order = [next(position_b[k] for k in sorted(item.keys) if k in position_b)
             for item in a.items[:MAX_ORDERED] if not item.keys.isdisjoint(position_b)]
    return sum(1 for i in range(len(order)) for j in range(i + 1, len(order)) if order[i] > order[j])


def _sandwiched(a: QueryFeatures, b: QueryFeatures) -> int:
    """Inverted pairs of shared words with another shared word between them on both sides: "A influence B" vs
    "B influence A" (roles swapped), unlike a phrase moved to the front ("in Python, sort a list")."""
    def positions(q: QueryFeatures) -> dict[str, int]:
        found: dict[str, int] = {}
        for item in q.items[:MAX_ORDERED]:
            for key in sorted(item.keys):
                found.setdefault(key, item.position)
        return found

    pa, pb = positions(a), positions(b)
    shared = sorted(pa.keys() & pb.keys(), key=lambda k: (pa[k], k))
    shared = [k for i, k in enumerate(shared) if i == 0 or pa[k] != pa[shared[i - 1]]]
    count = 0
    for i, x in enumerate(shared):
        for y in shared[i + 1:]:
            if pb[x] > pb[y] and any(pa[x] < pa[m] < pa[y] and pb[y] < pb[m] < pb[x] for m in shared):
                count += 1
    return count


def _words_only(q: QueryFeatures, other: QueryFeatures, wordnet: WordNet) -> list[str]:
    """Words of ``q`` (stopwords aside, fillers included: "good", "avoid") with no form in ``other``."""
    theirs = set(other.words)
    for word in other.words:
        theirs.update(wordnet.base_forms(word))
    return [w for w in dict.fromkeys(q.words) if w.isalpha() and len(w) > 2 and w not in STOPWORDS
            and w not in theirs and not set(wordnet.base_forms(w)) & theirs]


def _rarity(wordnet: WordNet, word: str) -> float:
    """1 for words WordNet never saw tagged (names, jargon), falling towards 0 for everyday words."""
    frequency = max((wordnet.frequency.get(base, 0) for base in wordnet.base_forms(word)), default=0)
    return 1.0 / (1.0 + np.log1p(frequency))


def _arrows_swapped(a: QueryFeatures, b: QueryFeatures) -> bool:
    return any((y, x) in b.arrows for x, y in a.arrows if x != y)
