"""Vector indexes for the semantic cache: exact (numpy) and approximate (hnswlib HNSW).

Both return cosine similarity in [-1, 1], best first. Both normalize what they are given, so
callers that already pass unit vectors (the embedder does) pay one cheap division and nothing more.
Both are thread-safe: any number of concurrent searches, writes exclusive (readers/writer lock).
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Protocol, runtime_checkable

import hnswlib
import numpy as np

__all__ = ["FlatIndex", "HnswIndex", "HnswParams", "RWLock", "VectorIndex"]

Ids = Sequence[int] | np.ndarray  # int ids, or an int array of them
_EPS = 1e-30  # same guard hnswlib uses when normalizing, so a zero vector stays zero in both indexes


@runtime_checkable
class VectorIndex(Protocol):
    """What the cache needs from a vector index; ids are non-negative ints, vectors float32 (n, dim)."""

    dim: int

    def add(self, ids: Ids, vectors: np.ndarray) -> None: ...

    def search(self, vector: np.ndarray, k: int) -> list[tuple[int, float]]: ...

    def delete(self, id: int) -> None: ...

    def __len__(self) -> int: ...

    def items(self) -> tuple[np.ndarray, np.ndarray]: ...


class RWLock:
    """Writer-preferring readers/writer lock: many concurrent readers, one writer; not reentrant."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._readers = 0
        self._writer = False
        self._writers_waiting = 0

    @contextmanager
    def read(self) -> Iterator[None]:
        """Hold the lock shared (searches)."""
        with self._cond:
            while self._writer or self._writers_waiting:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if self._readers == 0:
                    self._cond.notify_all()

    @contextmanager
    def write(self) -> Iterator[None]:
        """Hold the lock exclusive (adds, deletes, resizes)."""
        with self._cond:
            self._writers_waiting += 1
            try:
                while self._writer or self._readers:
                    self._cond.wait()
            finally:
                self._writers_waiting -= 1
            self._writer = True
        try:
            yield
        finally:
            with self._cond:
                self._writer = False
                self._cond.notify_all()


def _as_matrix(vectors: np.ndarray, dim: int) -> np.ndarray:
    """Coerce to a C-contiguous float32 (n, dim) matrix, rejecting a wrong width."""
    m = np.ascontiguousarray(vectors, dtype=np.float32)
    if m.ndim == 1:
        m = m.reshape(1, -1)
    if m.ndim != 2 or m.shape[1] != dim:
        raise ValueError(f"expected vectors of shape (n, {dim}), got {np.shape(vectors)}")
    return m


def _as_query(vector: np.ndarray, dim: int) -> np.ndarray:
    """Coerce one query to a float32 (dim,) vector."""
    q = np.asarray(vector, dtype=np.float32)
    if q.ndim != 1:
        q = q.reshape(-1)
    if q.shape[0] != dim:
        raise ValueError(f"expected a query of {dim} floats, got shape {np.shape(vector)}")
    return q


def _clip(s: float) -> float:
    """Clamp float rounding (e.g. 1.0000001) into [-1, 1]."""
    return -1.0 if s < -1.0 else 1.0 if s > 1.0 else s


def _normalize(m: np.ndarray) -> np.ndarray:
    """Row-normalize a float32 matrix (new array)."""
    norms = np.sqrt(np.einsum("ij,ij->i", m, m, dtype=np.float32)) + np.float32(_EPS)
    return m / norms[:, None]


