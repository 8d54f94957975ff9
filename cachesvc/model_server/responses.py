"""The model server's response bodies and SSE chunks, field for field as vLLM writes them (``stop_reason``
included), plus a ``kv_cache`` object reporting what the KV eviction kept."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from cachesvc.model_server.generation import Finished, KVUsage


def usage_of(done: Finished) -> dict[str, int]:
    return {"prompt_tokens": done.prompt_tokens, "completion_tokens": done.completion_tokens,
            "total_tokens": done.prompt_tokens + done.completion_tokens}


def kv_headers(kv: KVUsage) -> dict[str, str]:
    """Response headers with the KV accounting, so a client sees it on streams before the first token."""
    return {"x-kv-policy": kv.policy or "none", "x-kv-entries-kept": str(kv.entries_kept),
            "x-kv-entries-full": str(kv.entries_full), "x-kv-bytes-kept": str(kv.bytes_kept)}


@dataclass
class ResponseBuilder:
    """Bodies and chunks of one answer; ``endpoint`` is ``chat`` or ``completions``."""

    endpoint: str
    model: str
    id: str = field(default="")
    created: int = field(default_factory=lambda: int(time.time()))

    def __post_init__(self) -> None:
        if not self.id:
            self.id = ("chatcmpl-" if self.chat else "cmpl-") + secrets.token_hex(16)

    @property
    def chat(self) -> bool:
        return self.endpoint == "chat"

    def _base(self, stream: bool) -> dict[str, Any]:
        kind = ("chat.completion.chunk" if stream else "chat.completion") if self.chat else "text_completion"
        return {"id": self.id, "object": kind, "created": self.created, "model": self.model}

    def body(self, text: str, done: Finished) -> dict[str, Any]:
        """A non-streamed response."""
        choice: dict[str, Any] = {"index": 0}
        if self.chat:
            choice["message"] = {"role": "assistant", "content": text}
        else:
            choice["text"] = text
        choice.update(logprobs=None, finish_reason=done.finish_reason, stop_reason=done.stop_reason)
        return {**self._base(False), "choices": [choice], "usage": usage_of(done), "kv_cache": done.kv.as_dict()}

    def role_chunk(self) -> dict[str, Any]:
        """The first chat chunk: the role, empty content."""
        return self._chunk({"delta": {"role": "assistant", "content": ""}})

    def text_chunk(self, text: str) -> dict[str, Any]:
        return self._chunk({"delta": {"content": text}} if self.chat else {"text": text})

    def final_chunk(self, done: Finished) -> dict[str, Any]:
        piece = {"delta": {"content": ""}} if self.chat else {"text": ""}
        chunk = self._chunk(piece, finish_reason=done.finish_reason, stop_reason=done.stop_reason)
        chunk["kv_cache"] = done.kv.as_dict()
        return chunk

    def usage_chunk(self, done: Finished) -> dict[str, Any]:
        return {**self._base(True), "choices": [], "usage": usage_of(done)}

    def _chunk(self, piece: dict[str, Any], finish_reason: str | None = None,
               stop_reason: str | int | None = None) -> dict[str, Any]:
        choice = {"index": 0, **piece, "logprobs": None, "finish_reason": finish_reason}
        if finish_reason is not None:
            choice["stop_reason"] = stop_reason
        return {**self._base(True), "choices": [choice]}
