"""FlatIndex and HnswIndex: exactness, deletes, replace, growth, concurrency, persistence."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from cachesvc.cache.vector_index import FlatIndex, HnswIndex, HnswParams, VectorIndex

DIM = 32


def unit(rng: np.random.Generator, n: int, dim: int = DIM) -> np.ndarray:
    v = rng.standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def exact(vecs: np.ndarray, ids: np.ndarray, q: np.ndarray, k: int) -> list[int]:
    sims = vecs @ q
    return ids[np.argsort(-sims, kind="stable")[:k]].tolist()


def small_hnsw(capacity: int = 16) -> HnswIndex:
    return HnswIndex(DIM, HnswParams(ef_search=200, initial_capacity=capacity))


@pytest.fixture(params=["flat", "hnsw"])
def index(request: pytest.FixtureRequest) -> VectorIndex:
    return FlatIndex(DIM, capacity=4) if request.param == "flat" else small_hnsw()


def test_protocol_conformance(index: VectorIndex) -> None:
    assert isinstance(index, VectorIndex)


def test_exact_nearest_on_small_data(index: VectorIndex) -> None:
    rng = np.random.default_rng(0)
    vecs = unit(rng, 300)
    ids = np.arange(1000, 1300)
    index.add(ids, vecs)
    assert len(index) == 300
    for q in unit(rng, 40):
        hits = index.search(q, 5)
        assert [i for i, _ in hits] == exact(vecs, ids, q, 5)
        sims = [s for _, s in hits]
        assert sims == sorted(sims, reverse=True)
        assert sims[0] == pytest.approx(float(vecs[hits[0][0] - 1000] @ q), abs=1e-5)
    # A stored vector finds itself with similarity ~1.
    top_id, top_sim = index.search(vecs[17], 1)[0]
    assert top_id == 1017 and top_sim == pytest.approx(1.0, abs=1e-5)


def test_similarity_is_cosine_for_unnormalized_input(index: VectorIndex) -> None:
    index.add([1, 2], np.array([[3.0] + [0.0] * (DIM - 1), [-2.0] + [0.0] * (DIM - 1)], dtype=np.float32))
    hits = index.search(np.array([0.5] + [0.0] * (DIM - 1), dtype=np.float32), 2)
    assert hits[0][0] == 1 and hits[0][1] == pytest.approx(1.0, abs=1e-6)
    assert hits[1][0] == 2 and hits[1][1] == pytest.approx(-1.0, abs=1e-6)


def test_k_larger_than_size_and_empty(index: VectorIndex) -> None:
    rng = np.random.default_rng(1)
    assert index.search(unit(rng, 1)[0], 3) == []
    index.add([5, 6, 7], unit(rng, 3))
    assert sorted(i for i, _ in index.search(unit(rng, 1)[0], 50)) == [5, 6, 7]
    with pytest.raises(ValueError):
        index.add([8], unit(rng, 1, DIM + 1))


def test_deleted_ids_never_returned(index: VectorIndex) -> None:
    rng = np.random.default_rng(2)
    vecs = unit(rng, 200)
    ids = np.arange(200)
    index.add(ids, vecs)
    gone = set(range(0, 200, 3))
    for i in gone:
        index.delete(i)
    index.delete(999_999)  # unknown: no-op
    assert len(index) == 200 - len(gone)
    keep = np.array(sorted(set(range(200)) - gone))
    for j in range(200):
        hits = index.search(vecs[j], 10)
        got = [i for i, _ in hits]
        assert not gone & set(got)
        assert got == exact(vecs[keep], keep, vecs[j], 10)
    assert set(index.items()[0].tolist()) == set(keep.tolist())


def test_delete_everything_then_reuse(index: VectorIndex) -> None:
    rng = np.random.default_rng(3)
    index.add(range(50), unit(rng, 50))
    for i in range(50):
        index.delete(i)
    assert len(index) == 0 and index.search(unit(rng, 1)[0], 4) == []
    vecs = unit(rng, 50)
    index.add(range(100, 150), vecs)
    assert index.search(vecs[7], 1)[0][0] == 107
    assert set(index.items()[0].tolist()) == set(range(100, 150))


def test_replace_semantics(index: VectorIndex) -> None:
    rng = np.random.default_rng(4)
    a, b = unit(rng, 2)
    index.add([1], a)
    index.add([1], b)
    assert len(index) == 1
    hit = index.search(b, 1)[0]
    assert hit[0] == 1 and hit[1] == pytest.approx(1.0, abs=1e-5)
    ids, vecs = index.items()
    assert ids.tolist() == [1] and np.allclose(vecs[0], b, atol=1e-6)
    # Duplicate id inside one batch: the last vector wins.
    index.add([2, 2], np.stack([a, b]))
    assert len(index) == 2
    ids, vecs = index.items()
    got = dict(zip(ids.tolist(), vecs))
    assert np.allclose(got[2], b, atol=1e-6)


def test_readd_after_delete(index: VectorIndex) -> None:
    rng = np.random.default_rng(5)
    vecs = unit(rng, 40)
    index.add(range(40), vecs)
    for i in range(10):
        index.delete(i)
    new = unit(rng, 10)
    index.add(range(10), new)  # previously deleted ids come back with new vectors
    index.add(range(40, 45), unit(rng, 5))  # fresh ids may reuse freed slots
    assert len(index) == 45
    for i in range(10):
        assert index.search(new[i], 1)[0][0] == i
    ids = index.items()[0].tolist()
    assert sorted(ids) == list(range(45))


def test_hnsw_slot_reuse_keeps_labels_consistent() -> None:
    """Deleted slots get reused by fresh ids; a reused slot must never unlink a revived id."""
    rng = np.random.default_rng(6)
    idx = small_hnsw(capacity=64)
    live: dict[int, np.ndarray] = {}
    next_id = 0
    for _ in range(30):
        batch = unit(rng, 8)
        idx.add(range(next_id, next_id + 8), batch)
        live.update({next_id + j: batch[j] for j in range(8)})
        next_id += 8
        for i in rng.choice(sorted(live), size=5, replace=False).tolist():
            idx.delete(i)
            del live[i]
        revived = int(rng.integers(0, next_id))
        v = unit(rng, 1)[0]
        idx.add([revived], v)
        live[revived] = v
    assert len(idx) == len(live)
    assert idx.capacity < next_id  # slots were recycled rather than grown
    ids, vecs = idx.items()
    assert set(ids.tolist()) == set(live)
    for i, v in zip(ids.tolist(), vecs):
        assert np.allclose(v, live[i], atol=1e-5)
        assert idx.search(live[i], 1)[0][0] == i


def test_hnsw_grows_past_initial_capacity() -> None:
    rng = np.random.default_rng(7)
    idx = small_hnsw(capacity=8)
    vecs = unit(rng, 500)
    for start in range(0, 500, 37):
        idx.add(range(start, min(start + 37, 500)), vecs[start : start + 37])
    assert len(idx) == 500 and idx.capacity >= 500
    assert idx.capacity <= 2 * 512
    for j in range(0, 500, 25):
        assert idx.search(vecs[j], 1)[0][0] == j


def test_flat_grows_past_initial_capacity() -> None:
    rng = np.random.default_rng(8)
    idx = FlatIndex(DIM, capacity=2)
    vecs = unit(rng, 100)
    for j in range(100):
        idx.add([j], vecs[j])
    assert len(idx) == 100
    assert all(idx.search(vecs[j], 1)[0][0] == j for j in range(100))


def test_concurrent_add_and_search() -> None:
    """Several searcher threads while one writer adds, replaces and deletes, for a bounded time."""
    rng = np.random.default_rng(9)
    idx = small_hnsw(capacity=16)  # forces several resizes during the run
    base = unit(rng, 200)
    idx.add(range(200), base)
    extra = unit(rng, 1000)
    deleted: set[int] = set()
    errors: list[BaseException] = []
    stop = threading.Event()
    searches = [0, 0, 0]
    deadline = time.monotonic() + 2.0

    def writer() -> None:
        try:
            n = 1000
            while time.monotonic() < deadline:
                j = n % 1000
                idx.add(range(n, n + 10), np.roll(extra, -j, axis=0)[:10])
                idx.add([n + 1], extra[(j + 500) % 1000])  # replace a live id
                idx.delete(n)
                deleted.add(n)
                n += 10
        except BaseException as e:  # noqa: BLE001  (the test thread asserts there were none)
            errors.append(e)

    def searcher(seed: int) -> None:
        r = np.random.default_rng(seed)
        try:
            while not stop.is_set():
                j = int(r.integers(0, 200))
                before = set(deleted)
                hits = idx.search(base[j], 5)
                assert hits and hits[0][0] == j, hits
                assert not before & {i for i, _ in hits}
                searches[seed] += 1
        except BaseException as e:  # noqa: BLE001  (the test thread asserts there were none)
            errors.append(e)

    threads = [threading.Thread(target=writer)] + [threading.Thread(target=searcher, args=(s,)) for s in range(3)]
    for t in threads:
        t.start()
    threads[0].join(timeout=10)
    stop.set()
    for t in threads:
        t.join(timeout=5)
    assert not errors, errors[0]
    assert min(searches) > 20 and idx.capacity > 1000
    live = set(idx.items()[0].tolist())
    assert len(idx) == len(live) and not live & deleted
    assert set(range(200)) <= live


def test_concurrent_flat_add_and_search() -> None:
    rng = np.random.default_rng(10)
    idx = FlatIndex(DIM, capacity=4)
    base = unit(rng, 100)
    idx.add(range(100), base)
    errors: list[BaseException] = []
    deadline = time.monotonic() + 1.5

    def writer() -> None:
        r = np.random.default_rng(11)
        try:
            n = 10_000
            while time.monotonic() < deadline:
                idx.add([n], unit(r, 1))
                idx.delete(n - 1)
                n += 1
        except BaseException as e:  # noqa: BLE001  (the test thread asserts there were none)
            errors.append(e)

    def searcher() -> None:
        try:
            while time.monotonic() < deadline:
                j = int(np.random.default_rng().integers(0, 100))
                assert idx.search(base[j], 3)[0][0] == j
        except BaseException as e:  # noqa: BLE001  (the test thread asserts there were none)
            errors.append(e)

    threads = [threading.Thread(target=writer), threading.Thread(target=searcher), threading.Thread(target=searcher)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert not errors, errors[0]


def test_save_load_keeps_results_and_ef(tmp_path) -> None:
    rng = np.random.default_rng(12)
    idx = HnswIndex(DIM, HnswParams(ef_search=77, initial_capacity=64))
    vecs = unit(rng, 400)
    idx.add(range(400), vecs)
    for i in range(0, 400, 4):
        idx.delete(i)
    queries = unit(rng, 30)
    before = [idx.search(q, 5) for q in queries]
    path = tmp_path / "idx.bin"
    idx.save(path)

    loaded = HnswIndex.load(path)
    assert loaded.ef_search == 77 and loaded.params == idx.params
    assert len(loaded) == len(idx) == 300
    after = [loaded.search(q, 5) for q in queries]
    assert [[i for i, _ in h] for h in after] == [[i for i, _ in h] for h in before]
    for h1, h2 in zip(before, after):
        assert [s for _, s in h1] == pytest.approx([s for _, s in h2], abs=1e-6)
    # The loaded index stays writable: deleted slots are reusable, growth still works.
    loaded.add(range(1000, 1600), unit(rng, 600))
    assert len(loaded) == 900
    assert not {i for i, _ in loaded.search(vecs[0], 20)} & set(range(0, 400, 4))


def test_ef_setter() -> None:
    idx = small_hnsw()
    idx.ef_search = 12
    assert idx.ef_search == 12
