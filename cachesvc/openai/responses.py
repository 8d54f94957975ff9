"""Response bodies and stream chunks of the completion endpoints, field for field as OpenAI and vLLM write them."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from cachesvc.openai.protocol import Endpoint, completion_id, object_kind


@dataclass
class ResponseBuilder:
    """The envelope (id, object, created, model) that every body and chunk of one answer shares."""

    endpoint: Endpoint
    model: str
    id: str = ""
    created: int = field(default_factory=lambda: int(time.time()))
    system_fingerprint: str | None = None

    def __post_init__(self) -> None:
        if not self.id:
            self.id = completion_id(self.endpoint)

    @property
    def chat(self) -> bool:
        return self.endpoint == "chat"

    def _envelope(self, stream: bool) -> dict[str, Any]:
        envelope: dict[str, Any] = {"id": self.id, "object": object_kind(self.endpoint, stream=stream),
                                    "created": self.created, "model": self.model}
        if self.system_fingerprint is not None:
            envelope["system_fingerprint"] = self.system_fingerprint
        return envelope

    def body(self, choices: list[dict[str, Any]], usage: dict[str, Any] | None = None,
             **extra: Any) -> dict[str, Any]:
        """A non-streamed response; ``usage`` is left out when None."""
        body = {**self._envelope(False), "choices": choices}
        if usage is not None:
            body["usage"] = usage
        return {**body, **extra}

    def final_choice(self, index: int, text: str, finish_reason: str | None, **extra: Any) -> dict[str, Any]:
        """One choice of a non-streamed response: a chat ``message`` or a completion's ``text``."""
        piece = {"message": {"role": "assistant", "content": text}} if self.chat else {"text": text}
        return {"index": index, **piece, "logprobs": None, "finish_reason": finish_reason, **extra}

    def chunk(self, choice: dict[str, Any], **extra: Any) -> dict[str, Any]:
        """A stream chunk carrying one choice's piece (see ``piece`` and ``delta``)."""
        return {**self._envelope(True), "choices": [choice], **extra}

    def piece(self, index: int, text: str, finish_reason: str | None = None, **extra: Any) -> dict[str, Any]:
        """A streamed choice with more text: a chat delta's ``content`` or a completion's ``text``."""
        if self.chat:
            return self.delta(index, {"content": text}, finish_reason, **extra)
        return {"index": index, "text": text, "logprobs": None, "finish_reason": finish_reason, **extra}

    def delta(self, index: int, delta: dict[str, Any], finish_reason: str | None = None,
              **extra: Any) -> dict[str, Any]:
        """A streamed chat choice with any delta (role, content, tool calls)."""
        return {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish_reason, **extra}

    def usage_chunk(self, usage: dict[str, Any] | None) -> dict[str, Any]:
        """The last chunk of a stream asked for with ``stream_options.include_usage``: usage and no choices."""
        return {**self._envelope(True), "choices": [], "usage": usage}
