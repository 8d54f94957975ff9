"""Simulates the semantic cache on labelled intents: who is cached, what each query would be served.

Used by eval_cache_precision.py. A query is served the nearest cached question's answer when the similarity
passes its category's threshold and the verifier accepts the pair; the answer is right when both questions
belong to one intent.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DATASET_CATEGORY = {"finance": "volatile"}  # the dev set's names -> cache category names


@dataclass(frozen=True)
class Intent:
    """One labelled question with its paraphrases (all share one answer)."""

    intent_id: str
    category: str
    sibling: str | None
    paraphrases: tuple[str, ...]


def load_intents(path: Path) -> list[Intent]:
    """Read a JSONL file of intents; sibling links are made symmetric."""
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    siblings = {row["intent_id"]: row.get("sibling_of") for row in rows}
    for intent_id, sibling in list(siblings.items()):
        if sibling and not siblings.get(sibling):
            siblings[sibling] = intent_id
    return [
        Intent(
            intent_id=row["intent_id"],
            category=DATASET_CATEGORY.get(row["category"], row["category"]),
            sibling=siblings[row["intent_id"]],
            paraphrases=tuple(row["paraphrases"]),
        )
        for row in rows
    ]


@dataclass(frozen=True)
class Outcome:
    """What each query met, one row per query per protocol run: its k nearest cached questions, best first."""

    query: np.ndarray  # (n,) index into the flat list of texts
    intent: np.ndarray  # (n,) index of the query's intent
    neighbours: np.ndarray  # (n, k) indices of the nearest cached texts
    similarities: np.ndarray  # (n, k)
    correct: np.ndarray  # (n, k) the neighbour belongs to the query's intent
    trap: np.ndarray  # (n, k) the neighbour belongs to the query's sibling
    possible: np.ndarray  # (n,) the query's own intent is cached
    sibling_cached: np.ndarray  # (n,)

    def __len__(self) -> int:
        return len(self.query)


@dataclass(frozen=True)
class Candidate:
    """Per query, the candidate the cache would serve at a low enough threshold: the first one accepted."""

    similarity: np.ndarray  # (n,) its similarity; -inf where no candidate was accepted
    correct: np.ndarray  # (n,)
    trap: np.ndarray  # (n,)


def first_accepted(outcome: Outcome, accepted: np.ndarray) -> Candidate:
    """Candidates are tried best first; the first the verifier accepts is served if it passes the threshold.

    Thresholds cut the candidate list at a similarity, so the served one is the first accepted candidate
    whenever its similarity reaches the threshold, and nothing otherwise.
    """
    any_accepted = accepted.any(axis=1)
    first = accepted.argmax(axis=1)
    rows = np.arange(len(outcome))
    return Candidate(
        similarity=np.where(any_accepted, outcome.similarities[rows, first], -np.inf),
        correct=any_accepted & outcome.correct[rows, first],
        trap=any_accepted & outcome.trap[rows, first],
    )


def cache_runs(intents: list[Intent], protocol: str) -> Iterator[tuple[set[tuple[int, int]], list[tuple[int, int]]]]:
    """(cached (intent, paraphrase) pairs, queries) for each run of a protocol.

    rotate: paraphrase k of every intent is cached, the other paraphrases are queries (k = 0..n-1).
    half: as rotate, but of each sibling pair only one member is cached (each member in turn); all
        paraphrases of the uncached member are queries that should miss.
    """
    width = min(len(intent.paraphrases) for intent in intents)
    index = {intent.intent_id: i for i, intent in enumerate(intents)}
    pairs = sorted({tuple(sorted((i, index[it.sibling]))) for i, it in enumerate(intents)
                    if it.sibling in index})
    if protocol not in ("rotate", "half"):
        raise ValueError(f"protocol must be 'rotate' or 'half', not {protocol!r}")
    sides = (0, 1) if protocol == "half" else (None,)
    for k in range(width):
        for side in sides:
            left_out = {pair[side] for pair in pairs} if side is not None else set()
            cached = {(i, k) for i in range(len(intents)) if i not in left_out}
            queries = [(i, p) for i, intent in enumerate(intents) for p in range(len(intent.paraphrases))
                       if (i, p) not in cached]
            yield cached, queries


def simulate(intents: list[Intent], vectors: np.ndarray, offsets: list[int], protocol: str,
             candidates: int = 1) -> Outcome:
    """The nearest cached questions of every query in every run of the protocol."""
    index = {intent.intent_id: i for i, intent in enumerate(intents)}
    sibling = np.array([index.get(intent.sibling, -1) if intent.sibling else -1 for intent in intents])
    owner = np.concatenate([[i] * len(intent.paraphrases) for i, intent in enumerate(intents)])
    columns: dict[str, list[np.ndarray]] = {name: [] for name in Outcome.__dataclass_fields__}
    for cached, queries in cache_runs(intents, protocol):
        cached_rows = np.array(sorted(offsets[i] + p for i, p in cached))
        query_rows = np.array([offsets[i] + p for i, p in queries])
        similarities = vectors[query_rows] @ vectors[cached_rows].T
        best = np.argsort(-similarities, axis=1)[:, :candidates]
        neighbours = cached_rows[best]
        query_intent = owner[query_rows]
        cached_intents = {i for i, _ in cached}
        columns["query"].append(query_rows)
        columns["intent"].append(query_intent)
        columns["neighbours"].append(neighbours)
        columns["similarities"].append(np.take_along_axis(similarities, best, axis=1))
        columns["correct"].append(owner[neighbours] == query_intent[:, None])
        columns["trap"].append(owner[neighbours] == sibling[query_intent][:, None])
        columns["possible"].append(np.array([i in cached_intents for i in query_intent]))
        columns["sibling_cached"].append(np.array([sibling[i] in cached_intents for i in query_intent]))
    return Outcome(**{name: np.concatenate(parts) for name, parts in columns.items()})


def group_folds(intents: list[Intent], folds: int, seed: int) -> np.ndarray:
    """Fold number of each intent: sibling pairs share a fold, folds balanced per category."""
    index = {intent.intent_id: i for i, intent in enumerate(intents)}
    groups: dict[str, list[list[int]]] = {}
    seen: set[int] = set()
    for i, intent in enumerate(intents):
        if i in seen:
            continue
        group = [i] + ([index[intent.sibling]] if intent.sibling in index else [])
        seen.update(group)
        groups.setdefault(intent.category, []).append(group)
    rng = random.Random(seed)
    fold_of = np.zeros(len(intents), dtype=int)
    start = 0
    for category in sorted(groups):
        members = groups[category]
        rng.shuffle(members)
        for n, group in enumerate(members):
            fold_of[group] = (start + n) % folds
        start += len(members)
    return fold_of


@dataclass(frozen=True)
class Score:
    """Counts over a set of queries, and the rates derived from them."""

    queries: int
    served: int
    right: int
    traps: int
    possible: int
    sibling_cached: int

    @property
    def precision(self) -> float:
        return self.right / self.served if self.served else 1.0

    @property
    def recall(self) -> float:
        return self.right / self.possible if self.possible else 0.0

    @property
    def trap_rate(self) -> float:
        return self.traps / self.sibling_cached if self.sibling_cached else 0.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    def __add__(self, other: Score) -> Score:
        return Score(*(getattr(self, f) + getattr(other, f) for f in Score.__dataclass_fields__))


def score(outcome: Outcome, chosen: Candidate, served: np.ndarray, mask: np.ndarray) -> Score:
    """Count served, right and trap answers among the queries selected by mask."""
    s = served & mask
    return Score(
        queries=int(mask.sum()),
        served=int(s.sum()),
        right=int((s & chosen.correct).sum()),
        traps=int((s & chosen.trap).sum()),
        possible=int((mask & outcome.possible).sum()),
        sibling_cached=int((mask & outcome.sibling_cached).sum()),
    )


THRESHOLD_GRID = np.round(np.arange(0.30, 1.0001, 0.01), 2)


def best_threshold(outcome: Outcome, chosen: Candidate, mask: np.ndarray, objective: Callable[[Score], tuple]) -> float:
    """The grid threshold that maximizes objective on the masked queries (the lowest one among ties)."""
    scored = [(objective(score(outcome, chosen, chosen.similarity >= t, mask)), -t) for t in THRESHOLD_GRID]
    return float(-max(scored)[1])


def recall_at_precision(target: float) -> Callable[[Score], tuple]:
    """Objective: highest recall with precision >= target (then highest precision)."""
    return lambda s: (s.precision >= target, s.recall if s.precision >= target else 0.0, s.precision)


def f1_objective(s: Score) -> tuple:
    """Objective: F1 of precision and recall."""
    return (s.f1,)
