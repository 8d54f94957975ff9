"""Base class of the KV-cache eviction policies: budgets, selection and the gather.

A concrete policy is a ``@dataclass`` that overrides :meth:`KVPolicy.score` only. Scores cover the ``n = q_len - w``
prefix entries of one layer, shape ``[batch, kv_heads, n]``; the observation window (the last ``w`` context tokens)
is always kept and counts inside the budget ("20% cache" = ``compression_ratio=0.8``).

Budget modes (class attributes of each policy, not fields: a policy class fixes its mode):

- per-head (``headwise=False``): every KV head keeps the same number of prefix entries (its own top-k);
- head-wise (``headwise=True``): one top-k over all heads of the layer decides the heads' budgets (AdaKV);
- global (``global_budget=True``): one top-k over all layers and heads of each batch row (Layer-DefensiveKV),
  streamed over the layers during prefill by :mod:`.global_pool`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch

# Scores given to entries that must be kept (critical stage); larger than any normalised score.
MUST_KEEP = 1.0e9

# A Llama-style attention module of a transformers model: ``q_proj``/``k_proj``/``v_proj``/``o_proj``, ``layer_idx``,
# ``head_dim``, ``config``, optionally ``q_norm`` and ``scaling``; read by attribute, untyped upstream.
AttentionModule = Any


@dataclass
class ScoreInputs:
    """What a scorer may look at for one attention layer right after prefill.

    ``keys``/``values`` are the layer's full cache ``[b, kv_heads, q_len, d]`` (keys after RoPE);
    ``queries`` are the window queries ``[b, q_heads, w, d]`` (after RoPE, and q-norm where the model has it),
    or ``None`` for policies with ``needs_queries = False``.
    """

    module: AttentionModule
    hidden_states: torch.Tensor
    keys: torch.Tensor
    values: torch.Tensor
    queries: torch.Tensor | None
    window_size: int

    @property
    def n_prefix(self) -> int:
        return self.keys.shape[-2] - self.window_size

    @property
    def group(self) -> int:
        return self.queries.shape[1] // self.keys.shape[1] if self.queries is not None else 1

    @property
    def window_queries(self) -> torch.Tensor:
        """``queries``, for the policies that need them (``needs_queries = True``: the hook computes them)."""
        if self.queries is None:
            raise ValueError("this policy scores with the window queries, and none were computed")
        return self.queries


@dataclass
class KVPolicy:
    """Abstract scorer. Subclasses implement :meth:`score`; this class turns scores into keep masks.

    Fields: ``compression_ratio`` (fraction of the context evicted, window counted inside the kept part) or
    ``budget_tokens`` (entries kept per KV head, window included; overrides the ratio when set), ``window_size``
    (observation window, always kept) and ``pool_kernel`` (1-D average pooling of window attention).
    """

    compression_ratio: float = 0.0
    budget_tokens: int | None = None
    window_size: int = 32
    pool_kernel: int = 5

    needs_queries: ClassVar[bool] = True
    global_budget: ClassVar[bool] = False
    headwise: ClassVar[bool] = False

    def __post_init__(self) -> None:
        if not 0.0 <= self.compression_ratio < 1.0:
            raise ValueError(f"compression_ratio must be in [0, 1), got {self.compression_ratio}")
        if self.budget_tokens is not None and self.budget_tokens < 0:
            raise ValueError(f"budget_tokens must be >= 0, got {self.budget_tokens}")
        if self.window_size < 1:
            raise ValueError(f"window_size must be >= 1, got {self.window_size}")
        if self.pool_kernel < 1 or self.pool_kernel % 2 == 0:
            raise ValueError(f"pool_kernel must be a positive odd number, got {self.pool_kernel}")

    # -- to override -------------------------------------------------------------------------------------------
    def score(self, inputs: ScoreInputs) -> torch.Tensor:
        """Importance of each prefix entry, ``[b, kv_heads, n]`` (higher = keep)."""
        raise NotImplementedError

    # -- budgets -----------------------------------------------------------------------------------------------
    def tokens_per_head(self, q_len: int) -> int:
        """Entries kept per KV head on average, window included, clipped to ``[min(w, q_len), q_len]``."""
        if self.budget_tokens is not None:
            keep = self.budget_tokens
        else:
            keep = int(q_len * (1.0 - self.compression_ratio))
        return max(min(keep, q_len), min(self.window_size, q_len))

    def prefix_budget(self, q_len: int) -> int:
        """Prefix entries kept per KV head on average (the window excluded)."""
        return max(self.tokens_per_head(q_len) - self.window_size, 0)

    def applies_to(self, q_len: int) -> bool:
        """Whether a context of ``q_len`` tokens is compressed at all."""
        return q_len > self.window_size and self.prefix_budget(q_len) < q_len - self.window_size

    # -- selection ---------------------------------------------------------------------------------------------
    def select(self, scores: torch.Tensor) -> torch.Tensor:
        """Keep mask ``[b, kv_heads, n]`` for one layer: ``prefix_budget * kv_heads`` entries per batch row, split
        equally between heads, or by one top-k over the layer's heads for head-wise policies. (Global policies
        are selected across layers by :mod:`.global_pool` instead.)"""
        b, h, n = scores.shape
        n_keep_layer = min(self.prefix_budget(n + self.window_size) * h, h * n)
        if self.headwise or self.global_budget:
            from cachesvc.kernels.budget_select import headwise_keep_mask

            return headwise_keep_mask(scores, n_keep_layer)
        k = n_keep_layer // h
        mask = torch.zeros_like(scores, dtype=torch.bool)
        if k > 0:
            mask.scatter_(-1, scores.topk(k, dim=-1).indices, True)
        return mask

    @property
    def name(self) -> str:
        return type(self).__name__
