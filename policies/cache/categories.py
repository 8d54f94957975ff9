"""Per-category cache policy: how similar is similar enough, how long an answer lives, how many to keep.

Categories differ (arXiv 2510.26835): code clusters densely and stays valid for months, prices go stale
in minutes, conversation is sparse. One threshold or one TTL for all of them is wrong for most.
"""

from __future__ import annotations

from dataclasses import dataclass

CATEGORY_NAMES: tuple[str, ...] = ("code", "conversation", "volatile", "math", "knowledge", "default")


@dataclass(frozen=True)
class CategoryPolicy:
    """The cache rules of one category; the load-adaptive policy may move threshold and TTL within bounds."""

    name: str
    similarity_threshold: float  # cosine similarity a semantic hit needs (before verification)
    ttl_s: float  # how long an entry is served
    max_entries: int  # quota; past it, entries of this category are evicted (LRU within the category)
    enabled: bool = True
    semantic: bool = True  # False: exact tier only (e.g. arithmetic, where a near match is a wrong answer)
    # Bounds for the load-adaptive policy: under overload the threshold may drop to this floor
    # and the TTL may stretch up to ttl_s * max_ttl_factor.
    min_similarity_threshold: float | None = None
    max_ttl_factor: float = 1.0
    target_precision: float | None = None  # the learned verifier's target here (None: cache.target_precision)
    # Under overload the load policy may lower the learned verifier's target precision down to this (None: never).
    min_target_precision: float | None = None

    def __post_init__(self) -> None:
        if not 0.0 < self.similarity_threshold <= 1.0:
            raise ValueError(f"categories.{self.name}.similarity_threshold must be in (0, 1]")
        if self.ttl_s <= 0:
            raise ValueError(f"categories.{self.name}.ttl_s must be > 0")
        if self.max_entries < 1:
            raise ValueError(f"categories.{self.name}.max_entries must be >= 1")
        floor = self.min_similarity_threshold
        if floor is not None and not 0.0 < floor <= self.similarity_threshold:
            raise ValueError(
                f"categories.{self.name}.min_similarity_threshold must be in (0, similarity_threshold]"
            )
        if self.max_ttl_factor < 1.0:
            raise ValueError(f"categories.{self.name}.max_ttl_factor must be >= 1")
        for name in ("target_precision", "min_target_precision"):
            value = getattr(self, name)
            if value is not None and not 0.5 <= value < 1.0:
                raise ValueError(f"categories.{self.name}.{name} must be in [0.5, 1) or null")

    @property
    def threshold_floor(self) -> float:
        return self.similarity_threshold if self.min_similarity_threshold is None else self.min_similarity_threshold

    def summary(self) -> dict[str, object]:
        """The settings an operator checks first (admin stats)."""
        return {"similarity_threshold": self.similarity_threshold, "ttl_s": self.ttl_s,
                "max_entries": self.max_entries, "enabled": self.enabled, "semantic": self.semantic}



HOUR = 3600.0
DAY = 24 * HOUR

# Shipped defaults. Thresholds are cosine similarities of all-MiniLM-L6-v2 embeddings. With the learned verifier
# (the default) they are pre-filters: low enough to keep most paraphrases among the candidates, since the
# verifier's calibrated bar decides (docs/verification.md). With `verifier: near-miss` use its tuned values:
# code and conversation 0.74, knowledge 0.67, default 0.80.
DEFAULT_CATEGORIES: dict[str, CategoryPolicy] = {
    "code": CategoryPolicy(
        "code", similarity_threshold=0.55, ttl_s=30 * DAY, max_entries=50_000,
        min_similarity_threshold=0.5, max_ttl_factor=2.0, min_target_precision=0.95,
    ),
    "conversation": CategoryPolicy(
        "conversation", similarity_threshold=0.5, ttl_s=7 * DAY, max_entries=20_000,
        min_similarity_threshold=0.45, max_ttl_factor=2.0, min_target_precision=0.95,
    ),
    "volatile": CategoryPolicy(
        "volatile", similarity_threshold=0.44, ttl_s=300.0, max_entries=5_000,
        min_similarity_threshold=0.42, max_ttl_factor=3.0, min_target_precision=0.95,
    ),
    "math": CategoryPolicy(
        "math", similarity_threshold=0.42, ttl_s=30 * DAY, max_entries=20_000,
        min_similarity_threshold=0.39, max_ttl_factor=2.0, min_target_precision=0.95,
    ),
    "knowledge": CategoryPolicy(
        "knowledge", similarity_threshold=0.5, ttl_s=30 * DAY, max_entries=50_000,
        min_similarity_threshold=0.45, max_ttl_factor=2.0, min_target_precision=0.95,
    ),
    "default": CategoryPolicy(
        "default", similarity_threshold=0.55, ttl_s=DAY, max_entries=20_000,
        min_similarity_threshold=0.5, max_ttl_factor=2.0, min_target_precision=0.95,
    ),
}
