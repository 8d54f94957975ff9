"""A question's cache category from the shipped classifier (rules, then the nearest exemplars), which is fitted on
the exemplar questions once the embedding model is up. Classification runs on a worker thread, never on the event
loop: its cost grows with the question."""

from __future__ import annotations

import asyncio
from concurrent.futures import Executor

import numpy as np

from cachesvc.policies.cache.category_classifier import CategoryClassifier, Embed
from cachesvc.policies.cache.category_rules import rule_category


class Categorizer:
    def __init__(self, executor: Executor | None = None) -> None:
        self._classifier: CategoryClassifier | None = None
        self._executor = executor  # None: the event loop's default pool

    async def start(self, encode: Embed) -> None:
        """Embed the exemplars (in a worker thread) and build the classifier on them."""
        self._classifier = await asyncio.to_thread(CategoryClassifier.from_embedder, encode)

    async def classify(self, text: str, vector: np.ndarray) -> str:
        """Rules, then the nearest exemplars of ``vector``."""
        if self._classifier is None:
            raise RuntimeError("Categorizer.classify called before start()")
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._classifier.classify,
                                                                text, vector)

    async def classify_by_rules(self, text: str) -> str:
        """The surface rules alone (no embedding): for questions too long to match semantically."""
        found = await asyncio.get_running_loop().run_in_executor(self._executor, rule_category, text)
        return found or "default"
