"""Rebuilds a streamed answer from its chunks, so that a live stream can be stored as an ``Answer``.

Each chunk's shape is checked before it is merged (``answer.choice_problem``): a malformed one marks the stream
broken (``problem`` says why) instead of raising. Texts are kept as lists of pieces and joined once, in
``answer()``, so the work is linear in the answer however small its pieces.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cachesvc.openai import codec
from cachesvc.openai.answer import Answer, choice_problem, envelope_problem
from cachesvc.openai.protocol import Endpoint
from cachesvc.openai.sse import DONE

_TEXTS = ("content", "refusal", "reasoning_content")


@dataclass
class _ToolCall:
    id: str = ""
    type: str = "function"
    name: list[str] = field(default_factory=list)
    arguments: list[str] = field(default_factory=list)

    def final(self) -> dict[str, Any]:
        return {"id": self.id, "type": self.type,
                "function": {"name": "".join(self.name), "arguments": "".join(self.arguments)}}


@dataclass
class _Choice:
    """One choice being rebuilt: the pieces of each text, its tool calls, logprobs and finish reason."""

    index: int
    role: str = "assistant"
    texts: dict[str, list[str]] = field(default_factory=dict)  # "content", "refusal", ... or "text" -> pieces
    tool_calls: list[_ToolCall] = field(default_factory=list)
    logprobs: list[Any] | None = None
    finish_reason: str | None = None

    def final(self, chat: bool) -> dict[str, Any]:
        if not chat:
            return {"index": self.index, "text": "".join(self.texts.get("text", ())), "logprobs": None,
                    "finish_reason": self.finish_reason}
        message: dict[str, Any] = {"role": self.role, "content": "".join(self.texts.get("content", ()))}
        message.update({key: "".join(self.texts[key]) for key in _TEXTS[1:] if key in self.texts})
        if self.tool_calls:
            message["tool_calls"] = [call.final() for call in self.tool_calls]
            if not message["content"]:
                message["content"] = None  # as a non-streamed tool-call answer has it
        return {"index": self.index, "message": message,
                "logprobs": {"content": self.logprobs} if self.logprobs is not None else None,
                "finish_reason": self.finish_reason}


@dataclass
class StreamAccumulator:
    """``complete`` only once ``[DONE]`` arrived after a clean stream of well-formed chunks; after ``[DONE]`` or
    a broken chunk nothing more is taken in."""

    endpoint: Endpoint
    model: str = ""
    usage: dict[str, Any] | None = None
    system_fingerprint: str | None = None
    done: bool = False
    problem: str | None = None  # why the stream is broken (None: it is not)
    upstream_error: dict[str, Any] | None = None  # the error event the upstream sent (``{"error": ...}``), as it was
    _choices: dict[int, _Choice] = field(default_factory=dict)

    @property
    def error(self) -> bool:
        """The stream is broken: an event that is not a chunk, a malformed chunk, or an error event."""
        return self.problem is not None

    def feed(self, data: bytes) -> dict[str, Any] | None:
        """Take one event's payload; returns the chunk it carried (None for ``[DONE]``, for an event that breaks
        the stream, and for anything after either)."""
        if self.done or self.problem is not None:
            return None
        if data == DONE:
            self.done = True
            return None
        try:
            chunk = codec.loads(data)
        except codec.JSONDecodeError:
            return self._broken("an event that is not JSON")
        if not isinstance(chunk, dict):
            return self._broken("an event that is not a JSON object")
        if "error" in chunk:
            self.upstream_error = chunk
            return self._broken("an error event")
        problem = envelope_problem(chunk)
        choices = chunk.get("choices")
        if problem is None and choices is not None and not isinstance(choices, list):
            problem = "choices that are not a list"
        if problem is not None:
            return self._broken(problem)
        for choice in choices or ():
            problem = choice_problem(self.endpoint, choice, "delta")
            if problem is None:
                problem = self._merge(choice)
            if problem is not None:
                return self._broken(problem)
        self.model = chunk.get("model") or self.model
        self.system_fingerprint = chunk.get("system_fingerprint") or self.system_fingerprint
        if chunk.get("usage"):
            self.usage = chunk["usage"]
        return chunk

    def _broken(self, problem: str) -> dict[str, Any] | None:
        """Mark the stream broken; None, what ``feed`` returns for the event that broke it."""
        self.problem = problem
        return None

    def _merge(self, choice: dict[str, Any]) -> str | None:
        """Add a well-formed choice's pieces; what is wrong when they cannot be placed (None: nothing)."""
        index = choice.get("index", 0)
        slot = self._choices.get(index)
        if slot is None:
            slot = self._choices[index] = _Choice(index)
        if self.endpoint == "chat":
            delta = choice.get("delta") or {}
            if delta.get("role"):
                slot.role = delta["role"]
            for key in _TEXTS:
                piece = delta.get(key)
                if piece:
                    slot.texts.setdefault(key, []).append(piece)
            for call in delta.get("tool_calls") or ():
                problem = self._merge_tool_call(slot.tool_calls, call)
                if problem is not None:
                    return problem
            content = (choice.get("logprobs") or {}).get("content")
            if content:
                if slot.logprobs is None:
                    slot.logprobs = []
                slot.logprobs.extend(content)
        else:
            text = choice.get("text")
            if text:
                slot.texts.setdefault("text", []).append(text)
        if choice.get("finish_reason"):
            slot.finish_reason = choice["finish_reason"]
        return None

    @staticmethod
    def _merge_tool_call(calls: list[_ToolCall], delta: dict[str, Any]) -> str | None:
        position = delta.get("index", len(calls))
        if position > len(calls):  # calls arrive in order: a new one takes the next index
            return f"a tool call at index {position} after {len(calls)} calls"
        if position == len(calls):
            calls.append(_ToolCall())
        call = calls[position]
        if delta.get("id"):
            call.id = delta["id"]
        if delta.get("type"):
            call.type = delta["type"]
        function = delta.get("function") or {}
        if function.get("name"):
            call.name.append(function["name"])
        if function.get("arguments"):
            call.arguments.append(function["arguments"])
        return None

    @property
    def complete(self) -> bool:
        return self.done and self.problem is None and bool(self._choices)

    def answer(self) -> Answer:
        chat = self.endpoint == "chat"
        choices = [self._choices[i].final(chat) for i in sorted(self._choices)]
        return Answer(self.endpoint, self.model, choices, self.usage, self.system_fingerprint)


def is_usage_only(chunk: dict[str, Any] | None) -> bool:
    """The final chunk that carries usage and no choices."""
    return chunk is not None and chunk.get("choices") == [] and bool(chunk.get("usage"))
