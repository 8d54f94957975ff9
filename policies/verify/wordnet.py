"""Princeton WordNet 3.0, read from its data files: lemmas, senses, and the relations the verifier asks about.

General lexical knowledge instead of hand lists: whether two words are synonyms, opposites (open/closed),
sisters under one hypernym (river/mountain, capital/currency), one a kind of the other, or forms of one word
(treat/treatment). The files are parsed line by line (never by byte offset, which Windows line endings break) into
integer-keyed tables, then pickled next to the data so later loads take a fraction of a second.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

POS_NAMES = ("n", "v", "a", "r")
_POS_INDEX = {"n": 0, "v": 1, "a": 2, "s": 2, "r": 3}
_FILES = {"n": "noun", "v": "verb", "a": "adj", "r": "adv"}
_HYPERNYM = frozenset({"@", "@i"})
_MORPHY_RULES = {
    "n": (("s", ""), ("ses", "s"), ("xes", "x"), ("zes", "z"), ("ches", "ch"), ("shes", "sh"), ("men", "man"),
          ("ies", "y")),
    "v": (("s", ""), ("ies", "y"), ("es", "e"), ("es", ""), ("ed", "e"), ("ed", ""), ("ing", "e"), ("ing", "")),
    "a": (("er", ""), ("est", ""), ("er", "e"), ("est", "e")),
    "r": (),
}
PICKLE_NAME = "cachesvc-wordnet.pickle"
PICKLE_VERSION = 4
_SPECIFIC_DEPTH = 5  # a shared hypernym this deep names one kind of thing (not "object", "abstraction")
# Files that say nothing about kind: all adjectives (adj.all, adj.pert, adj.ppl), all adverbs, noun.Tops.
_BROAD_FILES = frozenset({None, 0, 1, 2, 3, 44})
_FORMS_CACHED = 100_000  # surface forms whose lemmas are remembered


class Relation(StrEnum):
    """How two words relate, strongest first; the pair model reads these as features."""

    SAME = "same"  # one lemma (after morphology)
    SYNONYM = "synonym"  # share a synset
    DERIVED = "derived"  # forms of one word (treat / treatment), or one synset's "pertains to"
    SIMILAR = "similar"  # adjective satellites of one head (warm / hot)
    ANTONYM = "antonym"  # opposites, directly or through a satellite's head
    HYPERNYM = "hypernym"  # one is a kind of the other (within a few levels)
    SISTER = "sister"  # share a close, specific hypernym: different members of one kind (euro / yen)
    KIN = "kin"  # same lexicographer file, no close hypernym: one broad kind (river / mountain, mayor / senator)
    NONE = "none"


def _synset_id(pos: str, offset: int) -> int:
    return offset * 4 + _POS_INDEX[pos]


@dataclass
class WordNet:
    """The tables of one WordNet database; build with ``WordNet.read(folder)`` or ``load_wordnet(folder)``."""

    senses: dict[str, tuple[int, ...]] = field(default_factory=dict)  # lemma -> synsets, most frequent first
    lemmas: dict[int, tuple[str, ...]] = field(default_factory=dict)
    hypernyms: dict[int, tuple[int, ...]] = field(default_factory=dict)
    similar: dict[int, tuple[int, ...]] = field(default_factory=dict)
    lexfile: dict[int, int] = field(default_factory=dict)  # synset -> lexicographer file (noun.object, ...)
    depth: dict[int, int] = field(default_factory=dict)  # synset -> hypernym steps to a root
    frequency: dict[str, int] = field(default_factory=dict)  # lemma -> senses seen in the tagged corpus
    antonyms: dict[str, frozenset[str]] = field(default_factory=dict)  # lemma -> opposite lemmas
    derived: dict[str, frozenset[str]] = field(default_factory=dict)  # lemma -> related forms
    exceptions: dict[str, dict[str, tuple[str, ...]]] = field(default_factory=dict)  # pos -> form -> lemmas
    _forms: dict[tuple[str, str | None], tuple[str, ...]] = field(default_factory=dict, repr=False, compare=False)
    _children: dict[int, tuple[int, ...]] = field(default_factory=dict, repr=False, compare=False)

    def __getstate__(self) -> dict[str, object]:
        return {k: v for k, v in self.__dict__.items() if k not in ("_forms", "_children")}

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__dict__.update(state)
        self._forms = {}
        self._children = {}

    @classmethod
    def read(cls, folder: Path) -> WordNet:
        """Parse the ``data.*``, ``index.*`` and ``*.exc`` files of a WordNet 3.0 folder."""
        wn = cls()
        antonyms: dict[str, set[str]] = {}
        derived: dict[str, set[str]] = {}
        for pos, name in _FILES.items():
            for line in _lines(folder / f"data.{name}"):
                _read_synset(wn, line, antonyms, derived)
            senses: dict[str, tuple[int, ...]] = {}
            for line in _lines(folder / f"index.{name}"):
                parts = line.split()
                lemma, count = parts[0], int(parts[2])
                senses[lemma] = tuple(_synset_id(pos, int(o)) for o in parts[-count:])
                wn.frequency[lemma] = wn.frequency.get(lemma, 0) + int(parts[-count - 1])
            for lemma, ids in senses.items():
                wn.senses[lemma] = wn.senses.get(lemma, ()) + ids
            exc: dict[str, tuple[str, ...]] = {}
            for line in _lines(folder / f"{name}.exc"):
                form, *bases = line.split()
                exc[form] = tuple(bases)
            wn.exceptions[pos] = exc
        wn.depth = _depths(wn.hypernyms, wn.lemmas.keys())
        wn.antonyms = _resolve_lexical_pointers(wn, antonyms)
        wn.derived = _resolve_lexical_pointers(wn, derived)
        return wn

    # ---- words --------------------------------------------------------------------------------------------

    def base_forms(self, word: str, pos: str | None = None) -> tuple[str, ...]:
        """The lemmas a surface form may be (``mice`` -> ``mouse``, ``ran`` -> ``run``), the word itself first."""
        key = (word.lower().replace(" ", "_"), pos)
        found = self._forms.get(key)
        if found is None:
            if len(self._forms) > _FORMS_CACHED:
                self._forms.clear()
            found = self._forms[key] = _base_forms(self, key[0], pos)
        return found

    def synsets(self, word: str) -> tuple[int, ...]:
        found: list[int] = []
        for lemma in self.base_forms(word):
            found.extend(s for s in self.senses.get(lemma, ()) if s not in found)
        return tuple(found)

    def pos_of(self, word: str) -> frozenset[str]:
        return frozenset(POS_NAMES[s % 4] for s in self.synsets(word))

    # ---- relations ----------------------------------------------------------------------------------------

    def relation(self, a: str, b: str, max_senses: int = 4) -> Relation:
        """The strongest relation between two words over their first senses."""
        if a.lower() == b.lower():
            return Relation.SAME
        bases_a, bases_b = set(self.base_forms(a)), set(self.base_forms(b))
        if bases_a & bases_b:
            return Relation.SAME
        if any(self.antonyms.get(x, frozenset()) & bases_b for x in bases_a):
            return Relation.ANTONYM
        syn_a, syn_b = self.synsets(a)[:max_senses], self.synsets(b)[:max_senses]
        if set(syn_a) & set(syn_b):
            return Relation.SYNONYM
        if any(self.derived.get(x, frozenset()) & bases_b for x in bases_a):
            return Relation.DERIVED
        if self._opposed_heads(syn_a, syn_b):
            return Relation.ANTONYM
        if any(set(self.similar.get(s, ())) & set(syn_b) for s in syn_a):
            return Relation.SIMILAR
        ancestors_a = self._ancestors(syn_a, 3)
        ancestors_b = self._ancestors(syn_b, 3)
        if ancestors_a.keys() & set(syn_b) or ancestors_b.keys() & set(syn_a):
            return Relation.HYPERNYM
        close_a = {s for s, depth in ancestors_a.items() if depth <= 2}
        close_b = {s for s, depth in ancestors_b.items() if depth <= 2}
        if any(self.depth.get(s, 0) >= _SPECIFIC_DEPTH for s in close_a & close_b):
            return Relation.SISTER
        files_a = {self.lexfile.get(s) for s in syn_a[:2]} - _BROAD_FILES
        if files_a & {self.lexfile.get(s) for s in syn_b[:2]}:
            return Relation.KIN
        return Relation.NONE

    def similarity(self, a: str, b: str, max_senses: int = 3) -> float:
        """Wu-Palmer similarity over the first senses: 2 depth(common ancestor) / (depth(a) + depth(b)); 0 when
        the words share no ancestor, 1 for one synset."""
        syn_a, syn_b = self.synsets(a)[:max_senses], self.synsets(b)[:max_senses]
        if not syn_a or not syn_b:
            return 0.0
        if set(syn_a) & set(syn_b):
            return 1.0
        best = 0.0
        for sa in syn_a:
            up_a = self._ancestors((sa,), 12)
            for sb in syn_b:
                up_b = self._ancestors((sb,), 12)
                for common in up_a.keys() & up_b.keys():
                    top = self.depth.get(common, 0) + 1
                    denominator = top * 2 + up_a[common] + up_b[common]
                    best = max(best, 2.0 * top / denominator)
        return best

    def _ancestors(self, synsets: tuple[int, ...], depth: int) -> dict[int, int]:
        """Hypernyms up to ``depth`` levels, with the level each is first reached at (the synsets are level 0)."""
        seen = {s: 0 for s in synsets}
        frontier = list(synsets)
        for level in range(1, depth + 1):
            nxt = []
            for s in frontier:
                for h in self.hypernyms.get(s, ()):
                    if h not in seen:
                        seen[h] = level
                        nxt.append(h)
            frontier = nxt
        return seen

    def _opposed_heads(self, syn_a: tuple[int, ...], syn_b: tuple[int, ...]) -> bool:
        """Adjective satellites whose heads are antonyms (warm ~ hot, chilly ~ cold: warm vs chilly)."""
        heads_a = {h for s in syn_a for h in (s, *self.similar.get(s, ())) if s % 4 == 2}
        heads_b = {h for s in syn_b for h in (s, *self.similar.get(s, ())) if s % 4 == 2}
        if not heads_a or not heads_b:
            return False
        words_b = {lemma for h in heads_b for lemma in self.lemmas.get(h, ())}
        return any(self.antonyms.get(lemma, frozenset()) & words_b for h in heads_a for lemma in self.lemmas.get(h, ()))

    def sisters(self, word: str, pos: str = "n", limit: int = 12) -> list[str]:
        """Common words under the first sense's hypernym: the other members of its kind (euro -> yen, dollar)."""
        found: list[str] = []
        own = set(self.base_forms(word))
        for s in [s for s in self.synsets(word) if POS_NAMES[s % 4] == pos][:1]:
            for h in self.hypernyms.get(s, ()):
                for child in self.hyponyms_of(h):
                    found.extend(w for w in self.lemmas.get(child, ()) if w not in own and w not in found)
        found.sort(key=lambda w: -self.frequency.get(w, 0))
        return [w for w in found if self.frequency.get(w, 0) > 0][:limit]

    def hyponyms_of(self, synset: int) -> tuple[int, ...]:
        if not self._children:
            children: dict[int, list[int]] = {}
            for s, parents in self.hypernyms.items():
                for h in parents:
                    children.setdefault(h, []).append(s)
            self._children = {h: tuple(c) for h, c in children.items()}
        return self._children.get(synset, ())

    def synonyms(self, word: str, pos: str | None = None) -> list[str]:
        """The other lemmas of the word's first sense (of ``pos`` when given), common ones first."""
        senses = [s for s in self.synsets(word) if pos is None or POS_NAMES[s % 4] == pos][:1]
        own = set(self.base_forms(word))
        found = [w for s in senses for w in self.lemmas.get(s, ()) if w not in own]
        return sorted(found, key=lambda w: -self.frequency.get(w, 0))

    def opposites(self, word: str) -> list[str]:
        return sorted({w for base in self.base_forms(word) for w in self.antonyms.get(base, ())})

    def save(self, path: Path) -> None:
        tmp = path.with_suffix(".tmp")
        with tmp.open("wb") as fh:
            pickle.dump((PICKLE_VERSION, self), fh, protocol=pickle.HIGHEST_PROTOCOL)
        tmp.replace(path)


