"""JSON in and out, with orjson: every request body, response body and SSE chunk passes through these functions.

orjson is stricter than the standard library where JSON itself is: ``NaN``, ``Infinity`` and unpaired surrogates are
refused on input, so nothing that cannot be written back out is ever accepted.
"""

from __future__ import annotations

from typing import Any

import orjson

JSONDecodeError = orjson.JSONDecodeError  # a ValueError
JSONEncodeError = orjson.JSONEncodeError  # a TypeError


def loads(data: bytes | bytearray | memoryview | str) -> Any:
    """Parse one JSON document."""
    return orjson.loads(data)


def dumps(value: Any) -> bytes:
    """Compact UTF-8 JSON, as OpenAI and vLLM write it (dataclasses are written as objects)."""
    return orjson.dumps(value)


def canonical(value: Any) -> bytes:
    """JSON with sorted keys: equal values give equal bytes, so it can be hashed into a cache key."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
