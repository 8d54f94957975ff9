"""The checks that tell a paraphrase from a look-alike: each returns a reason to reject, or "" to pass.

Every rule compares what two questions say (QueryFeatures) and fires only on a contrast that changes the
answer: a different number, a different named thing, a reversed direction, a negation, an antonym, or one
content word put in place of another. Additions (a filler word, a language named on one side only) pass.
"""

from __future__ import annotations

from dataclasses import dataclass

from .lexicon import (
    COMMON_WORDS,
    FILLERS,
    GENERIC_WORDS,
    NEGATING_PREFIXES,
    NEGATING_SUFFIXES,
    NEGATIVE_VERBS,
    STOPWORDS,
)
from .lexicon_entities import MONTH_SEASONS
from .lexicon_index import LexiconIndex
from .query_features import Item, QueryFeatures
from .text_normalize import is_typo_of, stem
from .word_diff import WordDiff

_INCIDENTAL_NUMBERS = frozenset({0.0, 1.0})  # "= 0", "one dollar" on one side only: the question is the same
_DATE_CLASSES = frozenset({"month", "weekday", "holiday", "season", "time"})
_WIDENING = frozenset({"including", "include", "includes", "inclusive", "counting", "even", "plus", "also"})
_GENERIC_KEYS = GENERIC_WORDS | frozenset(stem(word) for word in GENERIC_WORDS)
_ONE_SIDED_TIMES = frozenset({"yesterday", "tomorrow"})


def numbers_differ(a: QueryFeatures, b: QueryFeatures) -> str:
    """A number on one side that the other lacks (12 x 13 vs 12 x 14; "300 km in 4 hours" vs a general question).

    A number only one side names still changes the answer: the specific question's answer is wrong for the
    general one and the other way round.
    """
    extra_a = a.numbers - b.numbers - b.weak_numbers
    extra_b = b.numbers - a.numbers - a.weak_numbers
    if extra_a and extra_b:
        return "number-mismatch"  # each names a number the other does not: 0 and 1 count like any other
    if (extra_a or extra_b) - _INCIDENTAL_NUMBERS:
        return "number-mismatch"
    if a.ordinals - b.ordinals and b.ordinals - a.ordinals:
        return "number-mismatch"
    signs_a = dict(a.signed)
    if any(signs_a.get(value, sign) != sign for value, sign in b.signed):
        return "number-mismatch"
    return ""


def units_differ(a: QueryFeatures, b: QueryFeatures) -> str:
    """The same number measured in different units ("10 kg in lb" vs "10 lb in kg")."""
    bound_a: dict[float, set[str]] = {}
    for value, unit in a.bindings:
        bound_a.setdefault(value, set()).add(unit)
    bound_b: dict[float, set[str]] = {}
    for value, unit in b.bindings:
        bound_b.setdefault(value, set()).add(unit)
    for value, units in bound_a.items():
        if value in bound_b and units.isdisjoint(bound_b[value]):
            classes = {unit.split(":")[0] for unit in units}
            same_names = all(set(a.entities.get(cls, ())) == set(b.entities.get(cls, ())) for cls in classes)
            return "direction-swap" if same_names else "unit-mismatch"
    return ""


def entities_differ(a: QueryFeatures, b: QueryFeatures) -> str:
    """A named thing replaced by another of its class (Python vs Rust, euro vs yen, March vs May)."""
    entities_b = _with_seasons(b)
    for cls, names_a in _with_seasons(a).items():
        names_b = entities_b.get(cls)
        if names_b is None:
            continue
        if set(names_a) - set(names_b) and set(names_b) - set(names_a):
            if cls == "unit":
                return "unit-mismatch"
            return "date-mismatch" if cls in _DATE_CLASSES else "entity-mismatch"
    times_a = set(a.entities.get("time", ())) & _ONE_SIDED_TIMES
    times_b = set(b.entities.get("time", ())) & _ONE_SIDED_TIMES
    if times_a != times_b:
        return "date-mismatch"  # "yesterday" is a different question from "now" or no time at all
    return ""


