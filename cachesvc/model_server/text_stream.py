"""Turning generated token ids into text deltas: incremental detokenization and stop strings.

Text is decoded from all generated ids so far (byte-level BPE pieces only become valid UTF-8 in groups), and a
delta is released only when it no longer ends in a partial character. Stop strings are matched across deltas:
the tail that could still begin a stop string is held back, so a stop string never reaches the client.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

REPLACEMENT = "\ufffd"


class Detokenizer(Protocol):
    """What decoding needs of a tokenizer (transformers' have it)."""

    def decode(self, ids: list[int], /, *, skip_special_tokens: bool) -> str: ...


@dataclass
class IncrementalDecoder:
    """Feeds token ids, returns the new text each one completes."""

    tokenizer: Detokenizer
    ids: list[int] = field(default_factory=list)
    text: str = ""

    def push(self, token_id: int) -> str:
        self.ids.append(token_id)
        text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        if text.endswith(REPLACEMENT) or not text.startswith(self.text):
            return ""  # an unfinished multi-byte character; it comes with a later token
        delta, self.text = text[len(self.text):], text
        return delta


@dataclass
class StopStringMatcher:
    """Cuts the output at the first stop string; holds back text that might be the start of one."""

    stops: tuple[str, ...]
    pending: str = ""
    matched: str | None = None

    def feed(self, delta: str) -> str:
        """Text safe to send now. After a match, :attr:`matched` names the stop string and nothing more is sent."""
        if self.matched is not None:
            return ""
        if not self.stops:
            return delta
        buffer = self.pending + delta
        hits = [(buffer.find(s), s) for s in self.stops if s and s in buffer]
        if hits:
            cut, self.matched = min(hits)
            self.pending = ""
            return buffer[:cut]
        hold = max((k for s in self.stops for k in range(1, len(s)) if buffer.endswith(s[:k])), default=0)
        self.pending = buffer[len(buffer) - hold:] if hold else ""
        return buffer[: len(buffer) - hold]

    def flush(self) -> str:
        """At the end of generation the held-back tail was not a stop string after all."""
        tail, self.pending = self.pending, ""
        return tail if self.matched is None else ""
