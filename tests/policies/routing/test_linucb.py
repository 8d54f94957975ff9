"""LinUCB: the Sherman-Morrison inverse stays the true inverse, estimates converge, state resumes exactly."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cachesvc.policies.routing.linucb import LinUCB


def test_inverse_tracks_the_matrix_through_many_updates() -> None:
    rng = np.random.default_rng(0)
    model = LinUCB(3, 5, refactor_every=50)
    seen: list[list[tuple[np.ndarray, float]]] = [[], [], []]
    for step in range(237):
        x, r = rng.standard_normal(5), float(rng.random())
        model.update(step % 3, x, r)
        seen[step % 3].append((x, r))
    pooled = np.mean([r for rows in seen for _, r in rows])
    probe = rng.standard_normal(5)
    for arm in range(3):
        # The plain reference: a direct inverse of ridge*I + sum x x^T, fitted to reward minus the pooled mean.
        xs = np.array([x for x, _ in seen[arm]])
        rs = np.array([r for _, r in seen[arm]])
        a = np.eye(5) + xs.T @ xs
        np.testing.assert_allclose(model.a_inv[arm] @ model.a[arm], np.eye(5), atol=1e-9)
        theta = np.linalg.inv(a) @ (xs.T @ (rs - pooled))
        np.testing.assert_allclose(model.theta[arm], theta, atol=1e-9)
        np.testing.assert_allclose(model.means(probe)[arm], pooled + probe @ theta, atol=1e-9)
        width = np.sqrt(probe @ np.linalg.inv(a) @ probe)
        np.testing.assert_allclose(model.upper_bounds(probe)[arm], pooled + probe @ theta + width, atol=1e-9)


def test_an_untried_arm_is_estimated_at_the_pooled_mean_reward() -> None:
    # Rewards are high for every tried arm; a prior of 0 would rank the untried arm last even with its bonus.
    rng = np.random.default_rng(5)
    model = LinUCB(3, 4, alpha=0.3)
    for step in range(200):
        x = np.append(rng.standard_normal(3) * 0.1, 1.0)
        model.update(step % 2, x, 0.85 + 0.05 * (step % 2))
    x = np.array([0.0, 0.0, 0.0, 1.0])
    means = model.means(x)
    assert means[2] == pytest.approx(model.prior_mean) and model.prior_mean == pytest.approx(0.875)
    assert means[0] == pytest.approx(0.85, abs=0.01) and means[1] == pytest.approx(0.9, abs=0.01)
    assert int(np.argmax(model.upper_bounds(x))) == 2, "the untried arm's bound must lead"


def test_learns_a_linear_reward_and_its_uncertainty_shrinks() -> None:
    rng = np.random.default_rng(1)
    truth = np.array([0.3, -0.2, 0.5, 0.1])
    model = LinUCB(1, 4, ridge=0.1)
    probe = np.array([0.5, 0.5, 0.5, 1.0])
    width_before = model.widths(probe)[0]
    for _ in range(2000):
        x = np.append(rng.standard_normal(3), 1.0)  # the routers' contexts end in a bias term
        model.update(0, x, float(x @ truth + 0.05 * rng.standard_normal()))
    np.testing.assert_allclose(model.prior_mean + model.theta[0][-1], truth[-1], atol=0.01)
    np.testing.assert_allclose(model.theta[0][:3], truth[:3], atol=0.01)
    np.testing.assert_allclose(model.means(probe)[0], probe @ truth, atol=0.02)
    assert model.widths(probe)[0] < width_before / 20
    batch = rng.standard_normal((7, 4))
    assert model.upper_bounds(batch).shape == (7, 1)
    np.testing.assert_allclose(model.upper_bounds(batch)[:, 0], [model.upper_bounds(x)[0] for x in batch])


def test_state_round_trips_through_json() -> None:
    rng = np.random.default_rng(2)
    model = LinUCB(4, 3)
    for step in range(40):
        model.update(step % 4, rng.standard_normal(3), float(rng.random()))
    again = LinUCB(4, 3)
    again.load_state_dict(json.loads(json.dumps(model.state_dict())))
    x = rng.standard_normal(3)
    np.testing.assert_allclose(again.upper_bounds(x), model.upper_bounds(x), atol=1e-12)
    with pytest.raises(ValueError, match="4 arms x 3 dims"):
        LinUCB(5, 3).load_state_dict(model.state_dict())


def test_bad_input_is_refused_and_changes_nothing() -> None:
    model = LinUCB(2, 3)
    with pytest.raises(ValueError, match="shape"):
        model.update(0, np.ones(4), 1.0)
    with pytest.raises(ValueError, match="finite"):
        model.update(0, np.array([1.0, np.nan, 0.0]), 1.0)
    with pytest.raises(ValueError, match="finite"):
        model.update(0, np.ones(3), float("inf"))
    assert model.counts.sum() == 0 and not model.b.any()
    state = model.state_dict()
    state["a"][0][0][0] = float("nan")
    with pytest.raises(ValueError, match="finite"):
        LinUCB(2, 3).load_state_dict(state)
