"""PartitionedIndex: isolation, promotion, deletes, drops, stats, thread safety."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from cachesvc.cache.partitioned_index import PartitionedIndex
from cachesvc.cache.vector_index import FlatIndex, HnswIndex, HnswParams

DIM = 32


def unit(rng: np.random.Generator, n: int) -> np.ndarray:
    v = rng.standard_normal((n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def params() -> HnswParams:
    return HnswParams(ef_search=200, initial_capacity=16)


def test_partitions_never_see_each_other() -> None:
    rng = np.random.default_rng(0)
    pi = PartitionedIndex(DIM, promote_at=64, hnsw_params=params())
    v = unit(rng, 1)[0]
    pi.add("tenant-a", 1, v)
    assert pi.search("tenant-b", v) == []  # identical vector, other partition: not found
    other = unit(rng, 100)
    for j in range(100):  # tenant-b grows past promote_at (HNSW) and still cannot see tenant-a
        pi.add("tenant-b", 100 + j, other[j])
    hits = pi.search("tenant-b", v, k=100)
    assert len(hits) == 100 and 1 not in {i for i, _ in hits}
    assert pi.search("tenant-a", v, k=10) == [(1, pytest.approx(1.0, abs=1e-5))]
    assert pi.search("nobody", v) == []


def test_promotion_keeps_results_identical_to_flat() -> None:
    rng = np.random.default_rng(1)
    vecs = unit(rng, 300)
    flat = FlatIndex(DIM)
    flat.add(range(300), vecs)
    pi = PartitionedIndex(DIM, promote_at=50, hnsw_params=params())
    for j in range(300):
        pi.add("p", j, vecs[j])
        if j == 48:
            assert pi.stats()["flat_partitions"] == 1
    st = pi.stats()
    assert st["hnsw_partitions"] == 1 and st["flat_partitions"] == 0 and st["entries"] == 300
    for q in unit(rng, 50):
        got = pi.search("p", q, k=5)
        want = flat.search(q, 5)
        assert [i for i, _ in got] == [i for i, _ in want]
        assert [s for _, s in got] == pytest.approx([s for _, s in want], abs=1e-5)


def test_delete_finds_partition_and_empty_partitions_are_dropped() -> None:
    rng = np.random.default_rng(2)
    pi = PartitionedIndex(DIM, promote_at=4, hnsw_params=params())
    vecs = unit(rng, 10)
    for j in range(6):
        pi.add("a", j, vecs[j])
    for j in range(6, 10):
        pi.add("b", j, vecs[j])
    assert pi.stats() == {"partitions": 2, "entries": 10, "hnsw_partitions": 2, "flat_partitions": 0, "promote_at": 4}
    pi.delete(3)
    pi.delete(12345)  # unknown: no-op
    assert len(pi) == 9 and pi.partition_of(3) is None
    assert 3 not in {i for i, _ in pi.search("a", vecs[3], k=10)}
    for j in range(6, 10):
        pi.delete(j)
    assert pi.stats()["partitions"] == 1 and pi.search("b", vecs[6]) == []
    pi.add("b", 50, vecs[6])  # the partition comes back fresh
    assert pi.search("b", vecs[6], k=3) == [(50, pytest.approx(1.0, abs=1e-5))]


def test_readd_replaces_and_moves_between_partitions() -> None:
    rng = np.random.default_rng(3)
    pi = PartitionedIndex(DIM, promote_at=100)
    a, b = unit(rng, 2)
    pi.add("x", 1, a)
    pi.add("x", 1, b)
    assert len(pi) == 1 and pi.search("x", b, k=1)[0][0] == 1
    pi.add("y", 1, b)  # ids are global: moving it removes it from "x"
    assert pi.search("x", b) == [] and pi.partition_of(1) == "y"
    assert pi.stats()["partitions"] == 1 and len(pi) == 1


def test_drop_partition_and_clear() -> None:
    rng = np.random.default_rng(4)
    pi = PartitionedIndex(DIM, promote_at=8, hnsw_params=params())
    vecs = unit(rng, 30)
    for j in range(20):
        pi.add("big", j, vecs[j])
    for j in range(20, 30):
        pi.add(f"small{j % 2}", j, vecs[j])
    assert sorted(pi.drop_partition("big")) == list(range(20))
    assert pi.drop_partition("big") == []
    assert pi.search("big", vecs[0]) == [] and len(pi) == 10
    pi.delete(0)  # id from the dropped partition: no-op
    assert len(pi) == 10
    pi.clear()
    assert len(pi) == 0 and pi.stats()["partitions"] == 0
    assert pi.search("small0", vecs[20]) == []
    pi.add("small0", 20, vecs[20])
    assert len(pi) == 1


def test_concurrent_partitions() -> None:
    """Writers add/delete in their own partitions (crossing promote_at) while readers search, bounded time."""
    rng = np.random.default_rng(5)
    pi = PartitionedIndex(DIM, promote_at=64, hnsw_params=params())
    anchors = {f"t{t}": unit(rng, 20) for t in range(4)}
    for t, (name, vecs) in enumerate(anchors.items()):
        for j in range(20):
            pi.add(name, t * 1_000_000 + j, vecs[j])
    errors: list[BaseException] = []
    deleted: set[int] = set()
    deadline = time.monotonic() + 3.0

    def writer(t: int) -> None:
        r = np.random.default_rng(100 + t)
        name, n = f"t{t}", t * 1_000_000 + 1000
        try:
            while time.monotonic() < deadline and n < t * 1_000_000 + 1400:
                pi.add(name, n, r.standard_normal(DIM).astype(np.float32))
                if n % 3 == 0:
                    pi.delete(n)
                    deleted.add(n)
                n += 1
        except BaseException as e:  # noqa: BLE001  (the test thread asserts there were none)
            errors.append(e)

    def reader(seed: int) -> None:
        r = np.random.default_rng(seed)
        try:
            while time.monotonic() < deadline:
                t = int(r.integers(0, 4))
                j = int(r.integers(0, 20))
                gone = set(deleted)
                hits = pi.search(f"t{t}", anchors[f"t{t}"][j], k=4)
                assert hits[0][0] == t * 1_000_000 + j, hits
                assert all(t * 1_000_000 <= i < (t + 1) * 1_000_000 for i, _ in hits)  # isolation
                assert not gone & {i for i, _ in hits}
        except BaseException as e:  # noqa: BLE001  (the test thread asserts there were none)
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(2)]
    threads += [threading.Thread(target=reader, args=(s,)) for s in range(3)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=15)
    assert not errors, errors[0]
    st = pi.stats()
    assert st["partitions"] == 4 and st["hnsw_partitions"] >= 2
    assert st["entries"] == len(pi) == sum(len(pi.search(f"t{t}", anchors[f"t{t}"][0], k=10_000)) for t in range(4))


def test_partition_indexes_are_the_expected_types() -> None:
    pi = PartitionedIndex(DIM, promote_at=2)
    rng = np.random.default_rng(6)
    pi.add("p", 1, unit(rng, 1)[0])
    assert isinstance(pi._parts["p"].index, FlatIndex)
    pi.add("p", 2, unit(rng, 1)[0])
    assert isinstance(pi._parts["p"].index, HnswIndex)
    with pytest.raises(ValueError):
        PartitionedIndex(DIM, promote_at=0)
