"""Rewrite one question into another: a paraphrase (same answer) or a look-alike (different answer).

Training pairs for the pair model come from shipped seed questions and these rewrites. Look-alikes change one
thing that changes the answer: a WordNet antonym or sister term, a negation, a number or date, a narrower or wider
scope, swapped roles, another attribute of the same subject, another need about the same topic. Paraphrases change
only the wording: a WordNet synonym of a one-sense word, another way to open the question, a filler, a typo.
Each rewrite returns None when it does not apply, so callers can try them all.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable

from ..wordnet import WordNet

Rewrite = Callable[[str, WordNet, random.Random], "str | None"]

# The scope qualifiers of this training generator (not of the verifier, which knows no such list).
SCOPES = ("for children", "for beginners", "in winter", "at night", "on a budget", "for a small apartment",
          "in the UK", "without a car", "for seniors", "in an emergency", "on weekends", "for a large group",
          "in cold weather", "after surgery", "for dogs", "during a storm", "for a first date", "in Canada",
          "on a plane", "at high altitude", "for a vegetarian", "for a small business", "on a phone",
          "in a rental", "for twins", "while traveling", "for a teenager", "in the summer", "by hand",
          "for a long trip", "with diabetes", "in an old house", "at work", "for free", "in French")
NEEDS = ("how do I", "how long does it take to", "why do people", "what happens if I", "is it safe to",
         "how much does it cost to", "when should I", "what are the risks if I", "where can I learn to",
         "who can help me", "how often should I", "what do I need to", "is it legal to", "what are the benefits if I")
TOPIC_NEEDS = ("what causes", "how do I prevent", "how do I treat", "how long does it take to get rid of",
               "what are the symptoms of", "how do I fix", "how much does it cost to fix", "who should I call about",
               "is it dangerous to ignore", "how common is")
OPENINGS = (("how do i", ("how can i", "what's the best way to", "how to", "what is the way to",
                          "any tips on how to", "i want to know how to")),
            ("what is", ("what's", "tell me", "can you tell me", "do you know")),
            ("how to", ("how do i", "how can i", "steps to")),
            ("can you", ("could you", "please", "would you")),
            ("what are", ("which are", "list", "tell me")))
FILLERS = ("please", "quick question:", "hey,", "hi, ", "honestly", "I was wondering,", "can you help:")
_NUMBER = re.compile(r"\b\d+(?:\.\d+)?\b")
_YEAR = re.compile(r"\b(19|20)\d\d\b")
_MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
           "november", "december")
_SEASONS = ("spring", "summer", "autumn", "winter")
_DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_NEGATE = ((" is ", " isn't "), (" are ", " aren't "), (" can ", " can't "), (" does ", " doesn't "),
           (" should ", " shouldn't "), (" do ", " don't "), (" with ", " without "), (" will ", " won't "),
           (" was ", " wasn't "))
_ROLE = re.compile(r"\b(from|between) (\w+(?: \w+)?) (to|and) (\w+(?: \w+)?)\b", re.IGNORECASE)
_COMPARE = re.compile(r"\b(\w+) (bigger|smaller|older|newer|faster|slower|better|worse|taller|cheaper|"
                      r"heavier|larger|longer|shorter|safer|healthier|stronger|more \w+|less \w+) than (\w+)\b")
_CONVERT = re.compile(r"\b(convert|change|translate|move|copy|transfer) (\w+) (to|into) (\w+)\b", re.IGNORECASE)
_OF = re.compile(r"\bthe (\w+) of\b", re.IGNORECASE)
_WORD = re.compile(r"[A-Za-z]{3,}")
_STOP = frozenset("the and for with what how why when where who which that this there your you are can does did "
                  "will would should have has had was were been being from into about than then them they".split())


def _words(text: str) -> list[re.Match[str]]:
    return [m for m in _WORD.finditer(text) if m.group().lower() not in _STOP]


def _replace(text: str, match: re.Match[str], new: str) -> str:
    old = match.group()
    if old[:1].isupper():
        new = new[:1].upper() + new[1:]
    return text[: match.start()] + new.replace("_", " ") + text[match.end():]


def _single_pos(wn: WordNet, word: str) -> bool:
    return len(wn.pos_of(word)) == 1


# ---- look-alikes ---------------------------------------------------------------------------------------------

def antonym(text: str, wn: WordNet, rng: random.Random) -> str | None:
    options = [(m, o) for m in _words(text) for o in wn.opposites(m.group().lower())
               if m.group().lower() in wn.antonyms and "_" not in o]
    if not options:
        return None
    match, opposite = rng.choice(options)
    return _replace(text, match, opposite)


def sister(text: str, wn: WordNet, rng: random.Random) -> str | None:
    """A noun replaced by another member of its kind (euro -> dollar, bus -> train)."""
    options: list[tuple[re.Match[str], str]] = []
    for m in _words(text):
        word = m.group().lower()
        if word != m.group().lower().rstrip("s") and word not in wn.senses:
            continue  # plural forms would need re-inflection
        if "n" in wn.pos_of(word) and wn.frequency.get(word, 0) >= 2:
            options.extend((m, s) for s in wn.sisters(word, "n", 6) if "_" not in s)
    if not options:
        return None
    match, other = rng.choice(options)
    return _replace(text, match, other)


def negation(text: str, wn: WordNet, rng: random.Random) -> str | None:
    padded = f" {text} "
    options = [(old, new) for old, new in _NEGATE if old in padded] + [(new, old) for old, new in _NEGATE
                                                                        if new in padded]
    if not options:
        return None
    old, new = rng.choice(options)
    return padded.replace(old, new, 1).strip()


def number(text: str, wn: WordNet, rng: random.Random) -> str | None:
    found = [m for m in _NUMBER.finditer(text) if not _YEAR.fullmatch(m.group())]
    if not found:
        return None
    match = rng.choice(found)
    value = float(match.group())
    new = value + rng.choice((1, 2, 5, 10)) if rng.random() < 0.5 else value * rng.choice((2, 3, 10))
    shown = str(int(new)) if new == int(new) else f"{new:g}"
    return text[: match.start()] + shown + text[match.end():]


def date(text: str, wn: WordNet, rng: random.Random) -> str | None:
    year = _YEAR.search(text)
    if year:
        return text[: year.start()] + str(int(year.group()) + rng.choice((-3, -2, -1, 1, 2))) + text[year.end():]
    lowered = text.lower()
    for names in (_MONTHS, _SEASONS, _DAYS):
        for name in names:
            at = re.search(rf"\b{name}\b", lowered)
            if at:
                other = rng.choice([n for n in names if n != name])
                return text[: at.start()] + other.capitalize() + text[at.end():]
    return None


def scope(text: str, wn: WordNet, rng: random.Random) -> str | None:
    """A qualifier added at the end (or an existing trailing one dropped): a narrower or wider question."""
    stripped = text.rstrip("?!. ")
    tail = re.search(r"\s(for|in|on|during|with|without|at) [\w' ]{3,30}$", stripped)
    if tail and rng.random() < 0.4:
        return stripped[: tail.start()] + text[len(stripped):]
    return f"{stripped} {rng.choice(SCOPES)}{text[len(stripped):]}"


def role(text: str, wn: WordNet, rng: random.Random) -> str | None:
    """Swapped roles: from A to B -> from B to A, A bigger than B -> B bigger than A, convert A to B -> B to A."""
    for pattern, swap in ((_ROLE, lambda m: f"{m[1]} {m[4]} {m[3]} {m[2]}"),
                          (_COMPARE, lambda m: f"{m[3]} {m[2]} than {m[1]}"),
                          (_CONVERT, lambda m: f"{m[1]} {m[4]} {m[3]} {m[2]}")):
        match = pattern.search(text)
        if match and match[2].lower() != match[4 if pattern is not _COMPARE else 3].lower():
            return text[: match.start()] + swap(match) + text[match.end():]
    return None


_LINKS = frozenset("to from than into onto on over for with against versus vs by before after".split())


def swap_nouns(text: str, wn: WordNet, rng: random.Random) -> str | None:
    """Two names or nouns joined by a verb or a preposition trade places ("did Greeks influence Romans" ->
    "did Romans influence Greeks", "can a router replace a modem" -> "can a modem replace a router")."""
    def nounish(m: re.Match[str]) -> bool:
        word = m.group()
        return (word[:1].isupper() and m.start() > 0) or wn.pos_of(word.lower()) == frozenset({"n"})

    found = [m for m in _words(text) if nounish(m)]
    options = []
    for x, y in zip(found, found[1:], strict=False):
        middle = text[x.end(): y.start()].split()
        if not 1 <= len(middle) <= 3 or x.group().lower() == y.group().lower():
            continue
        joined = [w.lower().strip(",.?") for w in middle]
        if any(w in _LINKS or "v" in wn.pos_of(w) for w in joined if w not in ("a", "an", "the")):
            options.append((x, y))
    if not options:
        return None
    x, y = rng.choice(options)
    return text[: x.start()] + y.group() + text[x.end(): y.start()] + x.group() + text[y.end():]


def relation(text: str, wn: WordNet, rng: random.Random) -> str | None:
    """Another attribute of the same subject: the height of X -> the width of X."""
    match = _OF.search(text)
    if match is None:
        return None
    others = [s for s in wn.sisters(match[1].lower(), "n", 8) if "_" not in s]
    if not others:
        return None
    return text[: match.start(1)] + rng.choice(others) + text[match.end(1):]


def need(text: str, wn: WordNet, rng: random.Random) -> str | None:
    """Another need about the same thing: "how do I X" -> "how long does it take to X"."""
    lowered = text.lower()
    for opening in ("how do i ", "how can i ", "how to ", "what's the best way to ", "is it safe to "):
        if lowered.startswith(opening):
            other = rng.choice([n for n in NEEDS if not opening.startswith(n.lower())])
            return other[0].upper() + other[1:] + " " + text[len(opening):]
    for opening in ("what causes ", "how do i prevent ", "how do i treat ", "how do i fix ", "why does ", "why do "):
        if lowered.startswith(opening):
            other = rng.choice([n for n in TOPIC_NEEDS if not opening.startswith(n.lower())])
            return other[0].upper() + other[1:] + " " + text[len(opening):]
    return None


LOOK_ALIKES: dict[str, Rewrite] = {
    "antonym": antonym, "entity": sister, "negation": negation, "number": number, "date": date, "scope": scope,
    "role": role, "swap": swap_nouns, "relation": relation, "need": need,
}


# ---- paraphrases ---------------------------------------------------------------------------------------------

def synonym(text: str, wn: WordNet, rng: random.Random) -> str | None:
    """A word of one part of speech replaced by a common synonym of its first sense."""
    options: list[tuple[re.Match[str], str]] = []
    for m in _words(text):
        word = m.group().lower()
        if word in wn.senses and _single_pos(wn, word) and len(wn.senses[word]) <= 3:
            options.extend((m, s) for s in wn.synonyms(word)[:2] if "_" not in s and wn.frequency.get(s, 0) > 0)
    if not options:
        return None
    match, other = rng.choice(options)
    return _replace(text, match, other)


def opening(text: str, wn: WordNet, rng: random.Random) -> str | None:
    lowered = text.lower()
    for start, others in OPENINGS:
        if lowered.startswith(start + " "):
            new = rng.choice(others)
            return new[0].upper() + new[1:] + text[len(start):]
    return None


def filler(text: str, wn: WordNet, rng: random.Random) -> str | None:
    return f"{rng.choice(FILLERS)} {text[0].lower()}{text[1:]}"


def typo(text: str, wn: WordNet, rng: random.Random) -> str | None:
    long_words = [m for m in _WORD.finditer(text) if len(m.group()) >= 6]
    if not long_words:
        return None
    match = rng.choice(long_words)
    word = match.group()
    i = rng.randrange(1, len(word) - 2)
    swapped = word[:i] + word[i + 1] + word[i] + word[i + 2:] if rng.random() < 0.5 else word[:i] + word[i + 1:]
    return text[: match.start()] + swapped + text[match.end():]


def casual(text: str, wn: WordNet, rng: random.Random) -> str | None:
    lowered = text.lower().rstrip("?")
    return lowered if lowered != text else None


PARAPHRASES: dict[str, Rewrite] = {
    "synonym": synonym, "opening": opening, "filler": filler, "typo": typo, "casual": casual,
}
