"""A question's cache category from the shipped classifier (rules, then the nearest exemplars), which is fitted on
the exemplar questions once the embedding model is up."""

from __future__ import annotations

import asyncio

import numpy as np

from cachesvc.policies.cache.category_classifier import CategoryClassifier, Embed


class Categorizer:
    def __init__(self) -> None:
        self._classifier: CategoryClassifier | None = None

    async def start(self, encode: Embed) -> None:
        """Embed the exemplars (in a worker thread) and build the classifier on them."""
        self._classifier = await asyncio.to_thread(CategoryClassifier.from_embedder, encode)

    def classify(self, text: str, vector: np.ndarray) -> str:
        if self._classifier is None:
            raise RuntimeError("Categorizer.classify called before start()")
        return self._classifier.classify(text, vector)
