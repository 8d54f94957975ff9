"""The router's context: a seeded projection (the same on every replica), unit norm, plus a bias."""

from __future__ import annotations

import numpy as np
import pytest

from cachesvc.policies.routing.context import ContextProjection


def test_projection_is_deterministic_normalised_and_biased() -> None:
    embedding = np.random.default_rng(0).standard_normal(384)
    one, two = ContextProjection(384, 16, seed=3), ContextProjection(384, 16, seed=3)
    x = one(embedding)
    assert x.shape == (17,) == (one.size,)
    np.testing.assert_array_equal(x, two(embedding))
    assert x[-1] == 1.0 and np.linalg.norm(x[:-1]) == pytest.approx(1.0)
    assert not np.allclose(x, ContextProjection(384, 16, seed=4)(embedding))


def test_projection_keeps_neighbours_apart_from_strangers() -> None:
    rng = np.random.default_rng(1)
    base = rng.standard_normal(384)
    near = base + 0.2 * rng.standard_normal(384)
    far = rng.standard_normal(384)
    project = ContextProjection(384, 32)
    assert project(base)[:-1] @ project(near)[:-1] > project(base)[:-1] @ project(far)[:-1] + 0.3


def test_no_reduction_when_asked_for_as_many_dimensions() -> None:
    embedding = np.arange(1.0, 5.0)
    x = ContextProjection(4, 8)(embedding)
    np.testing.assert_allclose(x[:-1], embedding / np.linalg.norm(embedding))


def test_bad_embeddings_are_refused() -> None:
    project = ContextProjection(8, 4)
    with pytest.raises(ValueError, match="expected 8"):
        project(np.ones(7))
    with pytest.raises(ValueError, match="finite"):
        project(np.full(8, np.nan))
