"""The layout attention sees when the heads of a pruned layer keep unequal numbers of entries.

transformers attends over ``[b, kv_heads, seq, d]``, one length for all heads. Head-wise budgets (AdaKV,
DefensiveKV) give heads different lengths, so a pruned layer is laid out **padded to its largest head**: each
head's kept prefix entries come first (in position order), then padding slots, then the observation window. A
bool ``valid`` mask ``[b, kv_heads, slots]`` (attribute ``kv_valid`` of the cache layer) tells the entries from
the padding; tokens appended later (question, decoded tokens) are valid for every head.

The mask is applied by :func:`headwise_attention_mask`, which the ``compress`` context installs as a forward
pre-hook on every attention module: it rewrites ``attention_mask`` into a 4-D per-query-head mask. It works with
the ``sdpa`` and ``eager`` attention implementations.

Memory: the padding is only in the view of one forward. At rest such a layer is a
:class:`~policies.kv.ragged_layer.HeadRaggedLayer`, which holds the kept entries packed; the padded length
(``CompressionReport.padded_entries``) is what a padded cache would have held.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

VALID_ATTR = "kv_valid"


class KeptLayout(NamedTuple):
    """A gathered layer: ``keys``/``values`` ``[b, h, m + w, d]``; ``valid`` ``[b, h, m + w]`` (``None`` when no
    slot is padding); ``positions`` the original position of every slot (``-1`` = padding); ``order`` ``[b, h, m]``
    the input slot each kept slot came from (to gather per-slot data such as scores alongside)."""

    keys: torch.Tensor
    values: torch.Tensor
    valid: torch.Tensor | None
    positions: torch.Tensor
    order: torch.Tensor


def gather_kept(
    keys: torch.Tensor,
    values: torch.Tensor,
    keep: torch.Tensor,
    window_size: int,
    positions: torch.Tensor | None = None,
) -> KeptLayout:
    """Gather the kept prefix entries of one layer and append the window.

    ``keys``/``values``: ``[b, h, n + w, d]``; ``keep``: bool ``[b, h, n]``. ``positions`` ``[b, h, n + w]`` gives
    the original positions of the input slots when the layer was gathered before (default: slot ``i`` is position
    ``i``); padding slots must not be kept. ``m`` is the largest per-head count; ``valid`` is ``None`` when every
    head keeps the same count.
    """
    b, h, n = keep.shape
    counts = keep.sum(-1)
    m = int(counts.max()) if counts.numel() else 0
    pos = torch.arange(n, device=keep.device)
    # Kept slots first, in order; dropped ones after them (n + pos keeps them sorted too).
    order = torch.where(keep, pos, pos + n).argsort(dim=-1)[..., :m]
    d = keys.shape[-1]
    idx = order.unsqueeze(-1).expand(b, h, m, d)
    new_keys = torch.cat([keys[:, :, :n].gather(2, idx), keys[:, :, n:]], dim=2).contiguous()
    new_values = torch.cat([values[:, :, :n].gather(2, idx), values[:, :, n:]], dim=2).contiguous()
    slot_valid = torch.arange(m, device=keep.device) < counts.unsqueeze(-1)
    if positions is None:
        slot_pos = order
        win_pos = torch.arange(n, n + window_size, device=keep.device).expand(b, h, window_size)
    else:
        slot_pos, win_pos = positions[..., :n].gather(-1, order), positions[..., n:]
    new_positions = torch.cat([torch.where(slot_valid, slot_pos, -1), win_pos], dim=-1)
    if bool((counts == m).all()):
        return KeptLayout(new_keys, new_values, None, new_positions, order)
    valid = torch.cat([slot_valid, torch.ones(b, h, window_size, dtype=torch.bool, device=keep.device)], dim=-1)
    return KeptLayout(new_keys, new_values, valid, new_positions, order)


def headwise_attention_mask(
    valid: torch.Tensor,
    cache_len: int,
    q_len: int,
    group: int,
    attention_mask: torch.Tensor | None,
    *,
    float_dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """4-D mask ``[b, kv_heads * group, q_len, cache_len + q_len]`` for a forward on a padded layer.

    ``valid`` covers the first ``valid.shape[-1]`` stored slots; later slots are valid. The causal part comes
    from ``attention_mask`` when it is a 4-D tensor (bool: True = attend; float: additive), otherwise it is built
    bottom-right aligned. Returns bool, or an additive mask of ``float_dtype`` when given (eager attention).
    """
    b, h, stored = valid.shape
    k_len = cache_len + q_len
    dev = valid.device
    full = torch.ones(b, h, k_len, dtype=torch.bool, device=dev)
    full[..., :stored] = valid
    full = full.repeat_interleave(group, dim=1).unsqueeze(2)  # [b, H_q, 1, K]
    if attention_mask is not None and attention_mask.dim() == 4:
        am = attention_mask[..., -q_len:, :k_len]
        allowed = am if am.dtype == torch.bool else am > torch.finfo(am.dtype).min / 2
    else:
        qi = torch.arange(q_len, device=dev).unsqueeze(-1)
        kj = torch.arange(k_len, device=dev)
        allowed = (kj <= qi + cache_len).view(1, 1, q_len, k_len)
    mask = allowed & full
    if float_dtype is None:
        return mask
    zero = torch.zeros((), dtype=float_dtype, device=dev)
    return torch.where(mask, zero, torch.finfo(float_dtype).min)
