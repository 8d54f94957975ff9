"""Choosing the next token: greedy at temperature 0, else temperature + nucleus (top-p) sampling, with OpenAI's
presence/frequency penalties; a per-request seed makes sampling reproducible."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch


@dataclass(frozen=True)
class SamplingParams:
    """What a request asks of the decoder (validated by the request parser)."""

    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    stop: tuple[str, ...] = ()
    stop_token_ids: tuple[int, ...] = ()
    ignore_eos: bool = False

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


@dataclass
class TokenSampler:
    """Stateful per request: the random generator and the counts the penalties need."""

    params: SamplingParams
    vocab_size: int
    generator: torch.Generator = field(init=False)
    counts: torch.Tensor = field(init=False)

    def __post_init__(self) -> None:
        seed = self.params.seed if self.params.seed is not None else int.from_bytes(os.urandom(8), "little") >> 1
        self.generator = torch.Generator().manual_seed(seed)
        self.counts = torch.zeros(self.vocab_size, dtype=torch.float32)

    def choose(self, logits: torch.Tensor) -> int:
        """The next token id from the last position's logits ``[vocab]``."""
        logits = logits.float()
        p = self.params
        if p.presence_penalty or p.frequency_penalty:
            logits = logits - p.frequency_penalty * self.counts - p.presence_penalty * (self.counts > 0).float()
        if p.greedy:
            token = int(logits.argmax())
        else:
            probs = torch.softmax(logits / p.temperature, dim=-1)
            if p.top_p < 1.0:
                probs = _nucleus(probs, p.top_p)
            token = int(torch.multinomial(probs, 1, generator=self.generator))
        self.counts[token] += 1
        return token


def _nucleus(probs: torch.Tensor, top_p: float) -> torch.Tensor:
    """Keep the smallest set of most likely tokens whose mass reaches ``top_p`` (the top token always stays)."""
    sorted_probs, order = probs.sort(descending=True)
    before = sorted_probs.cumsum(-1) - sorted_probs  # mass of the tokens ranked above each one
    sorted_probs[before >= top_p] = 0.0
    kept = torch.zeros_like(probs).scatter_(-1, order, sorted_probs)
    return kept / kept.sum()
