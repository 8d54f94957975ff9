"""The model server's response bodies and SSE chunks, field for field as vLLM writes them (``stop_reason``
included), plus a ``kv_cache`` object reporting what the KV eviction kept. The envelope is the shared wire
format's (``cachesvc.openai.responses``)."""

from __future__ import annotations

from typing import Any

from cachesvc.model_server.generation import Finished, KVUsage
from cachesvc.openai.responses import ResponseBuilder


def usage_of(done: Finished) -> dict[str, int]:
    return {"prompt_tokens": done.prompt_tokens, "completion_tokens": done.completion_tokens,
            "total_tokens": done.prompt_tokens + done.completion_tokens}


def kv_headers(kv: KVUsage) -> dict[str, str]:
    """Response headers with the KV accounting, so a client sees it on streams before the first token."""
    return {"x-kv-policy": kv.policy or "none", "x-kv-entries-kept": str(kv.entries_kept),
            "x-kv-entries-full": str(kv.entries_full), "x-kv-bytes-kept": str(kv.bytes_kept)}


def completion_body(out: ResponseBuilder, text: str, done: Finished) -> dict[str, Any]:
    """A non-streamed response."""
    choice = out.final_choice(0, text, done.finish_reason, stop_reason=done.stop_reason)
    return out.body([choice], usage_of(done), kv_cache=done.kv.as_dict())


def role_chunk(out: ResponseBuilder) -> dict[str, Any]:
    """The first chat chunk: the role, empty content."""
    return out.chunk(out.delta(0, {"role": "assistant", "content": ""}))


def text_chunk(out: ResponseBuilder, text: str) -> dict[str, Any]:
    return out.chunk(out.piece(0, text))


def final_chunk(out: ResponseBuilder, done: Finished) -> dict[str, Any]:
    return out.chunk(out.piece(0, "", done.finish_reason, stop_reason=done.stop_reason), kv_cache=done.kv.as_dict())
