"""The learned verifier: a calibrated probability that one answer serves two questions, and a bar per category
set for a target precision. The near-miss rules, WordNet and word vectors supply features; the model decides.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from threading import Lock

import numpy as np

from .judgement import Judgement
from .pair_features import FEATURE_NAMES, PairEvidence, WordVectors, pair_features
from .pair_model import PairModel
from .verifier import NearMissVerifier
from .wordnet import WordNet

DEFAULT_TARGET_PRECISION = 0.98
MAX_BAR = 0.999  # auto-tightening stops here: above it nothing would be served

_CONTRACTIONS = {"'s": " is", "'re": " are", "'m": " am", "n't": " not", "'ll": " will", "'ve": " have",
                 "'d": " would"}
_WORD = re.compile(r"[^\W_]+", re.UNICODE)
# Ways to open a how-to question that ask the same thing, and words of politeness that ask nothing: a small rule
# for what neither WordNet nor the model holds (they are function words, which both ignore or weigh wrongly).
_HOW_TO = ("how do i", "how can i", "how should i", "how would i", "how could i", "how to", "how does one",
           "what is the best way to", "what is the way to", "what is the easiest way to", "whats the best way to")
_POLITE_OPENINGS = ("please", "pls", "plz", "hi", "hello", "hey", "quick question", "can you tell me",
                    "could you tell me", "do you know", "i was wondering", "i want to know")
_POLITE_ENDINGS = ("please", "pls", "plz", "thanks", "thank you", "thx")


def same_wording_key(text: str) -> tuple[str, ...]:
    """The words of a question with case, punctuation, contractions, politeness and the how-to opening
    normalized: equal keys ask the same thing."""
    lowered = text.lower().replace("\u2019", "'")
    lowered = lowered.replace("can't", "can not").replace("won't", "will not")
    for short, long in _CONTRACTIONS.items():
        lowered = lowered.replace(short, long)
    words = " ".join(_WORD.findall(lowered))
    changed = True
    while changed:
        changed = False
        for opening in _POLITE_OPENINGS:
            if words.startswith(opening + " "):
                words, changed = words[len(opening) + 1:], True
        for ending in _POLITE_ENDINGS:
            if words.endswith(" " + ending):
                words, changed = words[: -len(ending) - 1], True
    for opening in _HOW_TO:
        if words.startswith(opening + " "):
            words = "how-to " + words[len(opening) + 1:]
            break
    return tuple(words.split())


@dataclass
class LearnedVerifier:
    """``judge(query, candidates, category)`` scores every candidate of one lookup in one batch."""

    wordnet: WordNet
    model: PairModel
    word_vectors: WordVectors
    target_precision: Callable[[str], float] = field(default=lambda category: DEFAULT_TARGET_PRECISION)
    # The lowest target the load policy may relax a category to at full upstream pressure (None: no relaxation).
    min_target_precision: Callable[[str], float | None] = field(default=lambda category: None)
    rules: NearMissVerifier = field(default_factory=NearMissVerifier)
    _raised: dict[str, float] = field(default_factory=dict, init=False, repr=False)
    _bars: dict[tuple[str, float], float] = field(default_factory=dict, init=False, repr=False)
    _lock: Lock = field(default_factory=Lock, init=False, repr=False)

    def target(self, category: str, pressure: float = 0.0) -> float:
        """The category's target precision, relaxed linearly towards its floor as upstream pressure rises."""
        target = self.target_precision(category)
        floor = self.min_target_precision(category)
        if floor is None or floor >= target:
            return target
        return target - max(0.0, min(1.0, pressure)) * (target - floor)

    def bar(self, category: str, pressure: float = 0.0) -> float:
        """The probability a candidate of ``category`` needs: calibrated for its (load-relaxed) target, plus any
        auto-tightening."""
        target = round(self.target(category, pressure), 4)
        key = (category, target)
        base = self._bars.get(key)
        if base is None:
            base = self._bars[key] = self.model.bar(category, target)
        return min(MAX_BAR, max(base, base + self._raised.get(category, 0.0)))

    def raise_bar(self, category: str, amount: float) -> float:
        """Move ``category``'s bar by ``amount`` (negative lowers it back, never under the calibrated bar)."""
        with self._lock:
            self._raised[category] = max(0.0, self._raised.get(category, 0.0) + amount)
            return self._raised[category]

    def raised(self) -> dict[str, float]:
        return dict(self._raised)

    def judge(self, query: str, candidates: Sequence[tuple[str, float]], category: str,
              explain: bool = False, pressure: float = 0.0) -> list[Judgement]:
        """One judgement per (cached question, similarity), in order; the same wording (same_wording_key) is
        served with probability 1, without the model."""
        bar = self.bar(category, pressure)
        same = Judgement(1.0, bar, "")
        rows: list[np.ndarray] = []
        extras: list[tuple[str, PairEvidence]] = []
        slots: list[int] = []
        out: list[Judgement | None] = []
        wording = same_wording_key(query)
        for cached, similarity in candidates:
            if cached == query or same_wording_key(cached) == wording:
                out.append(same)
                continue
            seen = self.rules.inspect(query, cached)
            row, evidence = pair_features(seen.a, seen.b, seen.diff, similarity, seen.reason, self.wordnet,
                                          self.word_vectors)
            slots.append(len(out))
            out.append(None)
            rows.append(row)
            extras.append((seen.reason, evidence))
        if rows:
            probabilities = self.model.probability(np.stack(rows))
            for slot, p, row, (rule, evidence) in zip(slots, probabilities, rows, extras, strict=True):
                out[slot] = Judgement(float(p), bar, rule, evidence if explain else None,
                                      dict(zip(FEATURE_NAMES, map(float, row), strict=True)) if explain else {})
        return [j if j is not None else same for j in out]