def _prepare(ids: Ids, vectors: np.ndarray, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """Validate an add batch; for an id repeated in the batch the last vector wins."""
    m = _as_matrix(vectors, dim)
    idx = np.asarray(ids, dtype=np.int64).reshape(-1)
    if idx.shape[0] != m.shape[0]:
        raise ValueError(f"{idx.shape[0]} ids for {m.shape[0]} vectors")
    if idx.size and idx.min() < 0:
        raise ValueError("ids must be non-negative")
    if np.unique(idx).size != idx.size:
        # np.unique on the reversed array gives each id's last occurrence.
        _, first_in_rev = np.unique(idx[::-1], return_index=True)
        keep = np.sort(idx.size - 1 - first_in_rev)
        idx, m = idx[keep], m[keep]
    return idx, m


def _einsum_rowdot(m: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Row-wise dot products for numpy < 2.0 (no np.vecdot)."""
    return np.einsum("ij,j->i", m, q)


# Row-wise dot products, computed in the calling thread. Not `m @ q`: OpenBLAS runs gemv on all
# cores, and on a busy 2-core box its worker wake-ups made that call take ~8 ms instead of ~50 us.
_rowdot = getattr(np, "vecdot", _einsum_rowdot)


def _top_k(sims: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest values, largest first."""
    n = sims.shape[0]
    if k >= n:
        return np.argsort(sims)[::-1]
    part = np.argpartition(sims, n - k)[n - k :]
    return part[np.argsort(sims[part])[::-1]]


class FlatIndex:
    """Exact cosine search over a dense numpy matrix; fastest for small partitions (a few thousand)."""

    def __init__(self, dim: int, *, capacity: int = 64) -> None:
        self.dim = dim
        self._vecs = np.empty((max(1, capacity), dim), dtype=np.float32)
        self._ids = np.empty(max(1, capacity), dtype=np.int64)
        self._row: dict[int, int] = {}
        self._lock = RWLock()

    def __len__(self) -> int:
        return len(self._row)

    def add(self, ids: Ids, vectors: np.ndarray) -> None:
        """Insert vectors; an id already present has its vector replaced."""
        idx, m = _prepare(ids, vectors, self.dim)
        m = _normalize(m)
        with self._lock.write():
            n = len(self._row)
            grow = n + sum(1 for i in idx.tolist() if i not in self._row)
            if grow > self._vecs.shape[0]:
                cap = max(grow, 2 * self._vecs.shape[0])
                vecs = np.empty((cap, self.dim), dtype=np.float32)
                vecs[:n] = self._vecs[:n]
                ids_arr = np.empty(cap, dtype=np.int64)
                ids_arr[:n] = self._ids[:n]
                self._vecs, self._ids = vecs, ids_arr
            for i, row_vec in zip(idx.tolist(), m):
                row = self._row.get(i)
                if row is None:
                    row = len(self._row)
                    self._row[i] = row
                    self._ids[row] = i
                self._vecs[row] = row_vec

    def search(self, vector: np.ndarray, k: int) -> list[tuple[int, float]]:
        """Exact top-k by cosine similarity."""
        q = _as_query(vector, self.dim)
        # Rank by raw dot product and divide only the k winners by |q|: same order, less work.
        qnorm = float(np.sqrt(np.dot(q, q))) + _EPS
        with self._lock.read():
            n = len(self._row)
            if n == 0 or k <= 0:
                return []
            dots = _rowdot(self._vecs[:n], q)
            order = _top_k(dots, k)
            ids = self._ids[order].tolist()
        return [(i, _clip(d / qnorm)) for i, d in zip(ids, dots[order].tolist())]

    def delete(self, id: int) -> None:
        """Remove an id (swap-with-last); unknown ids are ignored."""
        with self._lock.write():
            row = self._row.pop(int(id), None)
            if row is None:
                return
            last = len(self._row)
            if row != last:
                moved = int(self._ids[last])
                self._ids[row] = moved
                self._vecs[row] = self._vecs[last]
                self._row[moved] = row

    def items(self) -> tuple[np.ndarray, np.ndarray]:
        """Copies of the live (ids, unit vectors)."""
        with self._lock.read():
            n = len(self._row)
            return self._ids[:n].copy(), self._vecs[:n].copy()


@dataclass(frozen=True)
class HnswParams:
    """HNSW build/search parameters; ef_search trades recall for latency at query time."""

    M: int = 16
    ef_construction: int = 200
    ef_search: int = 64
    initial_capacity: int = 1024
    seed: int = 100


class HnswIndex:
    """Approximate cosine search with hnswlib (space="cosine": similarity = 1 - hnswlib distance).

    Capacity doubles as needed. Deletes are hnswlib mark_deleted; their slots are reused by later
    adds (allow_replace_deleted), so a churning cache does not grow without bound. hnswlib's
    knn_query is safe alongside itself but not alongside add_items/resize_index, hence the RWLock.
    """

    _SPACE = "cosine"

    def __init__(self, dim: int, params: HnswParams | None = None, *, capacity: int | None = None) -> None:
        self.dim = dim
        self.params = params or HnswParams()
        self._index = hnswlib.Index(space=self._SPACE, dim=dim)
        self._index.init_index(
            max_elements=max(1, capacity or self.params.initial_capacity),
            M=self.params.M,
            ef_construction=self.params.ef_construction,
            random_seed=self.params.seed,
            allow_replace_deleted=True,
        )
        self._index.set_ef(self.params.ef_search)
        self._index.set_num_threads(1)
        self._live: set[int] = set()
        self._lock = RWLock()

    def __len__(self) -> int:
        return len(self._live)

    @property
    def capacity(self) -> int:
        """Slots allocated (live + deleted-awaiting-reuse + free)."""
        return int(self._index.max_elements)

    @property
    def ef_search(self) -> int:
        """Current query-time ef."""
        return int(self._index.ef)

    @ef_search.setter
    def ef_search(self, ef: int) -> None:
        with self._lock.write():
            self._index.set_ef(int(ef))

    def add(self, ids: Ids, vectors: np.ndarray, *, num_threads: int = 1) -> None:
        """Insert vectors; an id already present has its vector replaced (num_threads: build parallelism)."""
        idx, m = _prepare(ids, vectors, self.dim)
        if idx.size == 0:
            return
        with self._lock.write():
            ix = self._index
            is_live = np.fromiter((i in self._live for i in idx.tolist()), dtype=bool, count=idx.size)
            deleted_slots = ix.element_count - len(self._live)
            n_new = int((~is_live).sum())
            needed = ix.element_count + max(0, n_new - deleted_slots)
            if needed > ix.max_elements:
                ix.resize_index(max(needed, 2 * ix.max_elements))
            update = is_live.copy()
            if deleted_slots:
                # A deleted id still in the graph must be revived in place: replace_deleted would give it
                # a second slot, and the later reuse of its old slot would unlink the live one.
                for j in np.flatnonzero(~is_live).tolist():
                    try:
                        ix.unmark_deleted(int(idx[j]))
                        update[j] = True
                    except RuntimeError:  # its slot was already reused by another id
                        pass
            if update.any():
                ix.add_items(m[update], idx[update], num_threads=num_threads, replace_deleted=False)
            if not update.all():
                fresh = ~update
                ix.add_items(m[fresh], idx[fresh], num_threads=num_threads, replace_deleted=True)
            self._live.update(idx.tolist())

    def search(self, vector: np.ndarray, k: int) -> list[tuple[int, float]]:
        """Approximate top-k by cosine similarity; single-threaded knn_query, as the server calls it."""
        q = _as_query(vector, self.dim)
        with self._lock.read():
            k = min(k, len(self._live))
            if k <= 0:
                return []
            while True:
                try:
                    labels, dists = self._index.knn_query(q, k=k, num_threads=1)
                    break
                except RuntimeError:
                    # Fewer than k live nodes were reachable (heavily deleted graph): ask for fewer.
                    if k == 1:
                        return self._exact_unlocked(q, 1)
                    k //= 2
        return [(i, _clip(1.0 - d)) for i, d in zip(labels[0].tolist(), dists[0].tolist())]

    def _exact_unlocked(self, q: np.ndarray, k: int) -> list[tuple[int, float]]:
        """Brute-force fallback over live entries; caller holds the lock."""
        ids = np.fromiter(self._live, dtype=np.int64, count=len(self._live))
        vecs = np.asarray(self._index.get_items(ids), dtype=np.float32)
        sims = vecs @ _normalize(q.reshape(1, -1))[0]
        order = _top_k(sims, k)
        return [(int(ids[o]), _clip(float(sims[o]))) for o in order.tolist()]

    def delete(self, id: int) -> None:
        """Mark an id deleted (its slot is reused by a later add); unknown ids are ignored."""
        id = int(id)
        with self._lock.write():
            if id in self._live:
                self._index.mark_deleted(id)
                self._live.discard(id)

    def items(self) -> tuple[np.ndarray, np.ndarray]:
        """Copies of the live (ids, unit vectors)."""
        with self._lock.read():
            ids = np.fromiter(self._live, dtype=np.int64, count=len(self._live))
            if ids.size == 0:
                return ids, np.empty((0, self.dim), dtype=np.float32)
            return ids, np.asarray(self._index.get_items(ids), dtype=np.float32)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the graph to `path` and params + live ids to `path`.json (hnswlib does not persist ef)."""
        path = os.fspath(path)
        with self._lock.read():
            self._index.save_index(path)
            meta = {
                "dim": self.dim,
                "space": self._SPACE,
                "params": asdict(self.params),
                "ef_search": int(self._index.ef),
                "ids": sorted(self._live),
            }
        tmp = path + ".json.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(meta, f)
        os.replace(tmp, path + ".json")

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> HnswIndex:
        """Read an index written by save(), restoring ef_search."""
        path = os.fspath(path)
        with open(path + ".json", encoding="utf-8") as f:
            meta = json.load(f)
        if meta.get("space") != cls._SPACE:
            raise ValueError(f"index at {path} uses space {meta.get('space')!r}, expected {cls._SPACE!r}")
        self = cls.__new__(cls)
        self.dim = int(meta["dim"])
        self.params = HnswParams(**meta["params"])
        self._index = hnswlib.Index(space=cls._SPACE, dim=self.dim)
        self._index.load_index(path, max_elements=0, allow_replace_deleted=True)
        self._index.set_ef(int(meta["ef_search"]))
        self._index.set_num_threads(1)
        self._live = set(meta["ids"])
        self._lock = RWLock()
        return self
