"""The near-miss verifier: look-alikes with a different answer are rejected, real paraphrases are kept."""

from __future__ import annotations

import time

import pytest

from cachesvc.policies.verify.judgement import Verdict
from cachesvc.policies.verify.near_miss_rules import SubstitutionRule
from cachesvc.policies.verify.verifier import RULE_VERIFIERS, NearMissVerifier, NoVerifier


@pytest.fixture(scope="module")
def verifier() -> NearMissVerifier:
    return NearMissVerifier()


def check(verifier: NearMissVerifier, query: str, cached: str) -> Verdict:
    return verifier.verify(query, cached, 0.9, "default")


# (query, cached question, acceptable reasons): each pair reads alike but wants a different answer.
TRAPS = [
    # numbers and number words
    ("What is 15% of 240?", "What is 25% of 240?", {"number-mismatch"}),
    ("What is seven times eight?", "What is seven times nine?", {"number-mismatch"}),
    ("How fast does light travel?", "How fast does a car going 90 km in 2 hours travel?", {"number-mismatch"}),
    ("What is Nvidia's share price today?", "which stocks fell the most today", {"entity-mismatch"}),
    ("Where is the Dow Jones trading right now?", "How are markets doing right now?", {"entity-mismatch"}),
    ("How do I list the 10 largest files in a folder?", "How do I list the largest files in a folder?",
     {"number-mismatch"}),
    ("What is 2 to the power of 8?", "What is 2 to the power of 9?", {"number-mismatch"}),
    ("Solve x^2 + 3x - 4 = 0", "Solve x^2 - 3x - 4 = 0", {"number-mismatch"}),
    ("What's the population of Brazil in 2020?", "What's the population of Brazil in 2010?", {"number-mismatch"}),
    ("Who was the second president of the United States?", "Who was the third president of the United States?",
     {"number-mismatch"}),
    ("Sum of the interior angles of a pentagon", "Sum of the interior angles of a 7-sided polygon",
     {"number-mismatch"}),
    # named things: languages, places, companies, animals, labels
    ("How do I reverse a string in Java?", "How do I reverse a string in Kotlin?", {"entity-mismatch"}),
    ("How to connect to a MySQL database from PHP", "How to connect to a PostgreSQL database from PHP",
     {"entity-mismatch"}),
    ("What is the capital of Peru?", "What is the capital of Chile?", {"entity-mismatch"}),
    ("What is the GDP of Germany?", "What is the GDP of France?", {"entity-mismatch"}),
    ("What is Tesla's stock price right now?", "What is Nvidia's stock price right now?", {"entity-mismatch"}),
    ("Can dogs eat grapes?", "Can cats eat grapes?", {"entity-mismatch"}),
    ("Translate hello into Spanish", "Translate hello into French", {"entity-mismatch"}),
    ("Symptoms of vitamin D deficiency", "Symptoms of vitamin B deficiency", {"entity-mismatch"}),
    ("Who painted The Starry Night?", "Who painted The Night Watch?", {"entity-mismatch", "substitution"}),
    # one content word swapped for another in the same frame
    ("What is the boiling point of ethanol?", "What is the boiling point of methanol?", {"substitution"}),
    ("How many calories are in a banana?", "How many calories are in an avocado?", {"substitution"}),
    ("git merge vs rebase", "git merge vs cherry-pick", {"substitution", "entity-mismatch"}),
    # units and dates
    ("How many ounces are in a cup?", "How many ounces are in a pint?", {"unit-mismatch", "substitution"}),
    ("How many grams in an ounce?", "How many grams in a pound?", {"unit-mismatch"}),
    ("What is the bitcoin price today?", "What was the bitcoin price yesterday?", {"date-mismatch"}),
    ("What happened in March 1999?", "What happened in May 1999?", {"date-mismatch"}),
    ("Is the store open on Sunday?", "Is the store open on Saturday?", {"date-mismatch"}),
    ("Fun things to do in July", "Fun things to do in winter", {"date-mismatch"}),
    # direction and order
    ("Convert 5 miles to kilometers", "Convert 5 kilometers to miles", {"direction-swap"}),
    ("What is the euro to yen exchange rate?", "What is the yen to euro exchange rate?", {"direction-swap"}),
    ("How do I convert Celsius to Fahrenheit?", "How do I convert Fahrenheit to Celsius?", {"direction-swap"}),
    ("How do I convert a list to a tuple in Python?", "How do I convert a tuple to a list in Python?",
     {"direction-swap"}),
    ("How do I convert a PDF to Word?", "How do I convert a Word document to PDF?", {"direction-swap"}),
    # negation
    ("Is it safe to eat raw eggs?", "Is it not safe to eat raw eggs?", {"negation"}),
    ("Is Pluto a planet?", "Is Pluto not a planet?", {"negation"}),
    ("Which houseplants are non-toxic to dogs?", "Which houseplants are toxic to dogs?", {"negation", "antonym"}),
    ("How do I install Docker on Ubuntu?", "How do I uninstall Docker on Ubuntu?", {"negation", "antonym"}),
    # antonyms
    ("How do I sort a list in ascending order in Python?", "How do I sort a list in descending order in Python?",
     {"antonym"}),
    ("How do I enable dark mode on Windows?", "How do I disable dark mode on Windows?", {"antonym"}),
    ("How do I remove the first character of a string in Ruby?",
     "How do I remove the last character of a string in Ruby?", {"antonym"}),
    ("What is the maximum value in a numpy array?", "What is the minimum value in a numpy array?", {"antonym"}),
    ("Which planet is the largest?", "Which planet is the smallest?", {"antonym"}),
    ("How do I encrypt a file with gpg?", "How do I decrypt a file with gpg?", {"antonym"}),
    ("How do I upload a file to S3 with boto3?", "How do I download a file from S3 with boto3?", {"antonym"}),
    ("How to increase font size in VS Code", "How to decrease font size in VS Code", {"antonym"}),
    ("What time is sunrise in Tokyo?", "What time is sunset in Tokyo?", {"antonym"}),
    ("How do I check if a number is even in JavaScript?", "How do I check if a number is odd in JavaScript?",
     {"antonym"}),
    ("How do I push to the front of a deque instead of the back?", "How do I push to the back of a deque?",
     {"antonym"}),
    # scope
    ("What is the largest hot desert?", "What is the largest desert?", {"scope-change"}),
]

