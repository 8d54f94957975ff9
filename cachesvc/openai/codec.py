"""JSON in and out, with orjson: every request body, response body and SSE chunk passes through these functions.

orjson is stricter than the standard library where JSON itself is: ``NaN``, ``Infinity`` and unpaired surrogates are
refused on input, so nothing that cannot be written back out is ever accepted.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson

JSONDecodeError = orjson.JSONDecodeError  # a ValueError
JSONEncodeError = orjson.JSONEncodeError  # a TypeError
MAX_DEPTH = 64  # nesting a request body may have; orjson itself stops at 1024


class TooDeep(JSONDecodeError):
    """A document that nests arrays and objects deeper than ``MAX_DEPTH``."""


def loads(data: bytes | bytearray | memoryview | str) -> Any:
    """Parse one JSON document; ``TooDeep`` (a ``JSONDecodeError``) past ``MAX_DEPTH`` levels of nesting."""
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        if str(exc).startswith("depth limit exceeded"):  # orjson's own bound (1024)
            raise TooDeep(f"nested deeper than {MAX_DEPTH} levels", exc.doc, exc.pos) from None
        raise
    if _brackets(data) > MAX_DEPTH and depth(value) > MAX_DEPTH:  # fewer brackets cannot nest deeper: no walk
        raise TooDeep(f"nested deeper than {MAX_DEPTH} levels", "", 0)
    return value


def _brackets(data: bytes | bytearray | memoryview | str) -> int:
    """Opening brackets in the text, strings included (counted in C): a bound on how deeply it can nest."""
    if isinstance(data, memoryview):
        data = bytes(data)
    if isinstance(data, str):
        return data.count("{") + data.count("[")
    return data.count(b"{") + data.count(b"[")


def depth(value: Any, limit: int = MAX_DEPTH) -> int:
    """How deeply arrays and objects nest in ``value`` (a scalar is 0), counted up to ``limit + 1`` at most: the
    walk stops as soon as the limit is passed, and visits each container once (no recursion)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        node, level = stack.pop()
        if not isinstance(node, (dict, list)):
            continue
        children: Iterable[Any] = node.values() if isinstance(node, dict) else node
        level += 1
        if level > limit:
            return level
        deepest = max(deepest, level)
        stack.extend((child, level) for child in children if isinstance(child, (dict, list)))
    return deepest


def dumps(value: Any) -> bytes:
    """Compact UTF-8 JSON, as OpenAI and vLLM write it (dataclasses are written as objects)."""
    return orjson.dumps(value)


def canonical(value: Any) -> bytes:
    """JSON with sorted keys: equal values give equal bytes, so it can be hashed into a cache key."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
