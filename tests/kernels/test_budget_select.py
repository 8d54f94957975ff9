"""Head-wise keep mask and Layer-DefensiveKV budgets."""

from __future__ import annotations

import pytest
import torch

from cachesvc.kernels.budget_select import headwise_keep_mask, layer_budgets


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


def test_layer_budgets_sum_to_total_and_follow_the_global_top_k():
    layers = [torch.randn(1, 4, 30), torch.randn(1, 2, 50) + 1.0, torch.randn(1, 8, 10) - 1.0]
    total = 70
    budgets = layer_budgets(layers, total)
    assert sum(budgets) == total
    flat = torch.cat([s.reshape(-1) for s in layers])
    threshold = flat.topk(total).values.min()
    assert budgets == [int((s >= threshold).sum()) for s in layers]
    for s, k in zip(layers, budgets):
        assert 0 <= k <= s[0].numel()


def test_layer_budgets_batch_takes_the_max_per_layer():
    layers = [torch.randn(3, 2, 20), torch.randn(3, 4, 7)]
    total = 25
    budgets = layer_budgets(layers, total)
    per_element = [layer_budgets([s[bi:bi + 1] for s in layers], total) for bi in range(3)]
    assert all(sum(p) == total for p in per_element)
    assert budgets == [max(p[i] for p in per_element) for i in range(len(layers))]
    assert sum(budgets) >= total


def test_layer_budgets_edges():
    layers = [torch.randn(1, 2, 3), torch.randn(1, 1, 4)]
    assert layer_budgets(layers, 0) == [0, 0]
    assert layer_budgets(layers, 10) == [6, 4]
    with pytest.raises(ValueError):
        layer_budgets(layers, 11)
    with pytest.raises(ValueError):
        layer_budgets([], 1)
