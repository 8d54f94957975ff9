"""Head-wise keep mask and the global (cross-layer) keep masks of Layer-DefensiveKV."""

from __future__ import annotations

import pytest
import torch

from cachesvc.kernels.budget_select import global_keep_masks, headwise_keep_mask


@pytest.mark.parametrize("b,h,n,k", [(1, 4, 37, 20), (2, 8, 61, 100), (3, 2, 5, 10), (2, 4, 9, 0), (1, 1, 7, 7)])
def test_headwise_mask_keeps_exactly_the_top_k(b, h, n, k):
    scores = torch.randn(b, h, n)
    mask = headwise_keep_mask(scores, k)
    assert mask.dtype == torch.bool and mask.shape == (b, h, n)
    assert mask.reshape(b, -1).sum(-1).tolist() == [k] * b
    flat, m = scores.reshape(b, -1), mask.reshape(b, -1)
    for bi in range(b):
        if 0 < k < h * n:
            assert flat[bi][m[bi]].min() > flat[bi][~m[bi]].max()   # random floats: no ties


def test_headwise_mask_gives_heads_unequal_budgets():
    scores = torch.zeros(1, 2, 10)
    scores[0, 0] = torch.arange(10) + 100.0                       # head 0 dominates
    mask = headwise_keep_mask(scores, 8)
    assert mask[0, 0].sum() == 8 and mask[0, 1].sum() == 0


def test_headwise_mask_rejects_bad_budget():
    with pytest.raises(ValueError):
        headwise_keep_mask(torch.randn(1, 2, 3), 7)


def _masks_and_scores(layers, total):
    masks = global_keep_masks(layers, total)
    assert [m.shape for m in masks] == [s.shape for s in layers]
    assert all(m.dtype == torch.bool for m in masks)
    return masks


def test_global_masks_keep_each_rows_top_k_over_all_layers():
    layers = [torch.randn(3, 4, 30), torch.randn(3, 2, 50) + 1.0, torch.randn(3, 8, 10) - 1.0]
    total = 70
    masks = _masks_and_scores(layers, total)
    for bi in range(3):
        flat = torch.cat([s[bi].reshape(-1) for s in layers])
        kept = torch.cat([m[bi].reshape(-1) for m in masks])
        assert int(kept.sum()) == total
        assert flat[kept].min() > flat[~kept].max()          # random floats: no ties
    # rows choose independently: the per-layer counts differ between rows
    counts = torch.stack([m.sum(dim=(1, 2)) for m in masks], dim=1)
    assert counts.sum(1).tolist() == [total] * 3
    assert counts.unique(dim=0).shape[0] > 1


def test_global_masks_never_keep_padding():
    a = torch.randn(1, 2, 6)
    a[0, 1, 1:] = float("-inf")                               # a pruned layer's padding slots
    b = torch.randn(1, 1, 4)
    masks = global_keep_masks([a, b], 12)                     # more than the 7 + 4 finite entries
    assert not masks[0][0, 1, 1:].any()
    assert int(masks[0].sum() + masks[1].sum()) == 11


def test_global_masks_break_ties_by_order():
    """Equal scores at the cut: the earlier layer (then head, then slot) wins, whatever the layers' sizes."""
    a = torch.tensor([[[0.5, 0.2, 0.2], [0.2, 0.9, 0.1]]])
    b = torch.tensor([[[0.2, 0.2, 0.7, 0.2]]])
    masks = global_keep_masks([a, b], 5)                      # 0.9, 0.7, 0.5, then two of the six 0.2s
    assert masks[0].tolist() == [[[True, True, True], [False, True, False]]]
    assert masks[1].tolist() == [[[False, False, True, False]]]


def test_global_masks_edges():
    layers = [torch.randn(1, 2, 3), torch.randn(1, 1, 4)]
    assert [int(m.sum()) for m in global_keep_masks(layers, 0)] == [0, 0]
    assert [int(m.sum()) for m in global_keep_masks(layers, 10)] == [6, 4]
    with pytest.raises(ValueError):
        global_keep_masks(layers, 11)
    with pytest.raises(ValueError):
        global_keep_masks([], 1)
    with pytest.raises(ValueError):
        global_keep_masks([torch.randn(1, 2, 3), torch.randn(2, 2, 3)], 1)
