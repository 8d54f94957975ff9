"""The learned verifier on real WordNet, the shipped pair model and real word vectors: one judgement per candidate
in one batch, bars that rise with the target, the same-wording shortcut, and look-alikes scored under paraphrases."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from cachesvc.embedding.word_vectors import WordVectors
from cachesvc.policies.verify.learned_verifier import LearnedVerifier, same_wording_key
from cachesvc.policies.verify.pair_model import load_pair_model
from cachesvc.policies.verify.wordnet import load_wordnet
from cachesvc.verifier.wordnet_data import default_wordnet_dir


@pytest.fixture(scope="module")
def verifier(request: pytest.FixtureRequest) -> LearnedVerifier:
    encode = request.getfixturevalue("encode")
    return LearnedVerifier(load_wordnet(default_wordnet_dir()), load_pair_model(), WordVectors(encode))


@pytest.fixture(scope="module")
def similarity(request: pytest.FixtureRequest) -> Callable[[str, str], float]:
    encode = request.getfixturevalue("encode")
    return lambda a, b: float(np.dot(*encode([a, b])))


def test_same_wording_is_case_punctuation_contractions_politeness_and_how_to() -> None:
    assert same_wording_key("What's the capital of France?") == same_wording_key("what is the capital of france")
    assert same_wording_key("It isn't safe") == same_wording_key("it is not safe!")
    assert same_wording_key("Hey, how can I sort a list?") == same_wording_key("how do I sort a list, please")
    assert same_wording_key("What's the best way to sort a list") == same_wording_key("how to sort a list")
    assert same_wording_key("how long does it take to boil an egg") != same_wording_key("how to boil an egg")
    assert same_wording_key("how do I sort ascending") != same_wording_key("how do I sort descending")
    assert same_wording_key("Is 5 prime?") != same_wording_key("Is 6 prime?")
    assert same_wording_key("safe") != same_wording_key("not safe")


# Each look-alike differs from the cached question in one thing the answer depends on; its paraphrase does not.
PAIRS = [
    ("How do I sort a list of numbers in descending order in Python?",
     "How can I sort a list of numbers in descending order in Python?",
     "How do I sort a list of numbers in ascending order in Python?"),
    ("trains from Madrid to Seville", "train times Madrid to Seville", "trains from Seville to Madrid"),
    ("how do I treat a wasp sting", "what should I do for a wasp sting", "how long does a wasp sting swell"),
    ("What is 0 plus 0?", "what's 0 + 0", "What is 1 plus 1?"),
]


@pytest.mark.parametrize(("cached", "paraphrase", "look_alike"), PAIRS)
def test_look_alikes_score_under_paraphrases(verifier: LearnedVerifier, similarity: Callable[[str, str], float],
                                             cached: str, paraphrase: str, look_alike: str) -> None:
    good, bad = verifier.judge(cached, [(paraphrase, similarity(cached, paraphrase)),
                                        (look_alike, similarity(cached, look_alike))], "knowledge")
    assert good.probability > bad.probability
    assert not bad.accepted  # at the shipped 0.98 target
    assert bad.bar == good.bar == verifier.bar("knowledge")


def test_judge_is_batched_in_order_and_explains(verifier: LearnedVerifier) -> None:
    query = "How do I sort a list in Python?"
    judged = verifier.judge(query, [(query, 1.0), ("how do i sort a list in python", 0.99),
                                    ("How do I reverse a list in Python?", 0.8)], "code", explain=True)
    assert [j.probability for j in judged[:2]] == [1.0, 1.0]
    assert judged[2].probability < 1.0
    assert judged[2].evidence is not None and "reverse" in judged[2].evidence.left_b
    assert set(judged[2].features) >= {"cos", "left_b", "rule_any"}


def test_bars_follow_the_target_and_auto_tightening(verifier: LearnedVerifier) -> None:
    loose = LearnedVerifier(verifier.wordnet, verifier.model, verifier.word_vectors,
                            target_precision=lambda category: 0.8)
    assert loose.bar("conversation") < verifier.bar("conversation")
    before = loose.bar("conversation")
    assert loose.raise_bar("conversation", 0.05) == 0.05
    assert loose.bar("conversation") == pytest.approx(before + 0.05)
    loose.raise_bar("conversation", -1.0)  # never under the calibrated bar
    assert loose.bar("conversation") == before
    loose.raise_bar("math", 5.0)
    assert loose.bar("math") < 1.0  # capped: a raised bar still serves the surest pairs


def test_word_vectors_are_cached_and_bounded(encode: Callable[[list[str]], np.ndarray]) -> None:
    calls: list[list[str]] = []

    def counting(words: list[str]) -> np.ndarray:
        calls.append(list(words))
        return encode(words)

    vectors = WordVectors(counting, capacity=3)
    first = vectors(["sink", "drain", "sink"])
    assert set(first) == {"sink", "drain"} and calls == [["sink", "drain"]]
    vectors(["sink", "drain"])
    assert len(calls) == 1  # both remembered
    vectors(["a" * 100, "tap", "pipe"])  # an over-long "word" gets no vector and costs nothing
    assert calls[-1] == ["tap", "pipe"] and len(vectors) == 3
    assert float(np.dot(first["sink"], first["drain"])) > 0.3


def test_work_per_pair_is_bounded_whatever_the_length(verifier: LearnedVerifier) -> None:
    """A 4,000-character pair (the longest the semantic tier takes) costs a bounded number of word vectors and
    WordNet look-ups, not a number that grows with the questions."""
    from cachesvc.policies.verify.pair_features import MAX_COMPARED, MAX_COVERING

    rng = np.random.default_rng(0)
    vocabulary = [f"term{i}" for i in range(3000)] + ["not", "safe", "big", "small", "open", "closed"]

    def question() -> str:
        return " ".join(rng.choice(vocabulary, size=700))[:4000]

    asked: list[int] = []
    relations = 0
    wordnet = verifier.wordnet
    original = wordnet.relation

    def counting_relation(a: str, b: str, max_senses: int = 4) -> object:
        nonlocal relations
        relations += 1
        return original(a, b, max_senses)

    def counting_vectors(words: object) -> object:
        asked.append(len(list(words)))  # type: ignore[call-overload]
        return verifier.word_vectors(words)  # type: ignore[arg-type]

    bounded = LearnedVerifier(wordnet, verifier.model, counting_vectors)  # type: ignore[arg-type]
    wordnet.relation = counting_relation  # type: ignore[method-assign]
    try:
        judged = bounded.judge(question(), [(question(), 0.6) for _ in range(4)], "knowledge")
    finally:
        del wordnet.relation
    assert len(judged) == 4 and all(0.0 <= j.probability <= 1.0 for j in judged)
    assert max(asked) <= 2 * (MAX_COMPARED + MAX_COVERING)
    assert relations <= 4 * 2 * MAX_COMPARED * MAX_COMPARED


def test_upstream_pressure_relaxes_the_target_within_its_floor(verifier: LearnedVerifier) -> None:
    relaxing = LearnedVerifier(verifier.wordnet, verifier.model, verifier.word_vectors,
                               target_precision=lambda category: 0.98,
                               min_target_precision=lambda category: 0.9 if category == "knowledge" else None)
    at_floor = LearnedVerifier(verifier.wordnet, verifier.model, verifier.word_vectors,
                               target_precision=lambda category: 0.9)
    assert relaxing.target("knowledge", 0.0) == 0.98 and relaxing.target("knowledge", 1.0) == pytest.approx(0.9)
    assert relaxing.target("knowledge", 0.5) == pytest.approx(0.94)
    assert relaxing.target("knowledge", 7.0) == pytest.approx(0.9)  # pressure is clamped to [0, 1]
    assert relaxing.bar("knowledge", 1.0) == at_floor.bar("knowledge")
    assert relaxing.bar("knowledge", 1.0) <= relaxing.bar("knowledge", 0.5) <= relaxing.bar("knowledge", 0.0)
    assert relaxing.bar("code", 1.0) == relaxing.bar("code", 0.0)  # no floor: no relaxation
