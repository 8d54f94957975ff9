"""Random eviction: the lower-bound baseline (kvpress ``RandomPress``).

Each prefix entry gets an i.i.d. uniform score; the window is kept like for every policy. Reproducible: the
generator is seeded with ``seed + layer_idx``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from .base import KVPolicy, ScoreInputs


@dataclass
class RandomPolicy(KVPolicy):
    """Uniform random scores; every head keeps the same number of entries."""

    seed: int = 0

    needs_queries: ClassVar[bool] = False

    def score(self, inputs: ScoreInputs) -> torch.Tensor:
        b, h, n = inputs.keys.shape[0], inputs.keys.shape[1], inputs.n_prefix
        gen = torch.Generator().manual_seed(self.seed + int(getattr(inputs.module, "layer_idx", 0) or 0))
        return torch.rand(b, h, n, generator=gen).to(inputs.keys.device)
