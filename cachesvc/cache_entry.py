"""One cached answer with everything needed to find it again, judge its freshness and rebuild the index."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cachesvc.answer import Answer


@dataclass
class CacheEntry:
    entry_id: int  # random 62-bit id: unique across replicas without coordination
    partition: str  # scope inside which it may be shared (tenant, namespace, model, prompt, params)
    exact_key: str
    tenant: str
    namespace: str
    category: str
    model: str
    query: str | None  # the question matched semantically; None for exact-only entries
    answer: Answer
    vector: np.ndarray | None  # float32 embedding of `query`, kept so an index can be rebuilt from the store
    created_at: float
    ttl_s: float  # fresh life; the load policy may serve it up to `expires_at`
    expires_at: float  # hard expiry: after this the entry is never served and may be dropped

    def age(self, now: float) -> float:
        return max(0.0, now - self.created_at)

    def is_expired(self, now: float) -> bool:
        return now >= self.expires_at

    def vector_bytes(self) -> bytes | None:
        return None if self.vector is None else np.asarray(self.vector, dtype=np.float32).tobytes()

    @staticmethod
    def vector_from_bytes(data: bytes | None) -> np.ndarray | None:
        return None if data is None else np.frombuffer(data, dtype=np.float32).copy()