def _lines(path: Path) -> list[str]:
    """A WordNet file's lines without the licence header (lines starting with spaces) or line endings."""
    text = path.read_text(encoding="utf-8", errors="replace").replace("\r", "")
    return [line for line in text.split("\n") if line and not line.startswith(" ")]


def _read_synset(wn: WordNet, line: str, antonyms: dict[str, set[str]], derived: dict[str, set[str]]) -> None:
    data = line.split(" | ", 1)[0].split()
    offset, pos = int(data[0]), data[2]
    sid = _synset_id(pos, offset)
    count = int(data[3], 16)
    words = tuple(_clean_lemma(data[4 + 2 * i]) for i in range(count))
    wn.lemmas[sid] = words
    wn.lexfile[sid] = int(data[1])
    at = 4 + 2 * count
    pointers = int(data[at])
    hypernyms: list[int] = []
    similar: list[int] = []
    for i in range(pointers):
        symbol, target, target_pos, source_target = data[at + 1 + 4 * i: at + 5 + 4 * i]
        tid = _synset_id(target_pos, int(target))
        if symbol in _HYPERNYM:
            hypernyms.append(tid)
        elif symbol == "&":
            similar.append(tid)
        elif symbol in ("!", "+", "\\", "=") and source_target != "0000":
            source, dest = int(source_target[:2], 16), int(source_target[2:], 16)
            # the target lemma is resolved later: keep (synset, word number) until all synsets are read
            table = antonyms if symbol == "!" else derived
            table.setdefault(words[source - 1], set()).add(f"\0{tid}:{dest}")
    if hypernyms:
        wn.hypernyms[sid] = tuple(hypernyms)
    if similar:
        wn.similar[sid] = tuple(similar)


