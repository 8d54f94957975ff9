"""Server-sent events as OpenAI-compatible servers write them: ``data: <json>`` events ending in ``data: [DONE]``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from cachesvc.openai import codec

DONE = b"[DONE]"


class SSEParser:
    """Incremental parser: feed it bytes as they arrive, get back the ``data`` payload of each whole event."""

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, chunk: bytes) -> list[bytes]:
        self._buffer += chunk.replace(b"\r\n", b"\n")
        events: list[bytes] = []
        while True:
            end = self._buffer.find(b"\n\n")
            if end < 0:
                return events
            raw, self._buffer = self._buffer[:end], self._buffer[end + 2:]
            data = [line[5:].removeprefix(b" ") for line in raw.split(b"\n") if line.startswith(b"data:")]
            if data:
                events.append(b"\n".join(data))

    @property
    def pending(self) -> bool:
        """True when bytes of an unfinished event are buffered."""
        return bool(self._buffer.strip())


def encode_event(payload: dict[str, Any] | bytes) -> bytes:
    """One SSE event; a dict is sent as compact JSON, the way vLLM and OpenAI send chunks, bytes as they are."""
    data = payload if isinstance(payload, bytes) else codec.dumps(payload)
    return b"data: " + data + b"\n\n"


def split_text(text: str, max_chars: int = 48) -> Iterator[str]:
    """Cut text into stream-sized pieces on whitespace, so a replay looks like a live answer."""
    start = 0
    while start < len(text):
        end = min(len(text), start + max_chars)
        if end < len(text):
            cut = text.rfind(" ", start + 1, end)
            if cut > start:
                end = cut
        yield text[start:end]
        start = end
