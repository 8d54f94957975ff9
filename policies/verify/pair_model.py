"""The learned pair model: gradient-boosted trees over pair_features, Platt-calibrated, with the calibration
table that turns a target precision into a bar per category.

The weights are a small JSON file (``pair_model.json``) written by ``cachesvc train-pair-model``; inference is
numpy only, all trees of a batch of pairs walked at once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from .pair_features import FEATURE_NAMES

MODEL_FILE = "pair_model.json"
FORMAT_VERSION = 1
MIN_CALIBRATION = 200  # candidate pairs a category needs (with at least MIN_NEGATIVES wrong ones) for its own bar
MIN_NEGATIVES = 40


@dataclass(frozen=True)
class PairModel:
    """Trees packed as [tree, node] arrays; ``probability`` maps feature rows to calibrated probabilities."""

    feature: np.ndarray  # int32 [T, N]; -1 at leaves
    threshold: np.ndarray  # float32 [T, N]
    left: np.ndarray  # int32 [T, N]
    right: np.ndarray  # int32 [T, N]
    value: np.ndarray  # float32 [T, N]: leaf values, already scaled by the learning rate
    init: float
    depth: int
    platt: tuple[float, float]  # p = sigmoid(a * raw + b)
    calibration: dict[str, tuple[np.ndarray, np.ndarray]]  # category -> (probabilities, right answer?)
    feature_names: tuple[str, ...]
    meta: dict[str, Any]

    def raw(self, rows: np.ndarray) -> np.ndarray:
        """The trees' summed log-odds for each row of ``rows`` [n, features]."""
        rows = np.asarray(rows, dtype=np.float32)
        n, trees = rows.shape[0], self.feature.shape[0]
        node = np.zeros((n, trees), dtype=np.int32)
        tree_index = np.arange(trees)[None, :]
        for _ in range(self.depth):
            feature = self.feature[tree_index, node]
            leaf = feature < 0
            x = np.take_along_axis(rows, np.maximum(feature, 0), axis=1)
            step = np.where(x <= self.threshold[tree_index, node], self.left[tree_index, node],
                            self.right[tree_index, node])
            node = np.where(leaf, node, step)
        return self.init + self.value[tree_index, node].sum(axis=1)

    def probability(self, rows: np.ndarray) -> np.ndarray:
        a, b = self.platt
        return 1.0 / (1.0 + np.exp(-(a * self.raw(rows) + b)))

    def bar(self, category: str, target_precision: float) -> float:
        """The lowest probability at which served candidates of ``category`` were right at least
        ``target_precision`` of the time on the calibration set (the pooled set when the category has too few)."""
        probs, right = self.calibration.get(category) or self.calibration["all"]
        if len(probs) < MIN_CALIBRATION or int((~right).sum()) < MIN_NEGATIVES:
            probs, right = self.calibration["all"]
        return bar_for(probs, right, target_precision)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT_VERSION, "feature_names": list(self.feature_names), "depth": self.depth,
            "init": self.init, "platt": list(self.platt), "meta": self.meta,
            "trees": {"feature": self.feature.tolist(), "threshold": self.threshold.tolist(),
                      "left": self.left.tolist(), "right": self.right.tolist(),
                      "value": [[round(float(v), 7) for v in row] for row in self.value]},
            "calibration": {c: {"p": [round(float(x), 5) for x in p], "right": r.astype(int).tolist()}
                            for c, (p, r) in self.calibration.items()},
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PairModel:
        if data.get("format") != FORMAT_VERSION:
            raise ValueError(f"pair model format {data.get('format')!r}, expected {FORMAT_VERSION}")
        names = tuple(data["feature_names"])
        if names != FEATURE_NAMES:
            raise ValueError("pair model was trained on other features; retrain it (cachesvc train-pair-model)")
        trees = data["trees"]
        calibration = {c: (np.asarray(v["p"], dtype=np.float64), np.asarray(v["right"], dtype=bool))
                       for c, v in data["calibration"].items()}
        if "all" not in calibration:
            raise ValueError("pair model has no pooled calibration table")
        return cls(np.asarray(trees["feature"], dtype=np.int32), np.asarray(trees["threshold"], dtype=np.float32),
                   np.asarray(trees["left"], dtype=np.int32), np.asarray(trees["right"], dtype=np.int32),
                   np.asarray(trees["value"], dtype=np.float32), float(data["init"]), int(data["depth"]),
                   (float(data["platt"][0]), float(data["platt"][1])), calibration, names, dict(data["meta"]))


def bar_for(probs: np.ndarray, right: np.ndarray, target_precision: float) -> float:
    """Smallest bar such that the pairs at or above it were right at least ``target_precision`` of the time
    (1.0, serve nothing, when no bar reaches it)."""
    order = np.argsort(-probs, kind="stable")
    p, r = probs[order], right[order].astype(np.float64)
    precision = np.cumsum(r) / np.arange(1, len(r) + 1)
    ok = np.flatnonzero(precision >= target_precision)
    if not len(ok):
        return 1.0
    last = int(ok[-1])
    while last + 1 < len(p) and p[last + 1] == p[last]:
        last -= 1  # ties: a bar cannot split equal probabilities, so stop above them
    return float(p[last]) if last >= 0 else 1.0


def load_pair_model(path: Path | None = None) -> PairModel:
    """The shipped model (``policies/verify/pair_model.json``), or the one at ``path``."""
    text = path.read_text() if path else resources.files(__package__).joinpath(MODEL_FILE).read_text()
    return PairModel.from_json(json.loads(text))
