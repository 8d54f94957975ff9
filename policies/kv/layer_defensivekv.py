"""Layer-DefensiveKV: DefensiveKV scores with one global top-k over all layers deciding each layer's budget.

Feng et al., "Taming the Fragility of KV Cache Eviction in LLM Inference", ICLR 2026, arXiv 2510.13334.

The split needs every layer's scores, so layers are pruned after the last layer's attention has run during
prefill: the full cache of every layer is held at once, and peak memory does **not** drop (only the memory after
prefill does). The ``compress`` context handles this through ``global_budget``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from .defensivekv import DefensiveKVPolicy


@dataclass
class LayerDefensiveKVPolicy(DefensiveKVPolicy):
    """DefensiveKV with global (cross-layer) budget allocation."""

    global_budget: ClassVar[bool] = True