# (query, cached question): same question, other words.
PARAPHRASES = [
    ("How do I sort a list in Python?", "python sort list"),
    ("Who won the Super Bowl in 2020?", "2020 Super Bowl winner"),
    ("What does a buck converter do?", "how does a step-down converter work"),
    ("What is Tesla's stock price right now?", "TSLA share price now"),
    ("How do I sort a list in Python?", "How can I sort a Python list?"),
    ("what's the capital of peru", "What is the capital city of Peru?"),
    ("How do I reverse a string in Java?", "java reverse string example"),
    ("What is the euro to yen exchange rate?", "EUR/JPY rate"),
    ("Convert 5 miles to kilometers", "5 mi in km"),
    ("Convert 5 miles to kilometers", "how many kilometers is 5 miles"),
    ("How many grams in an ounce?", "ounce to grams"),
    ("What is 15% of 240?", "15 percent of 240"),
    ("What is 2 to the power of 8?", "2^8"),
    ("Who wrote War and Peace?", "Who is the author of War and Peace?"),
    ("How many calories are in a banana?", "calories in one banana"),
    ("How do I install Docker on Ubuntu?", "Ubuntu: how to install Docker?"),
    ("What is the bitcoin price today?", "btc price now"),
    ("What is the bitcoin price today?", "current bitcoin price"),
    ("How do I delete a branch in git?", "How to remove a git branch?"),
    ("How do I merge two dictionaries in Python?", "How to combine 2 dictionaries in python"),
    ("What is the highest mountain in Europe?", "tallest mountain in europe"),
    ("How to increase font size in VS Code", "make the font bigger in vs code"),
    ("Translate hello into Spanish", "how do you say hello in spanish"),
    ("How do I check if a number is even in JavaScript?", "js test whether an integer is evn"),
    ("Who won the 2018 World Cup?", "2018 world cup winner"),
    ("What is the distance from London to Paris?", "london to paris distance"),
]

