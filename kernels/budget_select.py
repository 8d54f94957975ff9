"""Budget selection for KV eviction: head-wise top-k within a layer, and layer budgets (Layer-DefensiveKV).

Both are a single ``torch.topk`` on device, with no host-device sync inside loops (``layer_budgets`` syncs
once, at the end, to return Python ints).
"""

from __future__ import annotations

import torch

__all__ = ["headwise_keep_mask", "layer_budgets"]


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


def layer_budgets(layer_scores: list[torch.Tensor], n_keep_total: int) -> list[int]:
    """How many entries each layer keeps under one global top-k over all layers (Layer-DefensiveKV).

    ``layer_scores[l]`` is ``[b, H_kv_l, n_l]``. Per batch element, the ``n_keep_total`` highest scores over all
    layers' flattened scores are chosen and counted per layer. The returned budget of a layer is the **max over
    the batch** of its count, so with ``b == 1`` the budgets sum exactly to ``n_keep_total``; with ``b > 1`` they
    sum to at least ``n_keep_total`` (each element gets at least its own share; a cache layout with one budget
    per layer cannot give different elements different budgets). Each budget is at most ``H_kv_l * n_l``.
    """
    if not layer_scores:
        raise ValueError("layer_scores is empty")
    b = layer_scores[0].shape[0]
    for i, s in enumerate(layer_scores):
        if s.dim() != 3 or s.shape[0] != b:
            raise ValueError(f"layer_scores[{i}] must be [b={b}, H_kv, n], got {tuple(s.shape)}")
    sizes = [s.shape[1] * s.shape[2] for s in layer_scores]
    total = sum(sizes)
    if not 0 <= n_keep_total <= total:
        raise ValueError(f"n_keep_total must be in [0, {total}], got {n_keep_total}")
    if n_keep_total == 0:
        return [0] * len(layer_scores)
    dev = layer_scores[0].device
    flat = torch.cat([s.reshape(b, -1).float().to(dev) for s in layer_scores], dim=1)       # [b, total]
    idx = flat.topk(n_keep_total, dim=-1, sorted=False).indices
    bounds = torch.tensor(sizes, device=dev).cumsum(0)
    layer_of = torch.bucketize(idx, bounds, right=True)                                     # [b, k]
    counts = torch.zeros(b, len(sizes), dtype=torch.long, device=dev)
    counts.scatter_add_(1, layer_of, torch.ones_like(layer_of))
    return [int(c) for c in counts.amax(0).tolist()]
