"""Vectors of single words from the sentence embedding model, kept in a bounded LRU: the pair model compares the
words two questions do not share (sink ~ drain), and a cache's vocabulary repeats, so most lookups are free."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from threading import Lock

import numpy as np

from cachesvc.embedding.encoders import Encode

MAX_WORD_CHARS = 64  # longer "words" (hashes, pasted blobs) are not embedded: they get no vector


class WordVectors:
    """``vectors(words)`` -> {word: unit vector}; unknown words are embedded in one batch, then remembered."""

    def __init__(self, encode: Encode, capacity: int = 50_000) -> None:
        self._encode = encode
        self._capacity = capacity
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = Lock()
        self.embedded = 0  # words run through the model so far

    def __call__(self, words: Sequence[str]) -> Mapping[str, np.ndarray]:
        found: dict[str, np.ndarray] = {}
        missing: list[str] = []
        with self._lock:
            for word in words:
                vector = self._cache.get(word)
                if vector is not None:
                    self._cache.move_to_end(word)
                    found[word] = vector
                elif 0 < len(word) <= MAX_WORD_CHARS and word not in missing:
                    missing.append(word)
        if missing:
            vectors = np.asarray(self._encode(missing), dtype=np.float32)
            with self._lock:
                self.embedded += len(missing)
                for word, vector in zip(missing, vectors, strict=True):
                    found[word] = vector
                    self._cache[word] = vector
                while len(self._cache) > self._capacity:
                    self._cache.popitem(last=False)
        return found

    def __len__(self) -> int:
        return len(self._cache)
