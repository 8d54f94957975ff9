"""A model's answer in one canonical form: built from a JSON response or a stream, rendered as either.

Storing the answer rather than the bytes lets a streamed miss serve a later non-streamed hit and the other way
round, and gives every replay a fresh id and timestamp.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Iterator

from cachesvc.sse import DONE, encode_event, split_text

# Answers that stop for these reasons are not worth replaying to anybody else.
UNCACHEABLE_FINISH = frozenset({"length", "content_filter", "error", "abort"})


@dataclass
class Answer:
    endpoint: str  # "chat" or "completions"
    model: str
    choices: list[dict[str, Any]]  # final form: chat {"index","message","finish_reason",...}; completions {"index","text",...}
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

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"), ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> "Answer":
        return cls(**json.loads(text))

    @classmethod
    def from_response(cls, endpoint: str, body: dict[str, Any]) -> "Answer":
        """From a non-streamed response body."""
        choices = body.get("choices")
        if not isinstance(choices, list):
            raise ValueError("response has no choices")
        return cls(endpoint, str(body.get("model", "")), choices, body.get("usage"), body.get("system_fingerprint"))

    def render(self) -> dict[str, Any]:
        """A non-streamed response body."""
        body: dict[str, Any] = {
            "id": _new_id(self.endpoint),
            "object": "chat.completion" if self.endpoint == "chat" else "text_completion",
            "created": int(time.time()),
            "model": self.model,
            "choices": self.choices,
        }
        if self.usage is not None:
            body["usage"] = self.usage
        if self.system_fingerprint is not None:
            body["system_fingerprint"] = self.system_fingerprint
        return body

    def render_stream(self, include_usage: bool) -> Iterator[bytes]:
        """SSE events as a live stream would send them, ending in `data: [DONE]`."""
        base: dict[str, Any] = {
            "id": _new_id(self.endpoint),
            "object": "chat.completion.chunk" if self.endpoint == "chat" else "text_completion",
            "created": int(time.time()),
            "model": self.model,
        }
        if self.system_fingerprint is not None:
            base["system_fingerprint"] = self.system_fingerprint

        def chunk(choice: dict[str, Any]) -> bytes:
            return encode_event({**base, "choices": [choice]})

        for choice in self.choices:
            index = choice.get("index", 0)
            if self.endpoint == "chat":
                message = choice.get("message") or {}
                yield chunk({"index": index, "delta": {"role": message.get("role", "assistant"), "content": ""},
                             "logprobs": None, "finish_reason": None})
                for piece in split_text(message.get("content") or ""):
                    yield chunk({"index": index, "delta": {"content": piece}, "logprobs": None, "finish_reason": None})
                extra = {k: v for k, v in message.items() if k in ("refusal", "function_call") and v}
                if message.get("tool_calls"):
                    extra["tool_calls"] = [{"index": i, **call} for i, call in enumerate(message["tool_calls"])]
                if extra:
                    yield chunk({"index": index, "delta": extra, "logprobs": None, "finish_reason": None})
                yield chunk({"index": index, "delta": {}, "logprobs": None, "finish_reason": choice.get("finish_reason")})
            else:
                for piece in split_text(choice.get("text") or ""):
                    yield chunk({"index": index, "text": piece, "logprobs": None, "finish_reason": None})
                yield chunk({"index": index, "text": "", "logprobs": None, "finish_reason": choice.get("finish_reason")})
        if include_usage:
            yield encode_event({**base, "choices": [], "usage": self.usage})
        yield encode_event(DONE)


@dataclass
class StreamAccumulator:
    """Rebuilds the final answer from stream chunks; `complete` only once `[DONE]` arrived after a clean stream."""

    endpoint: str
    model: str = ""
    usage: dict[str, Any] | None = None
    system_fingerprint: str | None = None
    done: bool = False
    error: bool = False
    _choices: dict[int, dict[str, Any]] = field(default_factory=dict)

    def feed(self, data: str) -> None:
        if data == DONE:
            self.done = True
            return
        try:
            chunk = json.loads(data)
        except json.JSONDecodeError:
            self.error = True
            return
        if not isinstance(chunk, dict) or "error" in chunk:
            self.error = True
            return
        self.model = chunk.get("model") or self.model
        self.system_fingerprint = chunk.get("system_fingerprint") or self.system_fingerprint
        if chunk.get("usage"):
            self.usage = chunk["usage"]
        for choice in chunk.get("choices") or []:
            self._merge(choice)

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
            slot = self._choices.setdefault(index, {"index": index, "text": "", "logprobs": None, "finish_reason": None})
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


def _new_id(endpoint: str) -> str:
    return ("chatcmpl-" if endpoint == "chat" else "cmpl-") + "cache" + secrets.token_hex(12)
