"""What a question says, in the terms the near-miss rules compare: numbers, entities, negations, words.

analyze() turns one question into a QueryFeatures; the rules in near_miss_rules compare two of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from . import lexicon as lx
from .lexicon_index import LexiconIndex
from .text_normalize import parse_number, stem, tokenize

_OPERAND_END = frozenset({"x", "y", "z", "n", ")", "^"})
_SIGNS = frozenset({"+", "-"})
_CONNECTORS = frozenset({"to", "into", "->"})
_NEGATION_SCOPE = 3  # words after a negator that it negates
_ARROW_WINDOW = 4  # words before "to"/"into" in which the source of a direction is looked for
_ARROW_ITEMS = 3  # content words after "to"/"into" that may be its target
_ARROW_ITEMS_BEFORE = 2  # content words before it that may be its source ("array items into ...")
_GLUED_SUFFIXES = ("with", "of", "by", "for")
_ORDINAL_SUFFIXES = frozenset({"st", "nd", "rd", "th"})
Span = tuple[int, int, str, str]  # (start, end, class, canonical) of an entity phrase in the words


@dataclass(frozen=True)
class Item:
    """One content word (or entity phrase) of a question."""

    surface: str  # as written, typos corrected where sure
    keys: frozenset[str]  # canonical forms: two items with a common key mean the same thing
    position: int  # index of its first word
    end: int  # index past its last word
    negated: bool
    contrasted: bool = False  # after "instead of": its antonym pole is flipped, it is not negated
    named: bool = False  # written with a capital letter mid-sentence


@dataclass(frozen=True)
class QueryFeatures:
    """Everything the near-miss rules compare, extracted once per question."""

    text: str
    words: tuple[str, ...]  # every token, lower case, typos corrected
    canonical: tuple[str, ...]  # the same tokens with synonyms merged ("biggest" -> "largest")
    items: tuple[Item, ...]
    numbers: frozenset[float]  # written numbers and number words
    weak_numbers: frozenset[float]  # implied by words such as "squared", "cube", "third"
    ordinals: frozenset[int]
    signed: frozenset[tuple[float, str]]  # (number, "+" or "-") inside arithmetic
    bindings: frozenset[tuple[float, str]]  # (number, unit or currency it measures)
    entities: dict[str, tuple[str, ...]]  # class -> canonical names in order of appearance
    directions: dict[str, tuple[str, str]]  # class -> (from, to) when the question converts between two
    poles: frozenset[tuple[int, int]]  # antonym (pair, pole) the question takes
    negations: tuple[tuple[str, ...], ...] = field(default=())  # keys of words inside each negation's scope
    arrows: frozenset[tuple[str, str]] = field(default=frozenset())  # (x, y) for "x to y", "x into y"

    @property
    def keys(self) -> frozenset[str]:
        return frozenset(key for item in self.items for key in item.keys)

    @property
    def plain_keys(self) -> frozenset[str]:
        return frozenset(key for item in self.items if not item.negated for key in item.keys)


def analyze(text: str, lex: LexiconIndex) -> QueryFeatures:
    """Extract the comparable features of one question."""
    tokens = tokenize(text)
    words, names = _split_compounds([lex.correct(word) if not is_name else word for word, is_name in tokens],
                                    [is_name for _, is_name in tokens], lex)
    words, names, numbers, weak, ordinals, number_at = _read_numbers(words, names)
    signed = _signs(words, number_at)
    spans = _entity_spans(words, names, lex)
    for start, end, _, _ in spans:
        for position in range(start, end):
            value = number_at.pop(position, None)  # "base 16", "FTSE 100": part of a name, not a number
            if value is not None and value not in number_at.values():
                numbers.discard(value)
    spans += [(i, i + 1, "label", word) for i, word in enumerate(words)
              if names[i] and len(word) == 1 and word.isalpha() and word != "i"]  # "class A", "vitamin D"
    entities: dict[str, list[str]] = {}
    for _, _, cls, name in sorted(spans, key=lambda span: span[0]):
        if name not in entities.setdefault(cls, []):
            entities[cls].append(name)
    bindings = _bindings(words, number_at, spans, lex)
    canonical = [lex.canonical(word) for word in words]
    items, negations = _content_items(words, canonical, names, spans, number_at, lex)
    return QueryFeatures(
        text=text,
        words=tuple(words),
        canonical=tuple(canonical),
        items=tuple(items),
        numbers=frozenset(numbers),
        weak_numbers=frozenset(weak),
        ordinals=frozenset(ordinals),
        signed=frozenset(signed),
        bindings=frozenset(bindings),
        entities={cls: tuple(found) for cls, found in entities.items()},
        directions=_directions(words, spans, bindings),
        poles=frozenset(_poles(words, canonical, items, lex)),
        negations=tuple(negations),
        arrows=frozenset(_arrows(words, items)),
    )


def _poles(words: list[str], canonical: list[str], items: list[Item], lex: LexiconIndex) -> set[tuple[int, int]]:
    """The antonym poles a question takes; a negated word takes the opposite pole ("not hot" is cold)."""
    item_at = {item.position: item for item in items}
    poles: set[tuple[int, int]] = set()
    i = 0
    while i < len(words):
        item = item_at.get(i)
        keys = item.keys if item is not None else {canonical[i], words[i]}
        flip = item is not None and (item.negated or item.contrasted)
        for key in keys:
            for pair, pole in lex.poles.get(key, ()):
                poles.add((pair, 1 - pole) if flip else (pair, pole))
        i = item.end if item is not None else i + 1
    return poles


def _read_numbers(
    words: list[str], names: list[bool]
) -> tuple[list[str], list[bool], set[float], set[float], set[int], dict[int, float]]:
    """Numbers in digits or words; spoken arithmetic rewritten to symbols; returns the rewritten words too."""
    out: list[str] = []
    out_names: list[bool] = []
    number_at: dict[int, float] = {}
    numbers: set[float] = set()
    weak: set[float] = set()
    ordinals: set[int] = set()
    i = 0
    while i < len(words):
        word = words[i]
        value = parse_number(word)
        if value is not None:
            nxt = words[i + 1] if i + 1 < len(words) else ""
            if nxt in _ORDINAL_SUFFIXES and value == int(value):
                ordinals.add(int(value))
                out.append(word)
                out_names.append(False)
                i += 2
                continue
            number_at[len(out)] = value
            numbers.add(value)
            out.append(word)
            out_names.append(False)
            i += 1
            continue
        if word in lx.CARDINALS or (word in lx.MULTIPLIERS and out and out[-1] in ("a", "one")):
            total, current, j = 0, 0, i
            while j < len(words):
                w = words[j]
                if w in lx.CARDINALS:
                    current += lx.CARDINALS[w]
                elif w in lx.MULTIPLIERS:
                    scale = lx.MULTIPLIERS[w]
                    if scale >= 1000:
                        total += max(current, 1) * scale
                        current = 0
                    else:
                        current = max(current, 1) * scale
                elif w == "and" and words[j - 1] in lx.MULTIPLIERS and words[j + 1:j + 2] and \
                        words[j + 1] in lx.CARDINALS:
                    pass  # "one hundred and five"
                else:
                    break
                j += 1
            value = float(total + current)
            number_at[len(out)] = value
            numbers.add(value)
            out.append(str(int(value)))
            out_names.append(False)
            i = j
            continue
        if word in lx.ORDINALS and not (word == "second" and len(out) - 1 in number_at):  # "30 second"
            ordinals.add(lx.ORDINALS[word])
            weak.add(float(lx.ORDINALS[word]))
        if word in lx.IMPLIED_NUMBERS:
            weak.add(float(lx.IMPLIED_NUMBERS[word]))
            numbers.add(float(lx.IMPLIED_NUMBERS[word]))
        if word in lx.WEAK_NUMBER_WORDS:
            weak.add(float(lx.WEAK_NUMBER_WORDS[word]))
        if word in lx.MULTIPLIERS:
            weak.add(float(lx.MULTIPLIERS[word]))  # "to the nearest hundred" ~ "nearest 100"
        operator = lx.SPOKEN_OPERATORS.get(word)
        if word == "x" and out and len(out) - 1 in number_at and i + 1 < len(words) and parse_number(words[i + 1]):
            operator = "*"  # "8 x 5"
        previous_is_operand = bool(out) and (len(out) - 1 in number_at or out[-1] in _OPERAND_END)
        if operator is not None and previous_is_operand:
            if operator.startswith("^"):
                out.extend(["^", operator[1:]])
                out_names.extend([False, False])
                number_at[len(out) - 1] = float(operator[1:])
                weak.add(float(operator[1:]))
            else:
                out.append(operator)
                out_names.append(False)
            i += 1
            continue
        out.append(word)
        out_names.append(names[i])
        i += 1
    return out, out_names, numbers, weak, ordinals, number_at


def _signs(words: list[str], number_at: dict[int, float]) -> set[tuple[float, str]]:
    """The explicit sign of each number inside arithmetic: "x^2 - 5x + 6" gives (5, "-"), (6, "+")."""
    signed: set[tuple[float, str]] = set()
    for position, value in number_at.items():
        if position == 0 or words[position - 1] not in _SIGNS:
            continue
        before = position - 2
        operand = before >= 0 and (before in number_at or words[before] in _OPERAND_END)
        unary = before < 0 or words[before] in ("=", "(", "is", "of")
        if operand or unary:
            signed.add((value, words[position - 1]))
    return signed


def _entity_spans(words: list[str], names: list[bool], lex: LexiconIndex) -> list[Span]:
    """(start, end, class, canonical) of every entity, longest phrase first, each class on its own."""
    spans: list[Span] = []
    covered: dict[str, set[int]] = {}
    candidates: list[tuple[int, int, tuple[tuple[str, str, bool], ...]]] = []
    for start, word in enumerate(words):
        for size in range(min(lex.entity_starts.get(word, 0), len(words) - start), 0, -1):
            found = lex.entities.get(tuple(words[start:start + size]))
            if found:
                candidates.append((size, start, found))
    for size, start, found in sorted(candidates, key=lambda c: (-c[0], c[1])):
        for cls, canonical, case_sensitive in found:
            if case_sensitive and not names[start]:
                continue
            if any(s <= start and start + size <= e and e - s > size for s, e, _, _ in spans):
                continue  # "Chinese" inside "Chinese yuan" names no country
            taken = covered.setdefault(cls, set())
            if taken.intersection(range(start, start + size)):
                continue
            taken.update(range(start, start + size))
            spans.append((start, start + size, cls, canonical))
    return spans


def _bindings(words: list[str], number_at: dict[int, float], spans: list[Span],
              lex: LexiconIndex) -> set[tuple[float, str]]:
    """Which unit or currency each number measures: "10 kg" binds 10 to kilogram, "$45" binds 45 to usd."""
    measuring = [span for span in spans if span[2] in ("unit", "currency")]
    bindings: set[tuple[float, str]] = set()
    for position, value in number_at.items():
        if position > 0 and words[position - 1] in ("^", "/"):
            continue
        after = [span for span in measuring if span[0] == position + 1]
        before = [span for span in measuring if span[1] == position and span[2] == "currency"
                  and words[span[0]] in ("$", "\u20ac", "\u00a3", "\u00a5")]
        if not after and position + 1 < len(words) and words[position + 1] in lex.bound_units:
            bindings.add((value, "unit:" + lex.bound_units[words[position + 1]]))
        for _, _, cls, canonical in after + before:
            bindings.add((value, f"{cls}:{canonical}"))
    return bindings


def _directions(words: list[str], spans: list[Span], bindings: set[tuple[float, str]]) -> dict[str, tuple[str, str]]:
    """For a class named twice ("kg to lb", "USD/TRY", "how many yen is one dollar"): (from, to)."""
    directions: dict[str, tuple[str, str]] = {}
    bound = {name for _, name in bindings}
    by_class: dict[str, list[tuple[int, str]]] = {}
    for start, _, cls, canonical in sorted(spans):
        if cls not in ("unit", "currency", "numeral-system", "language", "format", "database"):
            continue
        names = by_class.setdefault(cls, [])
        if canonical not in (name for _, name in names):
            names.append((start, canonical))
    for cls, names in by_class.items():
        if len(names) != 2:
            continue
        (first_at, first), (_, second) = names
        if f"{cls}:{second}" in bound and f"{cls}:{first}" not in bound:
            directions[cls] = (second, first)
        elif f"{cls}:{first}" in bound and f"{cls}:{second}" not in bound:
            directions[cls] = (first, second)
        elif (first_at > 0 and words[first_at - 1] in ("many", "much")) or "per" in words[first_at:]:
            directions[cls] = (second, first)  # "how many grams in an ounce", "grams per ounce": ounce -> gram
        elif any(word in ("vs", "versus", "or", "and", "between") for word in words):
            continue
        else:
            directions[cls] = (first, second)
    return directions


def _content_items(words: list[str], canonical: list[str], names: list[bool], spans: list[Span],
                   number_at: dict[int, float], lex: LexiconIndex) -> tuple[list[Item], list[tuple[str, ...]]]:
    """Content words as Items (entity phrases merged, synonyms canonical) and the scope of each negation."""
    span_at: dict[int, list[Span]] = {}
    for span in spans:
        span_at.setdefault(span[0], []).append(span)
    items: list[Item] = []
    negations: list[list[str]] = []
    open_scopes: list[tuple[int, list[str]]] = []  # (last position in scope, keys)
    contrast_until = -1
    i = 0
    while i < len(words):
        word = words[i]
        if word in lx.CONTRASTS:
            contrast_until = i + _NEGATION_SCOPE + 1
        if word in lx.NEGATORS or (word == "non" and i + 1 < len(words)):
            following = words[i + 1] if i + 1 < len(words) else ""
            if following not in lx.QUANTIFIERS:  # "without much light" is little light, not no light
                scope: list[str] = []
                negations.append(scope)
                reach = 1 if word == "non" else _NEGATION_SCOPE  # "non-polar desert": only "polar"
                open_scopes.append((i + reach, scope))
            i += 1
            continue
        starting = span_at.get(i, [])
        end = max((span[1] for span in starting), default=i)
        synonym_end, synonym = _synonym_at(words, i, lex)
        if synonym_end > end and synonym_end - i > 1:
            surface, keys, end = " ".join(words[i:synonym_end]), {synonym}, synonym_end
        elif starting:
            surface = " ".join(words[i:end])
            keys = {f"{cls}:{canonical}" for start, stop, cls, canonical in starting if stop == end}
            keys.add(surface)
        elif i in number_at or not word.isalpha() or word in lx.STOPWORDS or word in lx.FILLERS:
            i += 1
            continue
        elif word in lx.CARDINALS or word in lx.ORDINALS or word in lx.WEAK_NUMBER_WORDS:
            i += 1
            continue
        else:
            surface, keys, end = word, {canonical[i]}, i + 1
        in_scope = [scope for last, scope in open_scopes if i <= last]
        for scope in in_scope:
            scope.extend(sorted(keys))
        items.append(Item(surface=surface, keys=frozenset(keys), position=i, end=end, negated=bool(in_scope),
                          contrasted=i <= contrast_until, named=names[i]))
        i = end
    return items, [tuple(scope) for scope in negations]


def _synonym_at(words: list[str], i: int, lex: LexiconIndex) -> tuple[int, str]:
    for size in range(min(lex.synonym_starts.get(words[i], 0), len(words) - i), 1, -1):
        found = lex.synonyms.get(tuple(words[i:i + size]))
        if found is not None:
            return i + size, found
    return i, ""


def _arrows(words: list[str], items: list[Item]) -> set[tuple[str, str]]:
    """Ordered pairs (x, y) joined by a direction word: the word just before "to"/"into" and those after it."""
    arrows: set[tuple[str, str]] = set()
    connectors = [i for i, word in enumerate(words) if word in _CONNECTORS
                  and not (i + 1 < len(words) and words[i + 1] in lx.COMMON_VERBS)]  # "syntax to add": no arrow
    for n, at in enumerate(connectors):
        stop = connectors[n + 1] if n + 1 < len(connectors) else len(words)
        left = [item for item in items if at - _ARROW_WINDOW <= item.end - 1 < at]
        right = [item for item in items if at < item.position < stop][:_ARROW_ITEMS]
        for x in left[-_ARROW_ITEMS_BEFORE:]:
            arrows.update((kx, ky) for y in right for kx in x.keys for ky in y.keys if kx != ky)
    return arrows


def _split_compounds(words: list[str], names: list[bool], lex: LexiconIndex) -> tuple[list[str], list[bool]]:
    """Split an unknown word that is a known word glued to a preposition ("endswith" -> "ends with")."""
    out_words: list[str] = []
    out_names: list[bool] = []
    for word, name in zip(words, names):
        if word.isalpha() and word not in lex.known:
            for suffix in _GLUED_SUFFIXES:
                head = word[: -len(suffix)]
                if word.endswith(suffix) and len(head) >= 3 and (head in lex.known or stem(head) in lex.known):
                    out_words.extend((head, suffix))
                    out_names.extend((name, False))
                    break
            else:
                out_words.append(word)
                out_names.append(name)
        else:
            out_words.append(word)
            out_names.append(name)
    return out_words, out_names
