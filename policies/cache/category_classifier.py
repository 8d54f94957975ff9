"""Assigns a question its cache category: sure surface rules first, then a vote of the nearest exemplars.

The category picks the similarity threshold, TTL and quota (categories.py), so a price question must not be
cached for a month as if it were trivia. Falls back to "default" when no exemplar is close enough.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .categories import CATEGORY_NAMES
from .category_exemplars import CATEGORY_EXEMPLARS
from .category_rules import rule_category

Embed = Callable[[list[str]], np.ndarray]


class CategoryClassifier:
    """Rules, then k-nearest exemplars (similarity-weighted vote), then "default"."""

    def __init__(
        self,
        exemplar_vectors: dict[str, np.ndarray],
        k: int = 7,
        min_similarity: float = 0.25,
        use_rules: bool = True,
    ) -> None:
        if not exemplar_vectors:
            raise ValueError("category_classifier.exemplar_vectors must name at least one category")
        unknown = sorted(set(exemplar_vectors) - set(CATEGORY_NAMES))
        if unknown:
            raise ValueError(f"category_classifier.exemplar_vectors has unknown categories: {unknown}")
        if k < 1:
            raise ValueError("category_classifier.k must be >= 1")
        if not -1.0 <= min_similarity <= 1.0:
            raise ValueError("category_classifier.min_similarity must be in [-1, 1]")
        blocks, labels = [], []
        for category, vectors in exemplar_vectors.items():
            matrix = np.asarray(vectors, dtype=np.float32)
            if matrix.ndim != 2 or matrix.shape[0] == 0:
                raise ValueError(f"category_classifier.exemplar_vectors[{category!r}] must be a non-empty (n, d) array")
            blocks.append(matrix)
            labels.extend([category] * matrix.shape[0])
        widths = {block.shape[1] for block in blocks}
        if len(widths) != 1:
            raise ValueError("category_classifier.exemplar_vectors must all have the same dimension")
        self._matrix = np.concatenate(blocks)
        self._labels = np.array(labels)
        self._k = min(k, len(labels))
        self._min_similarity = min_similarity
        self._use_rules = use_rules

    @classmethod
    def from_embedder(cls, embed: Embed, **options: Any) -> CategoryClassifier:
        """Embed the shipped exemplar questions once (normalized vectors) and build a classifier on them."""
        vectors = {category: np.asarray(embed(list(texts)), dtype=np.float32)
                   for category, texts in CATEGORY_EXEMPLARS.items()}
        return cls(vectors, **options)

    def classify(self, text: str, vector: np.ndarray) -> str:
        """The question's category, one of CATEGORY_NAMES."""
        if self._use_rules:
            found = rule_category(text)
            if found is not None:
                return found
        return self.nearest(vector)

    def nearest(self, vector: np.ndarray) -> str:
        """The category of the nearest exemplars, ignoring the rules."""
        similarities = self._matrix @ np.asarray(vector, dtype=np.float32).reshape(-1)
        top = np.argpartition(-similarities, self._k - 1)[: self._k]
        if similarities[top].max() < self._min_similarity:
            return "default"
        votes: dict[str, float] = {}
        for index in top:
            if similarities[index] >= self._min_similarity:
                label = str(self._labels[index])
                votes[label] = votes.get(label, 0.0) + float(similarities[index])
        return max(votes, key=votes.__getitem__)
