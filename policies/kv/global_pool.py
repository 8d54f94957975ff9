"""Layer-DefensiveKV's cross-layer top-k, streamed over the layers during prefill so that peak memory drops too.

One top-k over every layer's scores decides what each layer keeps (``n_keep`` prefix entries per batch row, over
all layers and heads). Waiting for the last layer's scores would hold every layer's full cache at once (the
reference code does). Instead, each layer joins a candidate pool as soon as it is scored; whenever the pool holds
more than ``pool_factor * n_keep`` entries in some row, every pooled layer is cut to the top ``n_keep`` of all the
entries seen so far, and the cut layers are replaced (memory released): by a
:class:`~.ragged_layer.HeadRaggedLayer` holding only the kept entries when heads or rows keep unequal counts (the
usual case), so a pooled layer never holds padding. The caller puts ``PooledLayer.layer`` back into its cache.

The result is exact for any ``pool_factor >= 1``: an entry of the final top ``n_keep`` has fewer than ``n_keep``
better entries among all layers, hence among the layers seen at any earlier point, so no cut removes it.
Peak memory: the pool (at most ``pool_factor * n_keep`` entries per row, plus the windows) and one layer in flight.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from cachesvc.kernels.budget_select import global_keep_masks

from .layout import gather_kept
from .ragged_layer import HeadRaggedLayer

if TYPE_CHECKING:
    from transformers.cache_utils import CacheLayerMixin


@dataclass
class PooledLayer:
    """One scored layer in the pool. ``scores`` ``[b, h, m]`` cover the stored prefix slots (``-inf`` on padding);
    ``positions`` ``[b, h, m + w]`` are the slots' original positions (``None`` while the layer is whole);
    ``full_scores`` only when recording."""

    index: int
    layer: CacheLayerMixin
    q_len: int
    scores: torch.Tensor
    positions: torch.Tensor | None = None
    full_scores: torch.Tensor | None = None

    def held(self) -> torch.Tensor:
        """Candidate entries held per batch row, ``[b]``."""
        return torch.isfinite(self.scores).sum(dim=(1, 2))


class GlobalBudgetPool:
    """Candidates of the layers scored so far; :meth:`add` each layer, :meth:`cut` once more after the last."""

    def __init__(self, n_keep: int, window_size: int, pool_factor: float) -> None:
        if pool_factor < 1.0:
            raise ValueError(
                f"pool_factor must be >= 1 (anything less would drop entries of the top-k), got {pool_factor}")
        self.n_keep = n_keep
        self.window_size = window_size
        self.capacity = pool_factor * n_keep
        self.layers: list[PooledLayer] = []

    def add(self, index: int, layer: CacheLayerMixin, scores: torch.Tensor, q_len: int, *,
            record: bool = False) -> None:
        """Pool a freshly prefilled (whole) layer with its prefix scores ``[b, h, n]``; cut when over capacity."""
        self.layers.append(PooledLayer(index, layer, q_len, scores, full_scores=scores if record else None))
        if self.held_entries() > self.capacity:
            self.cut()

    def cut(self) -> None:
        """Keep only the top ``n_keep`` entries of each row over every pooled layer; re-gather the layers that lose
        entries (the others are left untouched)."""
        masks = global_keep_masks([p.scores for p in self.layers], self.n_keep)
        for p, keep in zip(self.layers, masks):
            if bool((keep.sum(-1) == torch.isfinite(p.scores).sum(-1)).all()):
                continue
            g = gather_kept(p.layer.keys, p.layer.values, keep, self.window_size, p.positions)
            if g.valid is None and not isinstance(p.layer, HeadRaggedLayer):
                p.layer.keys, p.layer.values = g.keys, g.values
            else:
                valid = g.valid if g.valid is not None else g.positions.new_ones(g.positions.shape, dtype=torch.bool)
                p.layer = HeadRaggedLayer(g.keys, g.values, valid)
            m = g.order.shape[-1]
            slot_valid = g.positions[..., :m] >= 0
            p.scores = torch.where(slot_valid, p.scores.gather(-1, g.order), float("-inf"))
            p.positions = g.positions

    def held_entries(self) -> int:
        """Largest number of candidate entries any row holds (windows excluded)."""
        return int(torch.stack([p.held() for p in self.layers]).sum(dim=0).max()) if self.layers else 0