def _depths(hypernyms: dict[int, tuple[int, ...]], synsets: Iterable[int]) -> dict[int, int]:
    """Shortest hypernym path to a root, for every synset (iteratively: the tree is deeper than Python's stack
    would like in the worst case)."""
    depth: dict[int, int] = {}
    for start in synsets:
        stack = [start]
        while stack:
            s = stack[-1]
            if s in depth:
                stack.pop()
                continue
            parents = [h for h in hypernyms.get(s, ()) if h not in depth and h not in stack]
            if parents:
                stack.extend(parents)
                continue
            known = [depth[h] for h in hypernyms.get(s, ()) if h in depth]
            depth[s] = 1 + min(known) if known else 0
            stack.pop()
    return depth


def _clean_lemma(word: str) -> str:
    word = word.lower()
    return word.split("(", 1)[0] if word.endswith(")") else word


def _resolve_lexical_pointers(wn: WordNet, table: dict[str, set[str]]) -> dict[str, frozenset[str]]:
    """The lemmas the "(synset, word number)" placeholders of antonym or derivation pointers name."""
    resolved: dict[str, frozenset[str]] = {}
    for lemma, targets in table.items():
        words = set()
        for target in targets:
            sid, number = target[1:].split(":")
            names = wn.lemmas.get(int(sid), ())
            if 0 < int(number) <= len(names):
                words.add(names[int(number) - 1])
        resolved[lemma] = frozenset(words - {lemma})
    return resolved


