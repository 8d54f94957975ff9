"""The router's context: the query embedding the cache already computes, reduced to a few dimensions by a fixed
random orthonormal projection (seeded, so every replica and every restart projects alike), unit-normalised, plus a
bias term. Regret and per-request cost both grow with the dimension, so the default is chosen by measurement
(docs/adapter-routing.md)."""

from __future__ import annotations

import numpy as np

DEFAULT_DIM = 32  # reduced dimension, bias excluded; measured in benchmarks/bench_adapter_routing.py --dims


class ContextProjection:
    """``embedding (input_dim,) -> context (dim + 1,)``: projected, normalised, then a constant 1 appended."""

    def __init__(self, input_dim: int, dim: int = DEFAULT_DIM, *, seed: int = 0) -> None:
        if input_dim < 1 or dim < 1:
            raise ValueError("context dimensions must be positive")
        self.input_dim, self.dim = input_dim, dim
        if dim >= input_dim:
            self._matrix: np.ndarray | None = None  # no reduction: the embedding as it is
            self.dim = input_dim
        else:
            gaussian = np.random.default_rng(seed).standard_normal((input_dim, dim))
            self._matrix = np.linalg.qr(gaussian)[0]  # orthonormal columns: distances are kept on average

    @property
    def size(self) -> int:
        """Length of a context vector (the reduced dimension plus the bias)."""
        return self.dim + 1

    def __call__(self, embedding: np.ndarray) -> np.ndarray:
        vector = np.asarray(embedding, dtype=np.float64).reshape(-1)
        if vector.shape[0] != self.input_dim:
            raise ValueError(f"embedding has {vector.shape[0]} dimensions, expected {self.input_dim}")
        if not np.all(np.isfinite(vector)):
            raise ValueError("embedding is not finite")
        reduced = vector if self._matrix is None else vector @ self._matrix
        norm = float(np.linalg.norm(reduced))
        if norm > 0:
            reduced = reduced / norm
        return np.concatenate([reduced, [1.0]])
