"""Text normalization for the near-miss verifier: canonical spelling, tokens, light stemming, edit distance.

Pure functions on strings; fast enough to run on every semantic-hit candidate (microseconds per question).
"""

from __future__ import annotations

import re
import unicodedata

# Spellings that the tokenizer would otherwise break apart (c++ -> c, +, +) or that carry a meaning in symbols.
_REWRITES: tuple[tuple[str, re.Pattern[str], str], ...] = tuple(
    (trigger, re.compile(pattern, re.IGNORECASE), replacement)
    for trigger, pattern, replacement in (  # trigger: a substring the pattern needs (skips most patterns)
        ("\u2018", r"[\u2018\u2019\u02bc`]", "'"),
        ("\u2019", r"[\u2018\u2019\u02bc`]", "'"),
        ("`", r"`", "'"),
        ("\u2212", r"[\u2212\u2013\u2014]", "-"),
        ("\u2013", r"[\u2212\u2013\u2014]", "-"),
        ("\u2014", r"[\u2212\u2013\u2014]", "-"),
        ("\u00b2", r"\u00b2", "^2"),
        ("\u00b3", r"\u00b3", "^3"),
        ("\u00d7", r"\u00d7", " * "),
        ("\u2192", r"\u2192", " -> "),
        ("=>", r"=>", " -> "),
        ("+", r"\bc\+\+", " cplusplus "),
        ("#", r"\bc#", " csharp "),
        ("#", r"\bf#", " fsharp "),
        (".net", r"(?<![a-z])\.net\b", " dotnet "),
        (".js", r"\b(node|next|react|vue|express)\.js\b", r" \1js "),
        ("&", r"\bs&p\b", " sp "),
        ("&", r"&", " and "),
        # Text-speak: digits standing for words, and the usual shorthands (not numbers, not fractions).
        ("w/o", r"\bw/o\b", " without "),
        ("w/", r"\bw/(?=\s|$)", " with "),
        ("2nite", r"\b2nite\b", " tonight "),
        ("2day", r"\b2day\b", " today "),
        ("2moro", r"\b2moro+w?\b", " tomorrow "),
        ("b4", r"\bb4\b", " before "),
        ("2", r"(?<=[a-z] )2(?= (?:a|an|the|my|your|me|you|him|her|us|them|it|do|be|get|make|go|see|learn|use|give|"
              r"say|ask|find|buy|fix|cook|tell|pay|start|stop|keep|know|write|read|talk|help|clean|avoid|eat)\b)",
         "to"),
        ("4", r"(?<=[a-z] )4(?= (?:a|an|the|my|your|me|you|him|her|us|them|it|free|sale|kids|beginners)\b)", "for"),
        ("'", r"(?<![\w'])'(\d\d)\b", r"20\1"),  # '26 -> 2026
        ("/h", r"\bkm/h\b", " kmh "),
        ("\u00b0", r"\u00b0\s*c\b", " celsius "),
        ("\u00b0", r"\u00b0\s*f\b", " fahrenheit "),
        ("no.", r"\bno\.(?=\s)", " number "),
        ("'", r"\b(can)'t\b", r"\1 not"),
        ("cant", r"\b(can)t\b", r"\1 not"),
        ("'", r"\bwon't\b", "will not"),
        ("'", r"n't\b", " not"),
        ("'", r"'(s|re|ve|ll|d|m)\b", " "),
        (".", r"\be\.g\.|\bi\.e\.", " "),
    )
)
_VOWELS = frozenset("aeiouy")
_TOKEN = re.compile(r"\d+(?:,\d{3})+(?:\.\d+)?|\d*\.\d+|\d+|[a-z]+|->|[+\-*/^=%$\u20ac\u00a3\u00a5<>()]", re.IGNORECASE)


def rewrite(text: str) -> str:
    """Apply unicode normalization and the spelling rewrites that must happen before tokenizing."""
    text = unicodedata.normalize("NFC", text)
    lowered = text.lower()
    for trigger, pattern, replacement in _REWRITES:
        if trigger in lowered:
            text = pattern.sub(replacement, text)
            lowered = text.lower()
    return text


