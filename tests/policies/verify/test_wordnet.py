"""WordNet 3.0 as the verifier reads it: relations on the real data, and the reader on a tiny database written
with Windows line endings (the sdist's), where byte offsets would be wrong."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from cachesvc.policies.verify.wordnet import PICKLE_NAME, Relation, WordNet, load_wordnet
from cachesvc.verifier.wordnet_data import default_wordnet_dir


@pytest.fixture(scope="module")
def wordnet() -> WordNet:
    return load_wordnet(default_wordnet_dir())


@pytest.mark.parametrize(("a", "b", "relation"), [
    ("open", "closed", Relation.ANTONYM), ("increase", "decrease", Relation.ANTONYM),
    ("include", "exclude", Relation.ANTONYM), ("buy", "sell", Relation.ANTONYM),
    ("car", "automobile", Relation.SYNONYM), ("largest", "biggest", Relation.SYNONYM),
    ("mice", "mouse", Relation.SAME), ("ran", "run", Relation.SAME),
    ("treat", "treatment", Relation.DERIVED),
    ("dog", "animal", Relation.HYPERNYM),
    ("euro", "yen", Relation.SISTER), ("train", "bus", Relation.SISTER), ("mayor", "governor", Relation.SISTER),
    ("river", "mountain", Relation.KIN), ("capital", "currency", Relation.KIN),
    ("pregnancy", "child", Relation.NONE),
])
def test_relations_on_the_real_data(wordnet: WordNet, a: str, b: str, relation: Relation) -> None:
    assert wordnet.relation(a, b) is relation
    assert wordnet.relation(b, a) is relation  # symmetric


def test_similarity_orders_kinds_of_closeness(wordnet: WordNet) -> None:
    assert wordnet.similarity("car", "automobile") == 1.0
    assert wordnet.similarity("dog", "cat") > wordnet.similarity("dog", "river") > 0.0
    assert wordnet.similarity("zzqx", "dog") == 0.0


def test_sisters_synonyms_opposites(wordnet: WordNet) -> None:
    assert "dollar" in wordnet.sisters("euro")
    assert "large" in wordnet.synonyms("big")
    assert {"little", "small"} <= set(wordnet.opposites("big"))


TINY = {  # three synsets: hot <-> cold (antonyms), warm similar to hot; "heat" derived from hot
    "data.adj": ["  1 licence header line", "00000001 00 a 01 hot 0 002 ! 00000002 a 0101 & 00000003 s 0000 | high "
                 "temperature", "00000002 00 a 01 cold 0 001 ! 00000001 a 0101 | low temperature",
                 "00000003 00 s 01 warm 0 001 & 00000001 a 0000 | fairly hot"],
    "index.adj": ["  1 licence", "cold a 1 1 ! 1 0 00000002", "hot a 1 2 ! & 1 0 00000001",
                  "warm a 1 1 & 1 0 00000003"],
    "data.noun": ["00000010 03 n 02 heat 0 warmth 0 000 | the quality of being hot"],
    "index.noun": ["heat n 1 0 1 0 00000010", "warmth n 1 0 1 0 00000010"],
    "adj.exc": ["hotter hot"],
}


def write_tiny(folder: Path) -> None:
    folder.mkdir()
    for name in ("data.noun", "data.verb", "data.adj", "data.adv", "index.noun", "index.verb", "index.adj",
                 "index.adv", "noun.exc", "verb.exc", "adj.exc", "adv.exc"):
        lines = TINY.get(name, [])
        (folder / name).write_bytes("".join(f"{line}\r\n" for line in lines).encode())


def test_reader_parses_lines_not_offsets_and_writes_a_pickle(tmp_path: Path) -> None:
    folder = tmp_path / "wn"
    write_tiny(folder)
    wn = load_wordnet(folder)
    assert wn.relation("hot", "cold") is Relation.ANTONYM
    assert wn.relation("hotter", "hot") is Relation.SAME  # exceptions file, \r stripped
    assert wn.relation("heat", "warmth") is Relation.SYNONYM
    assert wn.relation("warm", "hot") is Relation.SIMILAR
    assert (folder / PICKLE_NAME).is_file()
    assert load_wordnet(folder).antonyms == wn.antonyms  # from the pickle


def test_a_stale_pickle_is_rebuilt(tmp_path: Path) -> None:
    folder = tmp_path / "wn"
    write_tiny(folder)
    (folder / PICKLE_NAME).write_bytes(pickle.dumps((0, "stale")))
    assert load_wordnet(folder).relation("hot", "cold") is Relation.ANTONYM


def test_missing_data_names_the_install_command(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="fetch-wordnet"):
        load_wordnet(tmp_path)
