"""The ``usage`` object of a JSON answer relayed as it arrives (embeddings, responses, any pass-through call).

The proxy streams a pass-through answer on without holding it, so it cannot parse an answer of any size. It keeps
the first ``WHOLE_BYTES`` (parsed whole when the answer is no longer) and the last ``TAIL_BYTES``, where OpenAI,
vLLM, SGLang and llama.cpp put ``usage`` in an answer too large to keep: after ``data``. The work and memory are
bounded whatever the answer's size; an answer whose usage is neither whole nor in its tail charges nothing.
"""

from __future__ import annotations

import json
import re
from typing import Any

from cachesvc.openai import codec

WHOLE_BYTES = 64 * 1024
TAIL_BYTES = 4 * 1024
_USAGE_KEY = re.compile(r'"usage"\s*:\s*(?=\{)')
_DECODER = json.JSONDecoder()


class UsageTail:
    """Feed it an answer's chunks in order; ``usage()`` then says what the answer reported, or None."""

    def __init__(self) -> None:
        self._head = bytearray()
        self._tail = b""
        self._size = 0

    def feed(self, chunk: bytes) -> None:
        self._size += len(chunk)
        if len(self._head) < WHOLE_BYTES:
            self._head += chunk[:WHOLE_BYTES - len(self._head)]
        self._tail = (self._tail + chunk)[-TAIL_BYTES:] if len(chunk) < TAIL_BYTES else chunk[-TAIL_BYTES:]

    def usage(self) -> dict[str, Any] | None:
        """The answer's ``usage`` object: from the whole answer when it was at most WHOLE_BYTES, else from its
        tail."""
        if self._size <= WHOLE_BYTES:
            try:
                parsed = codec.loads(bytes(self._head))
            except (codec.JSONDecodeError, codec.TooDeep):
                return None
            usage = parsed.get("usage") if isinstance(parsed, dict) else None
            return usage if isinstance(usage, dict) else None
        tail = self._tail.decode("utf-8", errors="replace")
        for key in reversed(list(_USAGE_KEY.finditer(tail))):  # the last one that parses: the answer's own
            try:
                usage, _ = _DECODER.raw_decode(tail, key.end())
            except (ValueError, RecursionError):
                continue
            if isinstance(usage, dict):
                return usage
        return None
