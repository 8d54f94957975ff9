"""Near-miss verification: the check between "the nearest cached question is similar" and "serve its answer".

Embedding similarity cannot tell "How do I add a column?" from "How do I drop a column?" (cosine ~0.9), nor
"12 x 13" from "12 x 14". The verifier compares what the two questions actually say and rejects the hit when
they disagree on something that changes the answer. Pure Python, no model calls, tens of microseconds a pair.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from threading import Lock

from . import near_miss_rules as rules
from .judgement import Verdict
from .lexicon_index import LexiconIndex, lexicon_index
from .query_features import QueryFeatures, analyze
from .word_diff import WordDiff, diff_words

ACCEPTED = Verdict(True, "")
MAX_DIFF_ITEMS = 64  # content words a side that inspect() pairs up (diff_words is quadratic in them)


@dataclass(frozen=True)
class Inspection:
    """What the near-miss rules saw in a pair: both analysed questions, their word diff, the rule that fired."""

    a: QueryFeatures
    b: QueryFeatures
    diff: WordDiff
    reason: str


class NoVerifier:
    """Accepts every candidate: the threshold alone decides (the baseline)."""

    def verify(self, query: str, cached_query: str, similarity: float, category: str) -> Verdict:
        """Accept."""
        return ACCEPTED


@dataclass
class NearMissVerifier:
    """Rejects look-alikes whose answer differs; keeps paraphrases, typos, reorderings, abbreviations."""

    substitution: rules.SubstitutionRule = field(default_factory=rules.SubstitutionRule)
    cache_size: int = 4096  # analysed questions kept (cached questions are verified again and again)
    _lex: LexiconIndex = field(default_factory=lexicon_index, init=False, repr=False)
    _features: OrderedDict[str, QueryFeatures] = field(default_factory=OrderedDict, init=False, repr=False)
    _lock: Lock = field(default_factory=Lock, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.cache_size < 0:
            raise ValueError("verifier.cache_size must be >= 0")

    def verify(self, query: str, cached_query: str, similarity: float, category: str) -> Verdict:
        """Accept the cached answer unless the two questions differ in a way that changes the answer."""
        del similarity, category  # the same contrasts matter in every category; thresholds handle the rest
        if query == cached_query:
            return ACCEPTED
        a = self.features(query)
        b = self.features(cached_query)
        reason = self._contrast(a, b)
        if not reason:  # the word diff only when the cheap rules found nothing: it is the costly part
            reason = self._diff_contrast(a, b, diff_words(a, b, self._lex))
        return Verdict(False, reason) if reason else ACCEPTED

    def inspect(self, query: str, cached_query: str) -> Inspection:
        """Both questions analysed, their word diff (of the first MAX_DIFF_ITEMS content words a side: bounded
        work for the learned verifier's features), and the first rule that fires ("" when none does)."""
        a = self.features(query)
        b = self.features(cached_query)
        diff = diff_words(a, b, self._lex, limit=MAX_DIFF_ITEMS)
        reason = self._contrast(a, b) or self._diff_contrast(a, b, diff)
        return Inspection(a, b, diff, reason)

    def _contrast(self, a: QueryFeatures, b: QueryFeatures) -> str:
        return (
            rules.numbers_differ(a, b)
            or rules.units_differ(a, b)
            or rules.entities_differ(a, b)
            or rules.asset_named_on_one_side(a, b)
            or rules.direction_swapped(a, b)
            or rules.negation_differs(a, b, self._lex)
            or rules.antonyms_differ(a, b, self._lex)
        )

    def _diff_contrast(self, a: QueryFeatures, b: QueryFeatures, diff: WordDiff) -> str:
        return rules.names_differ(diff, self._lex) or self.substitution(a, b, diff)

    def features(self, text: str) -> QueryFeatures:
        """The analysed question, from a small LRU cache."""
        with self._lock:
            found = self._features.get(text)
            if found is not None:
                self._features.move_to_end(text)
                return found
        found = analyze(text, self._lex)
        if self.cache_size:
            with self._lock:
                self._features[text] = found
                while len(self._features) > self.cache_size:
                    self._features.popitem(last=False)
        return found


RULE_VERIFIERS: dict[str, type] = {"near-miss": NearMissVerifier, "none": NoVerifier}
