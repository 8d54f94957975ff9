"""A model's answer in one canonical form: built from a JSON response or a stream, rendered as either.

Storing the answer rather than the bytes lets a streamed miss serve a later non-streamed hit and the other way
round, and gives every replay a fresh id and timestamp.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from cachesvc.openai import codec
from cachesvc.openai.protocol import Endpoint, completion_id
from cachesvc.openai.responses import ResponseBuilder
from cachesvc.openai.sse import DONE, encode_event, split_text

# Answers that stop for these reasons are not worth replaying to anybody else.
UNCACHEABLE_FINISH = frozenset({"length", "content_filter", "error", "abort"})


@dataclass
class Answer:
    endpoint: Endpoint
    model: str
    # final form: chat {"index", "message", "finish_reason", ...}; completions {"index", "text", ...}
    choices: list[dict[str, Any]]
    usage: dict[str, Any] | None = None
    system_fingerprint: str | None = None

    @property
    def has_tool_calls(self) -> bool:
        return any(c.get("message", {}).get("tool_calls") or c.get("message", {}).get("function_call")
                   for c in self.choices)

    def cacheable_reason(self, request_has_tools: bool) -> str | None:
        """Why this answer must not be cached, or None when it may be."""
        if not self.choices:
            return "empty"
        for choice in self.choices:
            finish = choice.get("finish_reason")
            if finish is None:
                return "unfinished"
            if finish in UNCACHEABLE_FINISH:
                return f"finish_{finish}"
        if self.has_tool_calls and not request_has_tools:
            return "tool_calls_without_tools"
        return None

    def to_json(self) -> bytes:
        """The stored form."""
        return codec.dumps(self)

    @classmethod
    def from_json(cls, data: bytes | str) -> Answer:
        return cls(**codec.loads(data))

    @classmethod
    def from_response(cls, endpoint: Endpoint, body: Any) -> Answer:
        """From a non-streamed response body; ValueError when it is not one."""
        if not isinstance(body, dict):
            raise ValueError("response is not an object")
        choices = body.get("choices")
        if not isinstance(choices, list):
            raise ValueError("response has no choices")
        return cls(endpoint, str(body.get("model", "")), choices, body.get("usage"), body.get("system_fingerprint"))

    def _builder(self) -> ResponseBuilder:
        return ResponseBuilder(self.endpoint, self.model, completion_id(self.endpoint, "cache"),
                               system_fingerprint=self.system_fingerprint)

    def render(self) -> dict[str, Any]:
        """A non-streamed response body."""
        return self._builder().body(self.choices, self.usage)

    def render_stream(self, include_usage: bool) -> Iterator[bytes]:
        """SSE events as a live stream would send them, ending in ``data: [DONE]``."""
        out = self._builder()
        for choice in self.choices:
            index = choice.get("index", 0)
            if out.chat:
                message = choice.get("message") or {}
                yield encode_event(out.chunk(out.delta(index, {"role": message.get("role", "assistant"),
                                                               "content": ""})))
                for piece in split_text(message.get("content") or ""):
                    yield encode_event(out.chunk(out.piece(index, piece)))
                extra = {k: v for k, v in message.items() if k in ("refusal", "function_call") and v}
                if message.get("tool_calls"):
                    extra["tool_calls"] = [{"index": i, **call} for i, call in enumerate(message["tool_calls"])]
                if extra:
                    yield encode_event(out.chunk(out.delta(index, extra)))
                yield encode_event(out.chunk(out.delta(index, {}, choice.get("finish_reason"))))
            else:
                for piece in split_text(choice.get("text") or ""):
                    yield encode_event(out.chunk(out.piece(index, piece)))
                yield encode_event(out.chunk(out.piece(index, "", choice.get("finish_reason"))))
        if include_usage:
            yield encode_event(out.usage_chunk(self.usage))
        yield encode_event(DONE)
