"""CriticalKV: value-norm-aware scores with a critical stage, on head-wise budgets (AdaCriticalKV).

Feng et al., "Identify Critical KV Cache in LLM Inference from an Output Perturbation Perspective",
arXiv 2502.03805. DefensiveKV builds on it (steps 4-5 of docs/kv-eviction.md):

- value-norm scaling: ``S_i = R_i * N_i / sum_kv_heads N_i`` with ``N_i`` the group mean of ``||v_i W_O^h||_1``;
- critical stage: per head, the entries with the highest unpooled window attention are always kept until the
  kept entries plus the window carry ``critical_mass`` of the window's attention, capped at the head's average
  prefix budget.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from cachesvc.kernels.value_norm import value_norm
from cachesvc.kernels.window_scores import window_scores_and_attention

from .base import MUST_KEEP, KVPolicy, ScoreInputs
from .snapkv import window_importance


def value_norm_share(inputs: ScoreInputs) -> torch.Tensor:
    """``N_i / sum over KV heads of N_i`` for the prefix entries, ``[b, kv_heads, n]``."""
    n = inputs.n_prefix
    norms = value_norm(inputs.values[:, :, :n], inputs.module.o_proj.weight, inputs.group)
    return norms / norms.sum(dim=1, keepdim=True).clamp_min(torch.finfo(torch.float32).tiny)


def critical_mask(attention: torch.Tensor, critical_mass: float, cap: int) -> torch.Tensor:
    """Bool ``[b, kv_heads, n]``: per head, the smallest set of top-attention entries that, with the window,
    reaches ``critical_mass`` of the (group-and-window averaged, unpooled) ``attention`` ``[b, kv_heads, n]``;
    at most ``cap`` entries per head."""
    n = attention.shape[-1]
    window_mass = 1.0 - attention.sum(-1, keepdim=True)
    threshold = critical_mass - window_mass
    sorted_att, order = attention.sort(dim=-1, descending=True)
    count = (sorted_att.cumsum(-1) < threshold).sum(-1, keepdim=True) + 1
    count = torch.where(threshold <= 0, torch.zeros_like(count), count).clamp(max=min(cap, n))
    in_set = torch.arange(n, device=attention.device) < count
    return torch.zeros_like(in_set).scatter(-1, order, in_set)


@dataclass
class CriticalKVPolicy(KVPolicy):
    """Mean-aggregated window scores, value-norm scaling and the critical stage; head-wise budgets."""

    critical_mass: float = 0.9

    headwise: ClassVar[bool] = True
    aggregation: ClassVar[str] = "mean"

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 <= self.critical_mass <= 1.0:
            raise ValueError(f"critical_mass must be in [0, 1], got {self.critical_mass}")

    def score(self, inputs: ScoreInputs) -> torch.Tensor:
        if self.critical_mass <= 0:
            return window_importance(inputs, self.aggregation, self.pool_kernel) * value_norm_share(inputs)
        # The window scores and the critical stage's unpooled attention come from one pass over the keys.
        window, attention = window_scores_and_attention(
            inputs.window_queries, inputs.keys, aggregation=self.aggregation, pool_kernel=self.pool_kernel,
            scale=getattr(inputs.module, "scaling", None),
        )
        scores = window * value_norm_share(inputs)
        cap = self.prefix_budget(inputs.keys.shape[-2])
        return torch.where(critical_mask(attention, self.critical_mass, cap), MUST_KEEP, scores)
