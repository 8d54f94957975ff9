"""The pair model's numpy inference equals the trees it was exported from; bars meet their target on the
calibration table; the shipped model file loads and matches the features of this code."""

from __future__ import annotations

import numpy as np
import pytest

from cachesvc.policies.verify.pair_features import FEATURE_NAMES
from cachesvc.policies.verify.pair_model import PairModel, bar_for, load_pair_model


def test_bar_is_the_lowest_probability_whose_served_set_meets_the_target() -> None:
    rng = np.random.default_rng(0)
    for _ in range(50):
        n = int(rng.integers(20, 400))
        probs = rng.random(n)
        right = rng.random(n) < probs  # calibrated-ish: higher probability, more often right
        target = float(rng.uniform(0.6, 0.99))
        bar = bar_for(probs, right, target)
        served = probs >= bar
        if bar < 1.0:
            assert right[served].mean() >= target
            lower = probs[probs < bar]
            if len(lower):  # the next lower bar would miss the target
                below = probs >= lower.max()
                assert right[below].mean() < target


def test_bar_serves_nothing_when_no_bar_reaches_the_target() -> None:
    assert bar_for(np.array([0.9, 0.8]), np.array([False, True]), 0.99) == 1.0


def test_bar_does_not_split_ties() -> None:
    probs = np.array([0.9, 0.5, 0.5, 0.5])
    right = np.array([True, True, False, False])
    assert bar_for(probs, right, 0.9) == 0.9


def test_exported_trees_match_sklearn() -> None:
    ensemble = pytest.importorskip("sklearn.ensemble")
    from cachesvc.verifier.train_pair_model import DEPTH, LEARNING_RATE, TREES, fit_trees

    rng = np.random.default_rng(1)
    x = rng.normal(size=(600, len(FEATURE_NAMES))).astype(np.float32)
    y = (x[:, 0] + 0.5 * x[:, 3] * x[:, 5] + rng.normal(scale=0.3, size=600) > 0).astype(int)
    model = fit_trees(x, y, np.ones(600), seed=0)
    reference = ensemble.GradientBoostingClassifier(n_estimators=TREES, max_depth=DEPTH, learning_rate=LEARNING_RATE,
                                                    subsample=0.8, min_samples_leaf=20, random_state=0)
    reference.fit(x, y, sample_weight=np.ones(600))
    fresh = rng.normal(size=(200, len(FEATURE_NAMES))).astype(np.float32)
    np.testing.assert_allclose(model.raw(fresh), reference.decision_function(fresh), atol=1e-3)


def test_the_shipped_model_loads_and_its_bars_rise_with_the_target() -> None:
    model = load_pair_model()
    assert model.feature_names == FEATURE_NAMES
    for category in ("code", "conversation", "knowledge", "math", "volatile", "default"):
        bars = [model.bar(category, t) for t in (0.8, 0.9, 0.95, 0.98)]
        assert bars == sorted(bars)
        assert all(0.0 <= b <= 1.0 for b in bars)
    probs = model.probability(np.zeros((3, len(FEATURE_NAMES)), dtype=np.float32))
    assert probs.shape == (3,) and np.all((probs > 0) & (probs < 1))


def test_a_model_for_other_features_is_refused() -> None:
    data = load_pair_model().to_json()
    data["feature_names"] = data["feature_names"][:-1]
    with pytest.raises(ValueError, match="retrain"):
        PairModel.from_json(data)
    data = load_pair_model().to_json()
    data["format"] = 99
    with pytest.raises(ValueError, match="format"):
        PairModel.from_json(data)


def test_every_reason_a_rule_gives_has_its_feature() -> None:
    """A reason the features do not list would count only in rule_any; one no rule gives is a dead feature."""
    import re
    from pathlib import Path

    from cachesvc.policies.verify import near_miss_rules
    from cachesvc.policies.verify.pair_features import RULE_REASONS

    source = Path(near_miss_rules.__file__).read_text()
    given = set(re.findall(r'return "([a-z-]+)"', source))
    given |= set(re.findall(r'"([a-z]+-[a-z]+)" if ', source))
    assert given == set(RULE_REASONS)