def _with_seasons(q: QueryFeatures) -> dict[str, tuple[str, ...]]:
    """Entities, with the season of each month named ("July" is a summer question)."""
    months = q.entities.get("month", ())
    if not months:
        return q.entities
    seasons = tuple(dict.fromkeys(q.entities.get("season", ()) + tuple(MONTH_SEASONS[m] for m in months)))
    return {**q.entities, "season": seasons}


def names_differ(diff: WordDiff, lex: LexiconIndex) -> str:
    """Each question names a thing the other does not mention at all (Cardano vs platinum, Hamlet vs Faust)."""
    if any(_is_name(item, lex) for item in diff.only_a) and any(_is_name(item, lex) for item in diff.only_b):
        return "entity-mismatch"
    return ""


_ASSETS = ("currency:", "commodity:", "company:", "index:")  # what a price question is about


def asset_named_on_one_side(a: QueryFeatures, b: QueryFeatures) -> str:
    """One side asks about a priced thing (AMD, the Hang Seng, copper), the other names none ("today's worst
    stocks")."""
    if _names_asset(a) != _names_asset(b):
        return "entity-mismatch"
    return ""


def _names_asset(q: QueryFeatures) -> bool:
    """An alias that is also an everyday word ("Who won the cup?") names an asset only beside another one."""
    return any(_is_asset(item) and item.surface not in COMMON_WORDS for item in q.items)


def _is_asset(item: Item) -> bool:
    return any(key.startswith(_ASSETS) for key in item.keys) and not any(key.startswith("unit:") for key in item.keys)


def _is_name(item: Item, lex: LexiconIndex) -> bool:
    """A proper name: a priced thing from the lexicons, or a topic word written with a capital letter."""
    if _is_asset(item):
        return True
    if not item.named or item.surface in _GENERIC_KEYS or item.surface in STOPWORDS or item.surface in FILLERS:
        return False
    return True


def direction_swapped(a: QueryFeatures, b: QueryFeatures) -> str:
    """The same two things in the opposite order (USD to EUR vs EUR to USD, array to string vs string to array)."""
    for cls, (source, target) in a.directions.items():
        if b.directions.get(cls) == (target, source):
            return "direction-swap"
    for x, y in a.arrows:
        if (y, x) in b.arrows and (x, y) not in b.arrows and (y, x) not in a.arrows:
            return "direction-swap"
    return ""


def negation_differs(a: QueryFeatures, b: QueryFeatures, lex: LexiconIndex) -> str:
    """One side negates a word the other asserts ("not executable" vs "executable", "unset" vs "set")."""
    evidence_a = _negation_evidence(a, b, lex)
    evidence_b = _negation_evidence(b, a, lex)
    if evidence_a and not evidence_b and not _negative(b, lex):
        return "negation"
    if evidence_b and not evidence_a and not _negative(a, lex):
        return "negation"
    return ""


def _negative(q: QueryFeatures, lex: LexiconIndex) -> bool:
    """Whether the question says "not" anywhere, with a negator or a verb of removal."""
    return (bool(q.negations) or any(word in NEGATIVE_VERBS for word in q.words + q.canonical)
            or any(key in NEGATIVE_VERBS for item in q.items for key in item.keys))


def _negation_evidence(a: QueryFeatures, b: QueryFeatures, lex: LexiconIndex) -> bool:
    plain_b = b.plain_keys
    if any(_asserted(key, plain_b) for scope in a.negations for key in scope):
        return True
    words_b = set(b.words)
    for item in a.items:
        word = item.surface
        if item.negated or " " in word or word in words_b:
            continue
        for prefix in NEGATING_PREFIXES:
            rest = word[len(prefix):]
            shortest = 3 if prefix in ("un", "non") else 5
            if word.startswith(prefix) and len(rest) >= shortest and lex.canonical(rest) in plain_b:
                return True
        for suffix in NEGATING_SUFFIXES:
            rest = word[: -len(suffix)]
            if word.endswith(suffix) and len(rest) >= 3 and lex.canonical(rest) in plain_b:
                return True
    return False


def _asserted(key: str, plain: frozenset[str]) -> bool:
    """Whether key, or a typo or longer form of it, is among the other question's plain words."""
    if key in plain:
        return True
    return any(is_typo_of(key, other) or (min(len(key), len(other)) >= 5 and (key.startswith(other)
               or other.startswith(key))) for other in plain)


