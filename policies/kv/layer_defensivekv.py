"""Layer-DefensiveKV: DefensiveKV scores with one global top-k over all layers deciding each layer's budget.

Feng et al., "Taming the Fragility of KV Cache Eviction in LLM Inference", ICLR 2026, arXiv 2510.13334.

The reference waits for the last layer's scores and so holds every layer's full cache at once. Here layers join a
candidate pool as they are prefilled and the pool is cut to the global top-k whenever it holds more than
``prefill_pool`` times the final budget (:mod:`.global_pool`): the same entries are kept, and peak memory drops with
the budget too.

``layer_group`` shares the budget within groups of consecutive layers instead of across the whole model: each
group's top-k is final as soon as its last layer is prefilled, which bounds the candidates held during prefill to
one group, and matches a pipeline-parallel deployment where a stage owns consecutive layers and cannot wait for
(or talk to) the others. ``layer_group=1`` is DefensiveKV (one top-k per layer, over its heads).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

from .defensivekv import DefensiveKVPolicy


@dataclass
class LayerDefensiveKVPolicy(DefensiveKVPolicy):
    """DefensiveKV with global (cross-layer) budget allocation.

    ``prefill_pool``: candidate entries held during prefill, as a multiple of the final budget (>= 1; the kept
    entries are the same for every value; higher means fewer re-gathers, ``inf`` holds every layer whole).
    ``layer_group``: consecutive layers sharing one budget (0 = all layers, the paper's Layer-DefensiveKV).
    """

    prefill_pool: float = 1.5
    layer_group: int = 0

    global_budget: ClassVar[bool] = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if math.isnan(self.prefill_pool) or self.prefill_pool < 1.0:
            raise ValueError(f"prefill_pool must be >= 1, got {self.prefill_pool}")
        if isinstance(self.layer_group, bool) or not isinstance(self.layer_group, int) or self.layer_group < 0:
            raise ValueError(f"layer_group must be an integer >= 0 (0 = all layers), got {self.layer_group!r}")

    def budget_layers(self, layer_idx: int, n_layers: int) -> range:
        """The layers that share ``layer_idx``'s budget."""
        group = self.layer_group or n_layers
        start = layer_idx - layer_idx % group
        return range(start, min(start + group, n_layers))
