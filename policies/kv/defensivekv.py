"""DefensiveKV: defensive aggregation (worst case over group heads and window queries, floored at the head's
mean), plus CriticalKV's value-norm scaling and critical stage, on head-wise budgets.

Feng et al., "Taming the Fragility of KV Cache Eviction in LLM Inference", ICLR 2026, arXiv 2510.13334.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from .criticalkv import CriticalKVPolicy


@dataclass
class DefensiveKVPolicy(CriticalKVPolicy):
    """``R_i = max(max_{group, window} P_i, mean_j R~_j)``, then value-norm scaling and the critical stage."""

    aggregation: ClassVar[str] = "defensive"
