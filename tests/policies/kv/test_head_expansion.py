"""expand_kv_heads: same outputs, a wider cache, and policies run on it."""

from __future__ import annotations

import pytest
import torch
from transformers import DynamicCache

from cachesvc.policies.kv import compress, make_policy
from cachesvc.policies.kv.head_expansion import expand_kv_heads

from .conftest import tiny_model


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_same_function_wider_cache(attn: str) -> None:
    model = tiny_model(attn)                                   # 4 query heads over 2 KV heads
    ids = torch.randint(0, model.config.vocab_size, (2, 40))
    with torch.no_grad():
        before = model(input_ids=ids).logits
        expand_kv_heads(model, 4)
        cache = DynamicCache(config=model.config)
        after = model(input_ids=ids, past_key_values=cache, use_cache=True).logits
    assert model.config.num_key_value_heads == 4
    assert cache.layers[0].keys.shape == (2, 4, 40, 16)
    torch.testing.assert_close(after, before, atol=1e-5, rtol=1e-5)
    # query heads 2h and 2h+1 read copies of what KV head h held
    k = cache.layers[1].keys
    assert torch.equal(k[:, 0], k[:, 1]) and torch.equal(k[:, 2], k[:, 3]) and not torch.equal(k[:, 1], k[:, 2])


def test_head_wise_policy_splits_the_copies() -> None:
    model = tiny_model()
    expand_kv_heads(model, 4)
    ids = torch.randint(0, model.config.vocab_size, (1, 120))
    cache = DynamicCache(config=model.config)
    # no critical stage: on this random model it marks every kept entry as must-keep, evening the heads out
    policy = make_policy("defensivekv", compression_ratio=0.7, window_size=8, critical_mass=0.0)
    with torch.no_grad(), compress(model, policy) as report:
        model(input_ids=ids, past_key_values=cache, use_cache=True)
    kept = report.layers[0].kept_per_head[0]
    assert kept.shape == (4,) and int(kept.sum()) == 4 * int(120 * 0.3)
    # each copy is scored by its own query head, so the copies of one head keep different counts
    assert kept[0] != kept[1] or kept[2] != kept[3]


@pytest.mark.parametrize("bad", [1, 3, 8])
def test_rejects_counts_that_do_not_fit(bad: int) -> None:
    with pytest.raises(ValueError, match="kv_heads"):
        expand_kv_heads(tiny_model(), bad)
