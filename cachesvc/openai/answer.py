"""A model's answer in one canonical form: built from a JSON response or a stream, rendered as either.

Storing the answer rather than the bytes lets a streamed miss serve a later non-streamed hit and the other way
round, and gives every replay a fresh id and timestamp.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from cachesvc.openai import codec
from cachesvc.openai.protocol import Endpoint, completion_id, text_parts
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

    def text(self) -> str:
        """The first choice's text (chat message content or completion text); "" when it has none."""
        if not self.choices:
            return ""
        choice = self.choices[0]
        if self.endpoint == "completions":
            return str(choice.get("text") or "")
        parts = text_parts((choice.get("message") or {}).get("content"))
        return "".join(parts) if parts else ""

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
        """From a non-streamed response body; ValueError (saying what is wrong) when it is not a well-formed one."""
        if not isinstance(body, dict):
            raise ValueError("the response is not a JSON object")
        problem = envelope_problem(body)
        if problem is not None:
            raise ValueError(problem)
        choices = body.get("choices")
        if not isinstance(choices, list):
            raise ValueError("its choices are not a list")
        for i, choice in enumerate(choices):
            problem = choice_problem(endpoint, choice, "message")
            if problem is not None:
                raise ValueError(f"choices[{i}]: {problem}")
        return cls(endpoint, body.get("model") or "", choices, body.get("usage"), body.get("system_fingerprint"))

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


# The shapes of the wire format that an Answer is built from. Each function returns what is wrong (None: nothing),
# so a malformed upstream answer becomes an error for the client instead of an exception in the proxy. A field
# listed may also be null or absent; fields not listed are not looked at.

_KIND_NAMES: dict[type, str] = {str: "a string", dict: "an object", list: "a list"}
_ENVELOPE_FIELDS: dict[str, type] = {"model": str, "usage": dict, "system_fingerprint": str}
_CHOICE_FIELDS: dict[str, type] = {"finish_reason": str, "logprobs": dict}
_COMPLETION_CHOICE_FIELDS: dict[str, type] = {**_CHOICE_FIELDS, "text": str}
_MESSAGE_FIELDS: dict[str, type] = {"role": str, "content": str, "refusal": str, "reasoning_content": str,
                                    "function_call": dict, "tool_calls": list}
_TOOL_CALL_FIELDS: dict[str, type] = {"id": str, "type": str, "function": dict}
_FUNCTION_FIELDS: dict[str, type] = {"name": str, "arguments": str}


def _is_index(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _fields_problem(obj: dict[str, Any], fields: dict[str, type], where: str) -> str | None:
    """The first field of ``obj`` named in ``fields`` whose value is neither null nor of its kind (walking the
    smaller of the two: this runs for every chunk of every stream)."""
    if len(obj) < len(fields):
        for key, value in obj.items():
            kind = fields.get(key)
            if kind is not None and value is not None and not isinstance(value, kind):
                return f"{where}{key} is not {_KIND_NAMES[kind]}"
        return None
    for key, kind in fields.items():
        value = obj.get(key)
        if value is not None and not isinstance(value, kind):
            return f"{where}{key} is not {_KIND_NAMES[kind]}"
    return None


def envelope_problem(body: dict[str, Any]) -> str | None:
    """What is wrong with the fields around the choices of a body or a chunk (model, usage, fingerprint)."""
    return _fields_problem(body, _ENVELOPE_FIELDS, "")


def choice_problem(endpoint: Endpoint, choice: Any, part: str) -> str | None:
    """What is wrong with one choice of a body (``part`` "message") or of a stream chunk (``part`` "delta")."""
    if not isinstance(choice, dict):
        return "a choice is not an object"
    if "index" in choice and not _is_index(choice["index"]):
        return "index is not a non-negative integer"
    if endpoint != "chat":
        return _fields_problem(choice, _COMPLETION_CHOICE_FIELDS, "")
    problem = _fields_problem(choice, _CHOICE_FIELDS, "")
    logprobs = choice.get("logprobs")
    if problem is None and logprobs:
        problem = _fields_problem(logprobs, {"content": list}, "logprobs.")
    return problem or message_problem(choice.get(part), part)


def message_problem(message: Any, part: str = "message") -> str | None:
    """What is wrong with a chat ``message`` (or a stream's ``delta``: the same fields, each a piece)."""
    if message is None:
        return None if part == "delta" else "message is missing"
    if not isinstance(message, dict):
        return f"{part} is not an object"
    problem = _fields_problem(message, _MESSAGE_FIELDS, f"{part}.")
    for call in (message.get("tool_calls") or ()) if problem is None else ():
        problem = tool_call_problem(call, part)
        if problem is not None:
            break
    return problem


def tool_call_problem(call: Any, part: str = "message") -> str | None:
    """What is wrong with one of a message's (or a delta's) ``tool_calls``."""
    where = f"{part}.tool_calls[]."
    if not isinstance(call, dict):
        return f"{part}.tool_calls holds something that is not an object"
    if "index" in call and not _is_index(call["index"]):
        return f"{where}index is not a non-negative integer"
    problem = _fields_problem(call, _TOOL_CALL_FIELDS, where)
    function = call.get("function")
    if problem is None and function:
        problem = _fields_problem(function, _FUNCTION_FIELDS, f"{where}function.")
    return problem
