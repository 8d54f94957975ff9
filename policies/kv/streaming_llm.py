"""StreamingLLM: keep the first tokens (attention sinks) and the most recent ones.

Xiao et al., "Efficient Streaming Language Models with Attention Sinks", ICLR 2024, arXiv 2309.17453.
Scores depend only on positions, so no window queries are computed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from .base import MUST_KEEP, KVPolicy, ScoreInputs


@dataclass
class StreamingLLMPolicy(KVPolicy):
    """Keep ``n_sink`` first tokens, then the most recent prefix tokens up to the budget (same for every head)."""

    n_sink: int = 4

    needs_queries: ClassVar[bool] = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.n_sink < 0:
            raise ValueError(f"n_sink must be >= 0, got {self.n_sink}")

    def score(self, inputs: ScoreInputs) -> torch.Tensor:
        b, h, n = inputs.keys.shape[0], inputs.keys.shape[1], inputs.n_prefix
        pos = torch.arange(n, device=inputs.keys.device, dtype=torch.float32)
        scores = (pos + 1.0) / max(n, 1)  # later = higher
        scores[: self.n_sink] = MUST_KEEP
        return scores.expand(b, h, n).clone()
