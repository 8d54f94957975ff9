"""Which content words of two questions correspond, tolerating synonyms, typos, compounds and abbreviations.

The words left over on each side are what the two questions disagree about; the near-miss rules judge them.
"""

from __future__ import annotations

from dataclasses import dataclass

from .lexicon_index import LexiconIndex
from .query_features import Item, QueryFeatures
from .text_normalize import is_abbreviation, is_typo_of, is_vowel_slip

_MIN_PREFIX = 5  # "starts" ~ "startswith", but "form" !~ "format"
_MIN_FAMILY_PREFIX = 6  # one word family: "conversation" ~ "conversational"
_FAMILY_SHARE = 0.75


@dataclass(frozen=True)
class WordDiff:
    """Content words of each question with no counterpart in the other, and how many had one."""

    only_a: tuple[Item, ...]
    only_b: tuple[Item, ...]
    matched: int


def diff_words(a: QueryFeatures, b: QueryFeatures, lex: LexiconIndex, limit: int | None = None) -> WordDiff:
    """Pair up content words: same canonical key first, then typo, compound, prefix, abbreviation (of the first
    ``limit`` content words of each side, when given)."""
    left = list(a.items[:limit])
    right = list(b.items[:limit])
    matched = 0

    def unknown_slip(x: Item, y: Item) -> bool:
        return x.surface not in lex.known and y.surface not in lex.known and is_vowel_slip(x.surface, y.surface)

    for same in (_same_key, _same_typo, _same_prefix, unknown_slip):
        for item in list(left):
            for other in right:
                if same(item, other):
                    left.remove(item)
                    right.remove(other)
                    matched += 1
                    break
    matched += _match_compounds(left, b.words) + _match_compounds(right, a.words)
    matched += _match_abbreviations(left, right, lex)
    return WordDiff(only_a=tuple(left), only_b=tuple(right), matched=matched)


def _same_key(x: Item, y: Item) -> bool:
    return not x.keys.isdisjoint(y.keys)


def _same_typo(x: Item, y: Item) -> bool:
    if any(":" in key for key in x.keys) and any(":" in key for key in y.keys):
        return False  # two different known entities are never one misspelled
    if " " in x.surface or " " in y.surface or x.surface[0] != y.surface[0]:
        return False
    return is_typo_of(x.surface, y.surface) or any(
        abs(len(kx) - len(ky)) <= 1 and is_typo_of(kx, ky) for kx in x.keys for ky in y.keys
    )


def _same_prefix(x: Item, y: Item) -> bool:
    if any(":" in key for key in x.keys) and any(":" in key for key in y.keys):
        return False
    short, long = sorted((x.surface.replace(" ", ""), y.surface.replace(" ", "")), key=len)
    if len(short) >= _MIN_PREFIX and long.startswith(short):
        return True  # "startswith" ~ "starts"
    if len(short) >= _MIN_PREFIX and len(long) - len(short) >= 3 and long.endswith(short):
        return True  # "transatlantic" ~ "atlantic", but "methanol" !~ "ethanol"
    common = 0
    while common < len(short) and short[common] == long[common]:
        common += 1
    return common >= _MIN_FAMILY_PREFIX and common >= _FAMILY_SHARE * len(short)  # chemical ~ chemistry


def _match_compounds(items: list[Item], other_words: tuple[str, ...]) -> int:
    """Remove items written as one word on this side and as two on the other (startswith ~ starts with)."""
    joined = {other_words[i] + other_words[i + 1] for i in range(len(other_words) - 1)}
    found = [item for item in items if item.surface.replace(" ", "") in joined]
    for item in found:
        items.remove(item)
    return len(found)


def _match_abbreviations(left: list[Item], right: list[Item], lex: LexiconIndex) -> int:
    """Pair an unknown short word with the word or phrase it abbreviates (pltr ~ palantir, amd ~ a. m. d.)."""
    matched = 0
    for short_side, long_side in ((left, right), (right, left)):
        for item in list(short_side):
            word = item.surface
            if " " in word or word in lex.known or not word.isalpha():
                continue
            initials = "".join(other.surface[0] for other in long_side)
            partner = next((other for other in long_side
                            if is_abbreviation(word, other.surface.replace(" ", ""))
                            or is_abbreviation(word, "".join(part[0] for part in other.surface.split()))), None)
            if partner is not None:
                short_side.remove(item)
                long_side.remove(partner)
                matched += 1
            elif len(word) >= 2 and word in initials:
                start = initials.index(word)
                for other in long_side[start:start + len(word)]:
                    long_side.remove(other)
                short_side.remove(item)
                matched += 1
    return matched
