"""A cache entry, described once: where it belongs (``EntryScope``), what a request will store (``EntryDraft``) and
what the cache holds (``CacheEntry``: the draft, the answer and its lifetime)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from cachesvc.openai.answer import Answer


@dataclass(frozen=True)
class EntryScope:
    """Who may be served an entry and what an invalidation can select it by."""

    partition: str  # scope inside which it may be shared (tenant, namespace, model, prompt, params)
    exact_key: str
    tenant: str
    namespace: str
    category: str
    model: str


@dataclass(frozen=True)
class EntryDraft:
    """What a request stores if its answer turns out cacheable; the cache accepts it whole."""

    scope: EntryScope
    query: str | None  # the question matched semantically; None for exact-only entries
    vector: np.ndarray | None  # float32 embedding of `query`
    ttl_s: float  # fresh life; the load policy may serve it up to ttl_s * max_ttl_factor
    max_ttl_factor: float


@dataclass
class CacheEntry:
    entry_id: int  # random 62-bit id: unique across replicas without coordination
    scope: EntryScope
    query: str | None
    answer: Answer
    vector: np.ndarray | None  # kept so an index can be rebuilt from the store
    created_at: float
    ttl_s: float
    expires_at: float  # hard expiry: after this the entry is never served and may be dropped

    @classmethod
    def from_draft(cls, entry_id: int, draft: EntryDraft, answer: Answer, now: float) -> CacheEntry:
        vector = None if draft.vector is None else np.asarray(draft.vector, dtype=np.float32)
        return cls(entry_id, draft.scope, draft.query, answer, vector, now, draft.ttl_s,
                   now + draft.ttl_s * draft.max_ttl_factor)

    def age(self, now: float) -> float:
        return max(0.0, now - self.created_at)

    def is_expired(self, now: float) -> bool:
        return now >= self.expires_at

    def vector_bytes(self) -> bytes | None:
        return None if self.vector is None else np.asarray(self.vector, dtype=np.float32).tobytes()

    @staticmethod
    def vector_from_bytes(data: bytes | None) -> np.ndarray | None:
        return None if data is None else np.frombuffer(data, dtype=np.float32).copy()


SCOPE_FIELDS = tuple(f.name for f in dataclasses.fields(EntryScope))