TYPOS_AND_FORMS = [
    ("How do I reverse a string in Java?", "how to revrese a strng in jvaa"),  # typos, transposed letters
    ("How do I reverse a string in Java?", "HOW DO I REVERSE A STRING IN JAVA"),  # casing
    ("How do I reverse a string in Java?", "how do i reverse a string in java!!!"),  # punctuation
    ("How do I remove duplicates from a list in Python?", "in python, remove duplicates from a list"),  # reorder
    ("What is the capital of the United States?", "What's the capital of the US?"),  # abbreviation
    ("How do I use a hash map in JavaScript?", "How do I use a hashmap in JS?"),  # compound, abbreviation
    ("What is the melting point of aluminum?", "melting point of aluminium"),  # spelling variant
    ("How do I make a read-only file in Linux?", "make a file read only on linux"),  # hyphenation
]


@pytest.mark.parametrize(("query", "cached", "reasons"), TRAPS, ids=[t[0][:40] for t in TRAPS])
def test_look_alikes_are_rejected_with_a_reason(verifier: NearMissVerifier, query: str, cached: str,
                                                reasons: set[str]) -> None:
    verdict = check(verifier, query, cached)
    assert not verdict.accepted
    assert verdict.reason in reasons
    assert not check(verifier, cached, query).accepted, "the check is symmetric"


@pytest.mark.parametrize(("query", "cached"), PARAPHRASES + TYPOS_AND_FORMS)
def test_paraphrases_typos_and_reorderings_are_served(verifier: NearMissVerifier, query: str, cached: str) -> None:
    assert check(verifier, query, cached) == Verdict(True, "")
    assert check(verifier, cached, query).accepted


def test_identical_questions_are_accepted(verifier: NearMissVerifier) -> None:
    assert check(verifier, "What is 12 x 13?", "What is 12 x 13?").accepted


def test_no_verifier_accepts_everything() -> None:
    assert NoVerifier().verify("What is 2 + 2?", "What is 3 + 3?", 0.99, "math") == Verdict(True, "")


def test_registry_names_both_verifiers() -> None:
    assert RULE_VERIFIERS["near-miss"] is NearMissVerifier
    assert RULE_VERIFIERS["none"] is NoVerifier
    assert isinstance(RULE_VERIFIERS["near-miss"]().verify("a b c", "a b c", 1.0, "code"), Verdict)


def test_analysis_cache_is_bounded() -> None:
    small = NearMissVerifier(cache_size=3)
    for n in range(10):
        small.verify(f"What is {n} plus 1?", "What is 1 plus 1?", 0.9, "math")
    assert len(small._features) == 3


def test_invalid_settings_raise_value_error_naming_the_key() -> None:
    with pytest.raises(ValueError, match="cache_size"):
        NearMissVerifier(cache_size=-1)
    with pytest.raises(ValueError, match="max_slots"):
        SubstitutionRule(max_slots=0)
    with pytest.raises(ValueError, match="min_shared_fraction"):
        SubstitutionRule(min_shared_fraction=1.5)


def test_verification_is_fast() -> None:
    """Well under a millisecond a pair in pure Python, even with nothing cached."""
    pairs = [(q, c) for q, c, _ in TRAPS] + PARAPHRASES
    cold = NearMissVerifier(cache_size=0)
    cold.verify("warm up", "the lexicons", 0.9, "default")
    started = time.perf_counter()
    for query, cached in pairs * 3:
        cold.verify(query, cached, 0.9, "default")
    per_pair = (time.perf_counter() - started) / (3 * len(pairs))
    assert per_pair < 0.002, f"{per_pair * 1e6:.0f} µs per pair"
