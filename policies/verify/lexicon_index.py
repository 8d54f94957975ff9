"""The word lists compiled into lookup tables: phrase tables, canonical words, antonym poles, a typo index.

Built once per verifier (about 10 ms) and never changed afterwards.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache

from . import lexicon as lx
from .lexicon_entities import CASE_SENSITIVE, ENTITY_CLASSES, NUMBER_BOUND_UNITS
from .text_normalize import is_typo_of, stem, tokenize

Phrase = tuple[str, ...]


def _words(spelling: str) -> Phrase:
    """A lexicon spelling tokenized exactly as question text is."""
    return tuple(token for token, _ in tokenize(spelling))


@dataclass(frozen=True)
class LexiconIndex:
    """Read-only lookup tables over the lexicons."""

    entities: dict[Phrase, tuple[tuple[str, str, bool], ...]]  # phrase -> (class, canonical, case-sensitive)
    entity_starts: dict[str, int]  # first word of an entity phrase -> words in the longest such phrase
    bound_units: dict[str, str]  # single-letter unit after a number -> canonical unit
    synonyms: dict[Phrase, str]  # phrase -> canonical word
    synonym_starts: dict[str, int]  # first word of a multi-word synonym -> words in the longest one
    poles: dict[str, tuple[tuple[int, int], ...]]  # canonical word -> (antonym pair, pole)
    scope_pairs: frozenset[int]  # antonym pairs where naming one pole alone narrows the question
    known: frozenset[str]  # every single word the lexicons know: never "corrected" as a typo
    typo_index: dict[str, tuple[str, ...]]  # one-deletion variant -> known words

    def canonical(self, word: str) -> str:
        """The canonical spelling of one word (synonyms merged, then stemmed)."""
        found = self.synonyms.get((word,))
        if found is not None:
            return found
        stemmed = stem(word)
        return self.synonyms.get((stemmed,), stemmed)

    def correct(self, word: str) -> str:
        """The known word this unknown word misspells, when exactly one is close enough; else the word."""
        if word in self.known or len(word) < 4 or not word.isalpha() or stem(word) in self.known:
            return word
        candidates: set[str] = set()
        for variant in _deletions(word) | {word}:
            candidates.update(self.typo_index.get(variant, ()))
        close = [c for c in candidates if is_typo_of(word, c)]
        if len(close) == 1:
            return close[0]
        return word


def _starts(phrases: Iterable[tuple[str, ...]]) -> dict[str, int]:
    starts: dict[str, int] = {}
    for phrase in phrases:
        starts[phrase[0]] = max(starts.get(phrase[0], 0), len(phrase))
    return starts


def _deletions(word: str) -> set[str]:
    return {word[:i] + word[i + 1:] for i in range(len(word))}


@cache
def lexicon_index() -> LexiconIndex:
    """Compile the lexicons (cached: the result is immutable)."""
    entities: dict[Phrase, list[tuple[str, str, bool]]] = {}
    for cls, table in ENTITY_CLASSES.items():
        sensitive = CASE_SENSITIVE.get(cls, frozenset())
        for spelling, canonical in table.items():
            words = _words(spelling)
            if words:
                entities.setdefault(words, []).append((cls, canonical, spelling in sensitive))
    synonyms: dict[Phrase, str] = {}
    for group in lx.SYNONYM_GROUPS:
        for spelling in group:
            synonyms.setdefault(_words(spelling), group[0])
    for phrase in lx.PHRASES:
        synonyms.setdefault(_words(phrase), phrase.replace(" ", "_"))
    for words, canonical in list(synonyms.items()):
        if len(words) == 1:
            synonyms.setdefault((stem(words[0]),), canonical)
    index = LexiconIndex(
        entities={phrase: tuple(found) for phrase, found in entities.items()},
        entity_starts=_starts(entities),
        bound_units={spelling: canonical for spelling, canonical in NUMBER_BOUND_UNITS.items()},
        synonyms=synonyms,
        synonym_starts=_starts(synonyms),
        poles={},
        scope_pairs=frozenset(),
        known=frozenset(),
        typo_index={},
    )
    poles: dict[str, set[tuple[int, int]]] = {}
    for pair_number, pair in enumerate(lx.ANTONYM_PAIRS):
        for pole_number, pole in enumerate(pair):
            for spelling in pole:
                words = _words(spelling)
                key = synonyms.get(words) if len(words) > 1 else index.canonical(words[0])
                poles.setdefault(key or "_".join(words), set()).add((pair_number, pole_number))
    known_words: set[str] = set(lx.STOPWORDS | lx.FILLERS | lx.NEGATORS)
    known_words.update(lx.CARDINALS, lx.MULTIPLIERS, lx.IMPLIED_NUMBERS, lx.WEAK_NUMBER_WORDS, lx.ORDINALS)
    known_words.update(lx.SPOKEN_OPERATORS, lx.COMMON_WORDS, lx.GENERIC_WORDS)
    for phrase_words in list(entities) + list(synonyms):
        known_words.update(phrase_words)
    for pair in lx.ANTONYM_PAIRS:
        for pole in pair:
            for spelling in pole:
                known_words.update(_words(spelling))
    known = frozenset(word for word in known_words if word.isalpha())
    typo_index: dict[str, list[str]] = {}
    for word in known:
        if len(word) >= 3:
            for variant in _deletions(word) | {word}:
                typo_index.setdefault(variant, []).append(word)
    return LexiconIndex(
        entities=index.entities,
        entity_starts=index.entity_starts,
        bound_units=index.bound_units,
        synonyms=synonyms,
        synonym_starts=_starts({phrase: word for phrase, word in synonyms.items() if len(phrase) > 1}),
        poles={key: tuple(sorted(found)) for key, found in poles.items()},
        scope_pairs=frozenset(n for n, pair in enumerate(lx.ANTONYM_PAIRS) if pair[0][0] in lx.SCOPE_PAIRS),
        known=known,
        typo_index={variant: tuple(words) for variant, words in typo_index.items()},
    )