def _base_forms(wn: WordNet, word: str, pos: str | None) -> tuple[str, ...]:
    forms: list[str] = []
    for p in (pos,) if pos else POS_NAMES:
        if word in wn.exceptions.get(p, {}):
            forms.extend(wn.exceptions[p][word])
        if _has_pos(wn, word, p):
            forms.append(word)
        for suffix, ending in _MORPHY_RULES[p]:
            if word.endswith(suffix) and len(word) > len(suffix) + 1:
                base = word[: len(word) - len(suffix)] + ending
                if _has_pos(wn, base, p):
                    forms.append(base)
    ordered = [word] if word in forms else []
    ordered.extend(f for f in forms if f not in ordered)
    return tuple(ordered)


def _has_pos(wn: WordNet, lemma: str, pos: str) -> bool:
    return any(POS_NAMES[s % 4] == pos for s in wn.senses.get(lemma, ()))


def load_wordnet(folder: Path) -> WordNet:
    """The WordNet in ``folder``, from its pickle when that is current, else parsed (and the pickle written)."""
    cached = folder / PICKLE_NAME
    if cached.is_file():
        with cached.open("rb") as fh:
            version, wn = pickle.load(fh)
        if version == PICKLE_VERSION and isinstance(wn, WordNet):
            return wn
    if not (folder / "data.noun").is_file():
        raise FileNotFoundError(f"{folder}: no WordNet 3.0 data (run `cachesvc fetch-wordnet`)")
    wn = WordNet.read(folder)
    try:
        wn.save(cached)
    except OSError:
        pass  # a read-only data folder still works; it is parsed again next time
    return wn
