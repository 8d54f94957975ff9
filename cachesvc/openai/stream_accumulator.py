"""Rebuilds a streamed answer from its chunks, so that a live stream can be stored as an ``Answer``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cachesvc.openai import codec
from cachesvc.openai.answer import Answer
from cachesvc.openai.protocol import Endpoint
from cachesvc.openai.sse import DONE


@dataclass
class StreamAccumulator:
    """``complete`` only once ``[DONE]`` arrived after a clean stream of chunks."""

    endpoint: Endpoint
    model: str = ""
    usage: dict[str, Any] | None = None
    system_fingerprint: str | None = None
    done: bool = False
    error: bool = False
    _choices: dict[int, dict[str, Any]] = field(default_factory=dict)

    def feed(self, data: bytes) -> dict[str, Any] | None:
        """Take one event's payload; returns the chunk it carried (None for ``[DONE]`` or one that is not a chunk)."""
        if data == DONE:
            self.done = True
            return None
        try:
            chunk = codec.loads(data)
        except codec.JSONDecodeError:
            self.error = True
            return None
        if not isinstance(chunk, dict) or "error" in chunk:
            self.error = True
            return None
        self.model = chunk.get("model") or self.model
        self.system_fingerprint = chunk.get("system_fingerprint") or self.system_fingerprint
        if chunk.get("usage"):
            self.usage = chunk["usage"]
        for choice in chunk.get("choices") or []:
            self._merge(choice)
        return chunk

    def _merge(self, choice: dict[str, Any]) -> None:
        index = choice.get("index", 0)
        if self.endpoint == "chat":
            slot = self._choices.setdefault(index, {"index": index, "message": {"role": "assistant", "content": ""},
                                                    "logprobs": None, "finish_reason": None})
            delta = choice.get("delta") or {}
            message = slot["message"]
            if delta.get("role"):
                message["role"] = delta["role"]
            for key in ("content", "refusal", "reasoning_content"):
                if delta.get(key):
                    message[key] = (message.get(key) or "") + delta[key]
            for call in delta.get("tool_calls") or []:
                self._merge_tool_call(message.setdefault("tool_calls", []), call)
            lp = (choice.get("logprobs") or {}).get("content")
            if lp:
                slot["logprobs"] = {"content": ((slot["logprobs"] or {}).get("content") or []) + lp}
        else:
            slot = self._choices.setdefault(
                index, {"index": index, "text": "", "logprobs": None, "finish_reason": None})
            slot["text"] += choice.get("text") or ""
        if choice.get("finish_reason"):
            slot["finish_reason"] = choice["finish_reason"]

    @staticmethod
    def _merge_tool_call(calls: list[dict[str, Any]], delta: dict[str, Any]) -> None:
        position = delta.get("index", len(calls))
        while len(calls) <= position:
            calls.append({"id": "", "type": "function", "function": {"name": "", "arguments": ""}})
        call = calls[position]
        if delta.get("id"):
            call["id"] = delta["id"]
        if delta.get("type"):
            call["type"] = delta["type"]
        function = delta.get("function") or {}
        call["function"]["name"] += function.get("name") or ""
        call["function"]["arguments"] += function.get("arguments") or ""

    @property
    def complete(self) -> bool:
        return self.done and not self.error and bool(self._choices)

    def answer(self) -> Answer:
        choices = [self._choices[i] for i in sorted(self._choices)]
        for choice in choices:
            message = choice.get("message")
            if message is not None and message.get("tool_calls") and not message.get("content"):
                message["content"] = None  # as a non-streamed tool-call answer has it
        return Answer(self.endpoint, self.model, choices, self.usage, self.system_fingerprint)


def is_usage_only(chunk: dict[str, Any] | None) -> bool:
    """The final chunk that carries usage and no choices."""
    return chunk is not None and chunk.get("choices") == [] and bool(chunk.get("usage"))
