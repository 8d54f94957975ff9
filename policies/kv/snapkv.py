"""SnapKV: observation-window attention, pooled, mean-aggregated; every head keeps the same budget.

Li et al., "SnapKV: LLM Knows What You are Looking for Before Generation", NeurIPS 2024, arXiv 2404.14469.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from cachesvc.kernels.window_scores import window_scores

from .base import KVPolicy, ScoreInputs


def window_importance(inputs: ScoreInputs, aggregation: str, pool_kernel: int) -> torch.Tensor:
    """Pooled window attention of the prefix entries ``[b, kv_heads, n]`` (fused kernel where available)."""
    return window_scores(
        inputs.window_queries,
        inputs.keys,
        aggregation=aggregation,
        pool_kernel=pool_kernel,
        scale=getattr(inputs.module, "scaling", None),
    )


@dataclass
class SnapKVPolicy(KVPolicy):
    """Mean over the window queries and the GQA group of the pooled window attention."""

    def score(self, inputs: ScoreInputs) -> torch.Tensor:
        return window_importance(inputs, "mean", self.pool_kernel)