def antonyms_differ(a: QueryFeatures, b: QueryFeatures, lex: LexiconIndex) -> str:
    """Opposite poles of one antonym pair (starts/ends, ascending/descending, add/remove, min/max)."""
    for pair, pole in a.poles:
        if (pair, 1 - pole) in b.poles and (pair, 1 - pole) not in a.poles and (pair, pole) not in b.poles:
            return "antonym"
    for first, second in ((a, b), (b, a)):
        if "season" in second.entities or "month" in second.entities:
            continue  # "hot" and "in July" narrow alike
        if any(word in _WIDENING for word in first.words):
            continue  # "including cold deserts" widens the question, it does not narrow it
        for pair, _pole in first.poles:
            if pair in lex.scope_pairs and (pair, 0) not in second.poles and (pair, 1) not in second.poles:
                return "scope-change"
    return ""


@dataclass(frozen=True)
class SubstitutionRule:
    """One topic word put in place of another inside an otherwise shared question (dog vs cat names).

    Fires when each side keeps a topic slot (adjacent unmatched words, generic words aside) that the other
    lacks, and the shared frame is large next to the difference: a paraphrase rewords much of a question,
    a look-alike swaps one slot and keeps the rest.
    """

    max_slots: int = 2  # at most this many swapped slots per side
    min_shared: int = 1  # matched content words the two questions must share
    min_shared_fraction: float = 0.5  # shared words / content words of the shorter question

    def __post_init__(self) -> None:
        if self.max_slots < 1:
            raise ValueError("substitution.max_slots must be >= 1")
        if not 0.0 <= self.min_shared_fraction <= 1.0:
            raise ValueError("substitution.min_shared_fraction must be in [0, 1]")

    align: str = "both"  # slot neighbours that must coincide: "either", "both", "none"

    def __call__(self, a: QueryFeatures, b: QueryFeatures, diff: WordDiff) -> str:
        slots_a = _topic_slots(diff.only_a)
        slots_b = _topic_slots(diff.only_b)
        if not slots_a or not slots_b or len(slots_a) > self.max_slots or len(slots_b) > self.max_slots:
            return ""
        shorter = diff.matched + min(len(diff.only_a), len(diff.only_b))
        if diff.matched < self.min_shared or diff.matched / shorter < self.min_shared_fraction:
            return ""
        if self.align != "none" and not any(
            _aligned(a, slot_a, b, slot_b, self.align == "both") for slot_a in slots_a for slot_b in slots_b
        ):
            return ""
        return "substitution"


def _aligned(a: QueryFeatures, slot_a: list[Item], b: QueryFeatures, slot_b: list[Item], both: bool) -> bool:
    """Whether two slots sit in the same place of the shared frame (same word before or after them)."""
    before_a = a.canonical[slot_a[0].position - 1] if slot_a[0].position > 0 else "^"
    before_b = b.canonical[slot_b[0].position - 1] if slot_b[0].position > 0 else "^"
    after_a = a.canonical[slot_a[-1].end] if slot_a[-1].end < len(a.words) else "$"
    after_b = b.canonical[slot_b[-1].end] if slot_b[-1].end < len(b.words) else "$"
    if both:
        return before_a == before_b and after_a == after_b
    return before_a == before_b or after_a == after_b


def _topic_slots(items: tuple[Item, ...]) -> list[list[Item]]:
    """Unmatched topic words grouped into runs of adjacent words ("don quixote" is one slot)."""
    slots: list[list[Item]] = []
    for item in sorted(items, key=lambda found: found.position):
        if item.surface in _GENERIC_KEYS or not _GENERIC_KEYS.isdisjoint(item.keys):
            continue
        if len(item.surface) >= 6 and item.surface.endswith(("ly", "ley")):
            continue  # manner adverbs: "gently", "respectfully"
        if any(key.startswith("time:") for key in item.keys):
            continue  # "now", "currently": when, not what
        if slots and item.position <= slots[-1][-1].end + 1:
            slots[-1].append(item)
        else:
            slots.append([item])
    return slots