def tokenize(text: str) -> list[tuple[str, bool]]:
    """Split text into (lower-case token, written-as-a-name) pairs; names are capitalized past the first word."""
    tokens: list[tuple[str, bool]] = []
    sentence_start = True
    matches = [match.group() for match in _TOKEN.finditer(rewrite(text))]
    for n, raw in enumerate(matches):
        if raw == "-" and 0 < n < len(matches) - 1 and _is_word(matches[n - 1]) and _is_word(matches[n + 1]):
            continue  # a hyphenated word ("read-only", "non-toxic"), not a minus
        is_name = raw[:1].isupper() and (not sentence_start or (len(raw) > 1 and raw.isupper()))
        tokens.append((raw.lower(), is_name))
        sentence_start = False
    return tokens


def _is_word(token: str) -> bool:
    return len(token) > 1 and token.isalpha()


def parse_number(token: str) -> float | None:
    """The value of a digit token ("1,000", ".5", "42"), or None."""
    if not token or not (token[0].isdigit() or (token[0] == "." and len(token) > 1)):
        return None
    try:
        return float(token.replace(",", ""))
    except ValueError:
        return None


def stem(word: str) -> str:
    """Cheap suffix stripping so that plurals and verb forms compare equal (starts ~ start, biting ~ bite)."""
    if len(word) <= 3 or not word.isalpha():
        return word
    if word.endswith("ies") and len(word) > 4:
        word = word[:-3] + "y"
    elif word.endswith("sses"):
        word = word[:-2]
    elif word.endswith("s") and not word.endswith(("ss", "us", "is")):
        word = word[:-1]
    if word.endswith("ing") and len(word) > 5:
        word = word[:-3]
    elif word.endswith("ed") and len(word) > 4:
        word = word[:-2]
    elif word.endswith("ly") and len(word) > 5:
        word = word[:-2]
    if len(word) > 3 and word[-1] == word[-2] and word[-1] not in "aeiouls":
        word = word[:-1]  # stopp(ing) -> stop
    if word.endswith("e") and len(word) > 3:
        word = word[:-1]
    return word


def osa_distance(a: str, b: str, limit: int = 2) -> int:
    """Optimal-string-alignment edit distance (transpositions count 1), cut off above limit."""
    if a == b:
        return 0
    la, lb = len(a), len(b)
    if abs(la - lb) > limit:
        return limit + 1
    previous2: list[int] = []
    previous = list(range(lb + 1))
    for i in range(1, la + 1):
        current = [i] + [0] * lb
        best = current[0]
        for j in range(1, lb + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            value = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                value = min(value, previous2[j - 2] + 1)
            current[j] = value
            best = min(best, value)
        if best > limit:
            return limit + 1
        previous2, previous = previous, current
    return previous[lb]


def is_typo_of(a: str, b: str) -> bool:
    """Whether two different words are plausibly one word misspelled.

    One dropped, doubled or swapped letter; a replaced letter only vowel for vowel in longer words
    ("seperate"), because a replaced consonant usually makes another real word (mouse/house, cold/gold).
    """
    if a == b or not a.isalpha() or not b.isalpha():
        return False
    shortest = min(len(a), len(b))
    if shortest < 3 or abs(len(a) - len(b)) > 1:
        return False
    if len(a) != len(b):
        short, long = (a, b) if len(a) < len(b) else (b, a)
        if shortest < 4:
            return False
        # a letter dropped or doubled, but not the first one (ethanol is not methanol)
        return any(long[:i] + long[i + 1:] == short for i in range(1, len(long)))
    differ = [i for i in range(len(a)) if a[i] != b[i]]
    if len(differ) == 2 and differ[1] == differ[0] + 1:
        i = differ[0]
        return a[i] == b[i + 1] and a[i + 1] == b[i]
    if len(differ) == 1 and shortest >= 6 and differ[0] > 0:
        return a[differ[0]] in _VOWELS and b[differ[0]] in _VOWELS
    return False


def is_vowel_slip(a: str, b: str) -> bool:
    """Whether two words of five letters or more differ by one vowel written for another (ocean ~ oceon)."""
    if len(a) != len(b) or len(a) < 5 or not a.isalpha():
        return False
    differ = [i for i in range(len(a)) if a[i] != b[i]]
    return len(differ) == 1 and differ[0] > 0 and a[differ[0]] in _VOWELS and b[differ[0]] in _VOWELS


def is_abbreviation(short: str, long: str) -> bool:
    """Whether short is an abbreviation of long: same first letter, its letters in order (pltr ~ palantir)."""
    if not 2 <= len(short) <= 5 or len(long) <= len(short) or short[0] != long[0]:
        return False
    position = 0
    for char in short:
        position = long.find(char, position)
        if position < 0:
            return False
        position += 1
    return True
