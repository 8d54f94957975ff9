"""AdaKV: SnapKV scores with head-wise budgets (one top-k over all heads of a layer).

Feng et al., "Ada-KV: Optimizing KV Cache Eviction by Adaptive Budget Allocation for Efficient LLM Inference",
arXiv 2407.11550. Heads get unequal budgets; see :mod:`.layout` for how the cache stores them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from .snapkv import SnapKVPolicy


@dataclass
class AdaKVPolicy(SnapKVPolicy):
    """SnapKV scoring, head-wise budget allocation."""

    headwise: ClassVar[bool] = True
