"""Server-sent events as OpenAI-compatible servers write them: ``data: <json>`` events ending in ``data: [DONE]``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from cachesvc.openai import codec

DONE = b"[DONE]"
MAX_EVENT_BYTES = 8 * 1024 * 1024  # an event longer than this is not a completion chunk; the parser stops


class SSEParser:
    """Incremental parser: feed it bytes as they arrive, get back the ``data`` payload of each whole event.

    Lines may end in CRLF, LF or a lone CR, also when a CRLF is split between two feeds. The work is linear in the
    bytes fed: the buffer holds only the unfinished event, is compacted once per feed, and each byte is scanned for
    an event's end about once. An unfinished event past ``max_event_bytes`` sets ``overflow``; the parser then
    drops what it holds and ignores everything fed after.
    """

    def __init__(self, max_event_bytes: int = MAX_EVENT_BYTES) -> None:
        self._buffer = bytearray()
        self._held_cr = False  # the last feed ended in CR: the next may start with its LF
        self._max_event_bytes = max_event_bytes
        self.overflow = False

    def feed(self, chunk: bytes) -> list[bytes]:
        if self.overflow:
            return []
        if self._held_cr:
            chunk, self._held_cr = b"\r" + chunk, False
        if chunk.endswith(b"\r"):
            chunk, self._held_cr = chunk[:-1], True
        if b"\r" in chunk:
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        buffer = self._buffer
        scan = max(0, len(buffer) - 1)  # what was buffered holds no event's end; one LF of it may start one
        buffer += chunk
        events: list[bytes] = []
        start = 0
        while (end := buffer.find(b"\n\n", scan)) >= 0:
            data = _data_of(bytes(buffer[start:end]))
            if data is not None:
                events.append(data)
            start = scan = end + 2
        if start:
            del buffer[:start]
        if len(buffer) > self._max_event_bytes:
            self.overflow = True
            buffer.clear()
        return events

    @property
    def pending(self) -> bool:
        """True when bytes of an unfinished event are buffered."""
        return bool(self._buffer.strip())


def _data_of(event: bytes) -> bytes | None:
    """The event's ``data`` lines joined with LF (None: it has none, as a comment or a bare ``event:``)."""
    if event.startswith(b"data: ") and b"\n" not in event:  # what every completion server sends
        return event[6:]
    data = [line[5:].removeprefix(b" ") for line in event.split(b"\n") if line.startswith(b"data:")]
    return b"\n".join(data) if data else None


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
