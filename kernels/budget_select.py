"""Budget selection for KV eviction: head-wise top-k within a layer, and one top-k across layers (Layer-DefensiveKV).

Both run on device (one top-k, one stable sort), with no host-device sync.
"""

from __future__ import annotations

import torch

__all__ = ["global_keep_masks", "headwise_keep_mask"]


def headwise_keep_mask(scores: torch.Tensor, n_keep: int) -> torch.Tensor:
    """Bool mask ``[b, H_kv, n]`` with exactly ``n_keep`` True per batch element.

    One top-k over all KV heads of the layer together (``scores`` flattened to ``[b, H_kv * n]``), so heads get
    unequal budgets (AdaKV / DefensiveKV head-wise selection). Ties are broken by ``torch.topk``.
    """
    if scores.dim() != 3:
        raise ValueError(f"scores must be [b, H_kv, n], got {tuple(scores.shape)}")
    b, h, n = scores.shape
    if not 0 <= n_keep <= h * n:
        raise ValueError(f"n_keep must be in [0, H_kv*n] = [0, {h * n}], got {n_keep}")
    flat = scores.reshape(b, h * n)
    mask = torch.zeros(b, h * n, dtype=torch.bool, device=scores.device)
    if n_keep:
        idx = flat.topk(n_keep, dim=-1, sorted=False).indices
        mask.scatter_(1, idx, True)
    return mask.reshape(b, h, n)


def global_keep_masks(layer_scores: list[torch.Tensor], n_keep: int) -> list[torch.Tensor]:
    """Keep masks of one top-k over every layer's flattened scores, per batch element (Layer-DefensiveKV).

    ``layer_scores[l]`` is ``[b, H_kv_l, n_l]``; the masks have the same shapes, and each batch element keeps its own
    ``n_keep`` highest scores over all layers together (ties: the earlier layer, head and slot), so layers (and
    heads) get unequal budgets. ``-inf`` scores
    (padding slots of an already pruned layer) are never kept: a row with fewer finite scores keeps all of them.
    """
    if not layer_scores:
        raise ValueError("layer_scores is empty")
    b = layer_scores[0].shape[0]
    for i, s in enumerate(layer_scores):
        if s.dim() != 3 or s.shape[0] != b:
            raise ValueError(f"layer_scores[{i}] must be [b={b}, H_kv, n], got {tuple(s.shape)}")
    sizes = [s.shape[1] * s.shape[2] for s in layer_scores]
    if not 0 <= n_keep <= sum(sizes):
        raise ValueError(f"n_keep must be in [0, {sum(sizes)}], got {n_keep}")
    dev = layer_scores[0].device
    flat = torch.cat([s.reshape(b, -1).float().to(dev) for s in layer_scores], dim=1)       # [b, total]
    mask = torch.zeros_like(flat, dtype=torch.bool)
    if n_keep:
        # A stable sort, not topk: among equal scores the earlier (layer, head, slot) wins, so a selection streamed
        # over the layers (candidates concatenated in the same order) breaks ties exactly as one over every layer.
        mask.scatter_(1, flat.sort(dim=-1, descending=True, stable=True).indices[:, :n_keep], True)
        mask &= flat > float("-inf")
    return [m.reshape(s.shape) for m, s in zip(mask.split(sizes, dim=1), layer_scores)]
