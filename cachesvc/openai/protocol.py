"""What OpenAI's completion endpoints are called and how their objects are named and identified."""

from __future__ import annotations

import secrets
from typing import Any, Literal

Endpoint = Literal["chat", "completions"]

# The path of each endpoint below an OpenAI-compatible base URL (``.../v1``).
ENDPOINT_PATHS: dict[Endpoint, str] = {"chat": "chat/completions", "completions": "completions"}


def object_kind(endpoint: Endpoint, *, stream: bool) -> str:
    """The ``object`` field of a body or chunk."""
    if endpoint == "chat":
        return "chat.completion.chunk" if stream else "chat.completion"
    return "text_completion"


def completion_id(endpoint: Endpoint, tag: str = "") -> str:
    """A fresh id in OpenAI's form (``chatcmpl-...`` / ``cmpl-...``); ``tag`` marks who made it (``cache``)."""
    return ("chatcmpl-" if endpoint == "chat" else "cmpl-") + tag + secrets.token_hex(16)


def text_parts(content: Any) -> list[str] | None:
    """The texts of a message's ``content`` (a string, or an array of ``{"type": "text"}`` parts); None when it
    carries anything else (an image, audio, a file) or is not content at all."""
    if isinstance(content, str):
        return [content]
    if not isinstance(content, list):
        return None
    texts = []
    for part in content:
        if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
            return None
        texts.append(part["text"])
    return texts
