"""HeadRaggedLayer: head-wise pruned layers held without padding, attended in the padded layout."""

from __future__ import annotations

import pytest
import torch
from transformers import DynamicCache

from cachesvc.policies.kv.ragged_layer import HeadRaggedLayer, held_bytes


def _padded_layout(b: int = 2, h: int = 3, slots: int = 11, d: int = 8, window: int = 4, seed: int = 0):
    """Random padded keys/values and a validity mask shaped like gather_kept's: each head's kept prefix entries,
    then padding, then the window."""
    gen = torch.Generator().manual_seed(seed)
    keys = torch.randn(b, h, slots, d, generator=gen)
    values = torch.randn(b, h, slots, d, generator=gen)
    counts = torch.randint(0, slots - window + 1, (b, h), generator=gen)
    counts[0, 0] = slots - window  # one head without padding, so the layout is as long as it is
    slot = torch.arange(slots)
    valid = (slot < counts.unsqueeze(-1)) | (slot >= slots - window)
    return keys, values, valid


def test_holds_only_the_kept_entries_and_rebuilds_the_padded_view() -> None:
    keys, values, valid = _padded_layout()
    layer = HeadRaggedLayer(keys, values, valid)
    n_kept, d = int(valid.sum()), keys.shape[-1]
    assert layer.packed_keys.shape == layer.packed_values.shape == (n_kept + 1, d)  # + the padding row
    assert held_bytes(layer) == 2 * (n_kept + 1) * d * 4 + 4 * valid.numel()
    assert held_bytes(layer) < keys.nbytes + values.nbytes
    view = layer.keys
    assert view.shape == keys.shape
    assert torch.equal(view[valid], keys[valid]) and torch.equal(layer.values[valid], values[valid])
    assert (view[~valid] == HeadRaggedLayer.padding_value).all()
    assert torch.equal(layer.kv_valid, valid)
    assert layer.get_seq_length() == keys.shape[2]


def test_update_appends_tokens_every_head_shares() -> None:
    keys, values, valid = _padded_layout()
    layer = HeadRaggedLayer(keys, values, valid)
    slots = keys.shape[2]
    new_k, new_v = torch.randn(2, 3, 5, 8), torch.randn(2, 3, 5, 8)
    k, v = layer.update(new_k, new_v)
    assert k.shape == (2, 3, slots + 5, 8)
    assert torch.equal(k[:, :, slots:], new_k) and torch.equal(v[:, :, slots:], new_v)
    assert torch.equal(k[:, :, :slots][valid], keys[valid])
    step_k, step_v = torch.randn(2, 3, 1, 8), torch.randn(2, 3, 1, 8)
    k, v = layer.update(step_k, step_v)
    assert torch.equal(k[:, :, -1:], step_k) and torch.equal(v[:, :, -6:-1], new_v)
    assert layer.get_seq_length() == slots + 6
    assert layer.get_mask_sizes(1) == (slots + 7, 0)
    assert held_bytes(layer) == 2 * (int(valid.sum()) + 1 + 6 * 2 * 3) * 8 * 4 + 4 * valid.numel()


def test_crop_removes_appended_tokens_only() -> None:
    keys, values, valid = _padded_layout()
    layer = HeadRaggedLayer(keys, values, valid)
    appended = torch.randn(2, 3, 4, 8)
    layer.update(appended, appended)
    layer.crop(-3)
    assert layer.get_seq_length() == keys.shape[2] + 1
    assert torch.equal(layer.keys[:, :, -1:], appended[:, :, :1])
    with pytest.raises(ValueError, match="only 1 were appended"):
        layer.crop(-2)
    with pytest.raises(ValueError, match="negative"):
        layer.crop(3)
    with pytest.raises(NotImplementedError, match="new DynamicCache"):
        layer.reset()


@pytest.mark.parametrize(
    "operation",
    [
        ("reorder_cache", torch.tensor([1, 0]), lambda t: t.index_select(0, torch.tensor([1, 0]))),
        ("batch_repeat_interleave", 2, lambda t: t.repeat_interleave(2, dim=0)),
        ("batch_select_indices", torch.tensor([1]), lambda t: t[torch.tensor([1])]),
    ],
    ids=lambda op: op[0],
)
def test_batch_operations_act_on_rows_like_the_padded_layout(operation) -> None:
    name, arg, on_rows = operation
    keys, values, valid = _padded_layout()
    layer = HeadRaggedLayer(keys, values, valid)
    appended = torch.randn(2, 3, 2, 8)
    layer.update(appended, appended + 1)
    padded_k, padded_v = layer.keys, layer.values
    cache = DynamicCache()
    cache.layers.append(layer)
    getattr(cache, name)(arg)  # through the transformers container, as generate() calls it
    assert torch.equal(layer.kv_valid, on_rows(valid))
    assert torch.equal(layer.keys, on_rows(padded_k)) and torch.equal(layer.values, on_rows(padded_v))
    assert layer.packed_keys.shape[0] == int(on_rows(valid).sum()) + 1


def test_rejects_mismatched_layouts() -> None:
    keys, values, valid = _padded_layout()
    with pytest.raises(ValueError, match="same"):
        HeadRaggedLayer(keys, values[:, :, :-1], valid)
    with pytest.raises(ValueError, match="same"):
        HeadRaggedLayer(keys, values, valid.int())
    with pytest.raises(ValueError, match="same"):
        HeadRaggedLayer(keys, values, valid[:1])
