"""A cache layer whose KV heads hold different numbers of entries, stored without padding.

Head-wise budgets (AdaKV, DefensiveKV, Layer-DefensiveKV) give the heads of a layer, and with a global budget the
rows of a batch, unequal lengths. transformers' ``DynamicLayer`` holds one ``[b, kv_heads, seq, d]`` tensor, so
the pruned layer would have to be padded to its longest head: on a model with few KV heads that is up to twice the
kept entries. :class:`HeadRaggedLayer` holds only the kept entries, packed, and builds the padded layout of
:mod:`.layout` for the length of one forward (``update``), where the per-head mask hides the padding.

- at rest: the kept entries ``[n_kept, d]`` (keys and values), a bool slot map ``[b, kv_heads, slots]``, and the
  tokens appended since the pruning (question, decoded tokens), which every head shares: ``[b, kv_heads, t, d]``;
- in a forward: one padded ``[b, kv_heads, slots + t, d]`` copy of this layer, freed after its attention.

The price is that copy: per decoded token, one more write and read of each layer's kept entries. A varlen
attention kernel would attend to the packed entries directly.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from transformers.cache_utils import CacheLayerMixin


class HeadRaggedLayer(CacheLayerMixin):
    """Pruned layer with per-head (and per-row) lengths; built from a padded layout and its validity mask."""

    is_sliding = False
    is_compileable = False
    is_croppable = True
    # Written into the padding slots of the attended view; the per-head mask hides them (tests use garbage).
    padding_value: float = 0.0

    def __init__(self, keys: torch.Tensor, values: torch.Tensor, valid: torch.Tensor) -> None:
        """``keys``/``values`` ``[b, kv_heads, slots, d]`` padded, ``valid`` bool ``[b, kv_heads, slots]``."""
        if keys.shape != values.shape or keys.shape[:-1] != valid.shape or valid.dtype != torch.bool:
            raise ValueError(
                f"keys {tuple(keys.shape)}, values {tuple(values.shape)} and bool valid {tuple(valid.shape)} "
                "must describe the same [b, kv_heads, slots] layout"
            )
        self.is_initialized = True
        self.dtype, self.device = keys.dtype, keys.device
        self._pack(keys, values, valid)
        b, h, _, d = keys.shape
        self.tail_keys = keys.new_empty(b, h, 0, d)
        self.tail_values = values.new_empty(b, h, 0, d)

    def _pack(self, keys: torch.Tensor, values: torch.Tensor, valid: torch.Tensor) -> None:
        self.slot_shape = tuple(keys.shape)
        pad_row = keys.new_full((1, keys.shape[-1]), self.padding_value)
        # Kept entries in (row, head, slot) order, then one padding row that every padding slot points to.
        self.packed_keys = torch.cat([keys[valid], pad_row])
        self.packed_values = torch.cat([values[valid], pad_row])
        flat = valid.flatten()
        n_kept = int(flat.sum())
        slot_source = torch.full((flat.numel(),), n_kept, dtype=torch.int32, device=keys.device)
        slot_source[flat] = torch.arange(n_kept, dtype=torch.int32, device=keys.device)
        self.slot_source = slot_source  # [b * h * slots]: the packed row each slot of the padded layout reads

    def _prefix(self, packed: torch.Tensor) -> torch.Tensor:
        """The pruned part in the padded layout, ``[b, kv_heads, slots, d]``."""
        return packed.index_select(0, self.slot_source).view(self.slot_shape)

    def _padded(self, packed: torch.Tensor, tail: torch.Tensor) -> torch.Tensor:
        prefix = self._prefix(packed)
        return torch.cat([prefix, tail], dim=-2) if tail.shape[-2] else prefix

    @property
    def keys(self) -> torch.Tensor:
        """Padded keys ``[b, kv_heads, seq, d]`` (a fresh copy: what attention sees)."""
        return self._padded(self.packed_keys, self.tail_keys)

    @property
    def values(self) -> torch.Tensor:
        """Padded values ``[b, kv_heads, seq, d]`` (a fresh copy)."""
        return self._padded(self.packed_values, self.tail_values)

    @property
    def kv_valid(self) -> torch.Tensor:
        """Which slots of the pruned part hold an entry (:data:`.layout.VALID_ATTR`); later tokens all do."""
        b, h, slots, _ = self.slot_shape
        return (self.slot_source < self.packed_keys.shape[0] - 1).view(b, h, slots)

    # -- CacheLayerMixin -----------------------------------------------------------------------------------------
    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        """Never needed: the layer is born initialized (from a pruned layer)."""

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: object, **kwargs: object
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Append tokens every head shares; return the padded keys and values for this forward's attention."""
        self.tail_keys = torch.cat([self.tail_keys, key_states], dim=-2)
        self.tail_values = torch.cat([self.tail_values, value_states], dim=-2)
        return self.keys, self.values

    def get_seq_length(self) -> int:
        return self.slot_shape[2] + self.tail_keys.shape[-2]

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        return self.get_seq_length() + query_length, 0

    def get_max_length(self) -> int:
        return -1

    def held_bytes(self) -> int:
        """Bytes this layer holds at rest: kept entries (and one padding row), appended tokens, the slot map."""
        tensors = (self.packed_keys, self.packed_values, self.tail_keys, self.tail_values, self.slot_source)
        return sum(t.numel() * t.element_size() for t in tensors)

    def reset(self) -> None:
        raise NotImplementedError("a pruned cache cannot be reset in place: start a new DynamicCache")

    def crop(self, tokens_to_remove: int) -> None:
        """Drop the last ``-tokens_to_remove`` appended tokens (the pruned context itself cannot be cropped)."""
        if tokens_to_remove > 0:
            raise ValueError(f"crop takes a negative number of tokens to remove, got {tokens_to_remove}")
        n = -tokens_to_remove
        if n > self.tail_keys.shape[-2]:
            raise ValueError(
                f"cannot crop {n} tokens: only {self.tail_keys.shape[-2]} were appended after the pruning"
            )
        if n:
            self.tail_keys, self.tail_values = self.tail_keys[..., :-n, :], self.tail_values[..., :-n, :]

    def offload(self) -> None:
        self._move("cpu")

    def prefetch(self) -> None:
        if self.packed_keys.device != self.device:
            self._move(self.device)

    def _move(self, device: torch.device | str) -> None:
        for name in ("packed_keys", "packed_values", "tail_keys", "tail_values", "slot_source"):
            setattr(self, name, getattr(self, name).to(device, non_blocking=True))

    # -- batch operations (beam search, batch expansion): rebuilt through the padded layout -----------------------
    def _map_rows(self, rows: Callable[[torch.Tensor], torch.Tensor]) -> None:
        self._pack(rows(self._prefix(self.packed_keys)), rows(self._prefix(self.packed_values)), rows(self.kv_valid))
        self.tail_keys, self.tail_values = rows(self.tail_keys), rows(self.tail_values)

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        self._map_rows(lambda t: t.index_select(0, beam_idx.to(t.device)))

    def batch_repeat_interleave(self, repeats: int) -> None:
        self._map_rows(lambda t: t.repeat_interleave(repeats, dim=0))

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        self._map_rows(lambda t: t[indices.to(t.device)])


def held_bytes(layer: object) -> int:
    """Bytes a cache layer holds at rest (keys and values; a :class:`HeadRaggedLayer`'s packed storage)."""
    if isinstance(layer, HeadRaggedLayer):
        return layer.held_bytes()
    keys, values = getattr(layer, "keys", None), getattr(layer, "values", None)
    return sum(t.numel() * t.element_size() for t in (keys, values) if isinstance(t, torch.Tensor))
