"""The pair model's training data: rewrites that change what they claim to, pairs that are deterministic for a
seed, training and calibration domains that never meet, and no evaluation question anywhere in the seeds."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest

from cachesvc.policies.verify.pair_model import load_pair_model
from cachesvc.policies.verify.pair_training.dataset import pairs_from_intents, seed_intents, split_domains
from cachesvc.policies.verify.pair_training.perturb import LOOK_ALIKES, PARAPHRASES
from cachesvc.policies.verify.wordnet import WordNet, load_wordnet
from cachesvc.verifier.train_pair_model import fit_platt
from cachesvc.verifier.wordnet_data import default_wordnet_dir

EVAL = Path(__file__).resolve().parents[2] / "benchmarks" / "data" / "verifier_eval"


@pytest.fixture(scope="module")
def wordnet() -> WordNet:
    return load_wordnet(default_wordnet_dir())


@pytest.mark.parametrize(("name", "text", "expected"), [
    ("negation", "Which plants is it safe to eat raw?", "Which plants isn't it safe to eat raw?"),
    ("role", "trains from Madrid to Seville", "trains from Seville to Madrid"),
    ("swap", "how did Greeks influence Romans", "how did Romans influence Greeks"),
    ("need", "How do I fix a flat tyre?", None),
    ("number", "How long to boil 3 eggs?", None),
    ("date", "Best beaches to visit in July 2025", None),
    ("scope", "How much protein do I need per day?", None),
])
def test_look_alike_rewrites_change_the_question(wordnet: WordNet, name: str, text: str, expected: str | None
                                                 ) -> None:
    changed = LOOK_ALIKES[name](text, wordnet, random.Random(0))
    assert changed is not None and changed != text
    if expected is not None:
        assert changed == expected


def test_rewrites_say_none_when_they_do_not_apply(wordnet: WordNet) -> None:
    rng = random.Random(0)
    assert LOOK_ALIKES["role"]("What is the capital of Peru?", wordnet, rng) is None
    assert LOOK_ALIKES["number"]("What is the capital of Peru?", wordnet, rng) is None
    assert PARAPHRASES["typo"]("hi", wordnet, rng) is None


def test_pairs_are_deterministic_and_labelled(wordnet: WordNet) -> None:
    intents = seed_intents()[:24]
    first = list(pairs_from_intents(intents, wordnet, seed=3))
    assert first == list(pairs_from_intents(intents, wordnet, seed=3))
    assert first != list(pairs_from_intents(intents, wordnet, seed=4))
    by_text = {t: i.intent_id for i in intents for t in i.paraphrases}
    for pair in first:
        if pair.kind == "paraphrase":
            assert pair.label == 1 and by_text[pair.a] == by_text[pair.b]
        elif pair.kind.startswith("sibling:"):
            assert pair.label == 0 and by_text[pair.a] != by_text[pair.b]
        elif pair.kind.startswith("rewrite:"):
            assert pair.label == 0
        else:
            assert pair.kind.startswith("reword:") and pair.label == 1


def test_training_and_calibration_domains_never_meet() -> None:
    intents = seed_intents()
    train, calibration = split_domains(intents)
    assert train and calibration and not train & calibration
    assert (train, calibration) == split_domains(list(reversed(intents)))
    meta = load_pair_model().meta
    assert set(meta["train_domains"]) == train and set(meta["calibration_domains"]) == calibration


def test_no_evaluation_domain_or_question_is_in_the_seeds() -> None:
    """The held-out sets were written apart from the seeds; the few questions two authors happened to write alike
    were taken out of the seeds, and this keeps it so."""
    seeds = seed_intents()
    seed_texts = {t.lower() for i in seeds for t in i.paraphrases}
    for path in EVAL.glob("*.jsonl"):
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        assert not {r.get("domain") for r in rows} & {i.domain for i in seeds}, path.name
        assert not {t.lower() for r in rows for t in r["paraphrases"]} & seed_texts, path.name


def test_seeds_are_well_formed() -> None:
    intents = seed_intents()
    ids = {i.intent_id for i in intents}
    assert len(ids) == len(intents) >= 600
    for intent in intents:
        assert len(intent.paraphrases) == 5
        assert (intent.sibling_of is None) == (intent.trap_kind is None)
        assert intent.sibling_of is None or intent.sibling_of in ids


def test_platt_scaling_recovers_a_logistic_link() -> None:
    rng = np.random.default_rng(0)
    raw = rng.normal(size=20_000)
    y = (rng.random(20_000) < 1 / (1 + np.exp(-(2.0 * raw - 0.5)))).astype(float)
    a, b = fit_platt(raw, y)
    assert a == pytest.approx(2.0, abs=0.1) and b == pytest.approx(-0.5, abs=0.1)
