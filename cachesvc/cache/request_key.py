"""Validate an OpenAI request body and split it into what must match exactly and what may match semantically.

Two requests may share an answer only if they agree on everything that shapes it: tenant, namespace, endpoint,
model, system prompt, the conversation before the last user turn, tools, response_format and sampling
parameters. Only the last user message is compared by meaning.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

from cachesvc.openai import codec
from cachesvc.openai.errors import RequestError
from cachesvc.openai.protocol import Endpoint, text_parts

# Body fields that do not change the answer: left out of the fingerprint.
_NOT_ANSWER_SHAPING = frozenset({"stream", "stream_options", "user", "metadata", "store", "service_tier", "cachesvc"})
_ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
_NUMBER_PARAMS = ("temperature", "top_p", "presence_penalty", "frequency_penalty", "repetition_penalty", "min_p")
_INT_PARAMS = ("max_tokens", "max_completion_tokens", "n", "seed", "top_k", "top_logprobs", "logprobs_count")
_WS = re.compile(r"\s+")


@dataclass(frozen=True)
class CacheRequest:
    """A validated request, with the keys the cache needs."""

    endpoint: Endpoint
    body: dict[str, Any]  # what is forwarded upstream (our own `cachesvc` field removed)
    model: str
    stream: bool
    include_usage: bool  # stream_options.include_usage: the replay must end with a usage chunk
    temperature: float | None
    query: str | None  # the text matched semantically; None: exact tier only
    fingerprint: str  # hash of everything but the query; requests that differ here never share an answer
    has_tools: bool

    def partition(self, tenant: str, namespace: str) -> str:
        """The scope inside which answers may be shared."""
        return _sha(f"{tenant}\x1f{namespace}\x1f{self.endpoint}\x1f{self.fingerprint}")

    def exact_key(self, partition: str) -> str:
        """Key of the exact tier: the partition plus the whitespace-normalized query. Without a query the
        fingerprint already holds the whole conversation or prompt, so the partition alone is the key (and fields
        that do not shape the answer, ``stream`` among them, leave it alone here too)."""
        if self.query is None:
            return _sha(f"{partition}\x1e")  # never a query's key: those have \x1f at the same place
        return _sha(f"{partition}\x1f{normalize_whitespace(self.query)}")


def normalize_whitespace(text: str) -> str:
    return _WS.sub(" ", text).strip()


def parse_request(endpoint: Endpoint, body: Any) -> CacheRequest:
    """Check the fields the proxy relies on (clear 400s naming the parameter) and build the cache keys."""
    if not isinstance(body, dict):
        raise RequestError(400, "The request body must be a JSON object.")
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise RequestError(400, "'model' is required and must be a non-empty string.", param="model")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise RequestError(400, "'stream' must be a boolean.", param="stream")
    stream_options = body.get("stream_options")
    if stream_options is not None and not isinstance(stream_options, dict):
        raise RequestError(400, "'stream_options' must be an object.", param="stream_options")
    _check_params(body)

    query, split = _split_chat(body) if endpoint == "chat" else _split_completion(body)
    split_field = "messages" if endpoint == "chat" else "prompt"
    fields = {k: v for k, v in body.items() if k not in _NOT_ANSWER_SHAPING and k != split_field}
    try:
        # Two parts, so that no body field can pose as a part of the split (a top-level "last_user_extra").
        fingerprint = hashlib.sha256(codec.canonical({"fields": fields, "split": split})).hexdigest()
        codec.dumps({k: body[k] for k in body.keys() & _NOT_ANSWER_SHAPING if k != "cachesvc"})  # forwarded too
    except codec.JSONEncodeError:  # nested deeper than orjson writes (it reads deeper than that)
        raise RequestError(400, "The request body nests arrays and objects too deeply.",
                           code="too_deeply_nested") from None
    forwarded = {k: v for k, v in body.items() if k != "cachesvc"}
    tools = body.get("tools") or body.get("functions")
    return CacheRequest(
        endpoint=endpoint,
        body=forwarded,
        model=model,
        stream=stream,
        include_usage=bool(stream_options and stream_options.get("include_usage")),
        temperature=body.get("temperature"),
        query=query,
        fingerprint=fingerprint,
        has_tools=bool(tools),
    )


def _check_params(body: dict[str, Any]) -> None:
    for name in _NUMBER_PARAMS:
        value = body.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise RequestError(400, f"'{name}' must be a number.", param=name)
    temperature = body.get("temperature")
    if temperature is not None and not 0 <= temperature <= 2:
        raise RequestError(400, "'temperature' must be between 0 and 2.", param="temperature")
    for name in _INT_PARAMS:
        value = body.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise RequestError(400, f"'{name}' must be an integer.", param=name)
    for name in ("max_tokens", "max_completion_tokens", "n"):
        value = body.get(name)
        if value is not None and value < 1:
            raise RequestError(400, f"'{name}' must be at least 1.", param=name)
    stop = body.get("stop")
    if stop is not None and not isinstance(stop, str) and not (
        isinstance(stop, list) and all(isinstance(s, str) for s in stop)
    ):
        raise RequestError(400, "'stop' must be a string or a list of strings.", param="stop")
    for name in ("tools", "functions"):
        value = body.get(name)
        if value is not None and not isinstance(value, list):
            raise RequestError(400, f"'{name}' must be an array.", param=name)
    response_format = body.get("response_format")
    if response_format is not None and not isinstance(response_format, dict):
        raise RequestError(400, "'response_format' must be an object.", param="response_format")


def _split_chat(body: dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise RequestError(400, "'messages' is required and must be a non-empty array.", param="messages")
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise RequestError(400, f"messages[{i}] must be an object.", param=f"messages[{i}]")
        role = message.get("role")
        if not isinstance(role, str) or role not in _ROLES:  # (an array or object is unhashable: a TypeError)
            raise RequestError(400, f"messages[{i}].role must be one of {sorted(_ROLES)}.", param=f"messages[{i}].role")
        content = message.get("content")
        if content is None and role not in ("assistant", "function"):
            raise RequestError(400, f"messages[{i}].content is required.", param=f"messages[{i}].content")
        if content is not None and not isinstance(content, (str, list)):
            raise RequestError(400, f"messages[{i}].content must be a string or an array of parts.",
                               param=f"messages[{i}].content")
        if isinstance(content, list):
            _check_parts(content, i)
    last = messages[-1]
    parts = text_parts(last.get("content")) if last.get("role") == "user" else None
    query = "\n".join(parts) if parts else None
    if query is None:
        # Not a plain user question (tool result, image, assistant prefill): exact tier only.
        return None, {"messages": messages}
    return query, {"messages": messages[:-1], "last_user_extra": {k: v for k, v in last.items() if k != "content"}}


def _check_parts(parts: list[Any], i: int) -> None:
    """Each part of a message's content is an object naming its type; a text part's text is a string."""
    for k, part in enumerate(parts):
        where = f"messages[{i}].content[{k}]"
        if not isinstance(part, dict) or not isinstance(part.get("type"), str):
            raise RequestError(400, f"{where} must be an object with a string 'type'.", param=where)
        if part["type"] == "text" and not isinstance(part.get("text"), str):
            raise RequestError(400, f"{where}.text must be a string.", param=f"{where}.text")


def _split_completion(body: dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
    prompt = body.get("prompt")
    if isinstance(prompt, str):
        return prompt, {"prompt_kind": "text"}
    if isinstance(prompt, list) and prompt:
        # Token arrays and batches of prompts: exact tier only.
        return None, {"prompt": prompt}
    raise RequestError(400, "'prompt' is required and must be a string or a non-empty array.", param="prompt")


def _sha(text: str) -> str:
    # surrogatepass: a tenant may come from a header, which aiohttp decodes with surrogateescape; valid text
    # encodes as plain UTF-8.
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
