"""Per-request cache controls, from HTTP headers or a `cachesvc` object in the body.

Headers: `Cache-Control: no-cache | no-store | max-age=N`, `x-cachesvc-ttl: N`, `x-cachesvc-namespace: NAME`,
`x-cachesvc-category: NAME`, `x-cachesvc-sampled: true`. Body (e.g. the openai client's `extra_body`):
`{"cachesvc": {"no_cache": true, "no_store": true, "max_age": N, "ttl": N, "namespace": "...",
"category": "...", "sampled": true}}`. A header wins over the body.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cachesvc.openai.errors import RequestError

_NAME = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
_DECIMAL = re.compile(r"[0-9]{1,12}(\.[0-9]{1,9})?")  # seconds as a header or option string writes them


@dataclass(frozen=True)
class CacheControls:
    no_cache: bool = False  # don't read the cache (do write the fresh answer)
    no_store: bool = False  # neither read nor write
    max_age_s: float | None = None  # accept only entries younger than this
    ttl_s: float | None = None  # lifetime of the entry this request writes
    namespace: str | None = None
    category: str | None = None  # overrides the classifier
    sampled: bool = False  # cache even though temperature makes the answer a sample

    @property
    def may_read(self) -> bool:
        return not (self.no_cache or self.no_store)

    @property
    def may_write(self) -> bool:
        return not self.no_store


def parse_controls(headers: Mapping[str, str], body: Mapping[str, Any], categories: Mapping[str, Any]) -> CacheControls:
    """Read the controls; a malformed one is a 400 naming it, never silently ignored."""
    options = body.get("cachesvc")
    if options is None:
        options = {}
    if not isinstance(options, dict):
        raise RequestError(400, "'cachesvc' must be an object.", param="cachesvc")
    unknown = set(options) - {"no_cache", "no_store", "max_age", "ttl", "namespace", "category", "sampled"}
    if unknown:
        raise RequestError(400, f"Unknown cachesvc option(s): {sorted(unknown)}.", param="cachesvc")

    no_cache = _flag(options, "no_cache")
    no_store = _flag(options, "no_store")
    max_age = _seconds(options.get("max_age"), "cachesvc.max_age", allow_zero=True)
    for directive in _directives(headers.get("Cache-Control", "")):
        name, _, value = directive.partition("=")
        if name == "no-cache":
            no_cache = True
        elif name == "no-store":
            no_store = True
        elif name == "max-age":
            max_age = _seconds(value.strip('"'), "Cache-Control max-age", allow_zero=True)

    ttl = _seconds(headers.get("x-cachesvc-ttl", options.get("ttl")), "x-cachesvc-ttl")
    namespace = _name(headers.get("x-cachesvc-namespace", options.get("namespace")), "x-cachesvc-namespace")
    category = _name(headers.get("x-cachesvc-category", options.get("category")), "x-cachesvc-category")
    if category is not None and category not in categories:
        raise RequestError(
            400, f"x-cachesvc-category: unknown cache category {category!r}; known: {sorted(categories)}.",
            param="x-cachesvc-category",
        )
    sampled_header = headers.get("x-cachesvc-sampled")
    sampled = _truthy(sampled_header, "x-cachesvc-sampled") if sampled_header is not None else _flag(options, "sampled")
    return CacheControls(no_cache, no_store, max_age, ttl, namespace, category, sampled)


def _directives(value: str) -> list[str]:
    return [d.strip().lower() for d in value.split(",") if d.strip()]


def _flag(options: Mapping[str, Any], key: str) -> bool:
    value = options.get(key, False)
    if not isinstance(value, bool):
        raise RequestError(400, f"cachesvc.{key} must be a boolean.", param=f"cachesvc.{key}")
    return value


def _truthy(value: str, what: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes"):
        return True
    if lowered in ("0", "false", "no"):
        return False
    raise RequestError(400, f"{what} must be true or false.", param=what)


def _seconds(value: Any, what: str, *, allow_zero: bool = False) -> float | None:
    if value is None:
        return None
    if isinstance(value, str) and not _DECIMAL.fullmatch(value.strip()):
        raise RequestError(400, f"{what} must be a number of seconds.", param=what)  # no "inf", "1_0", "٣"
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise RequestError(400, f"{what} must be a number of seconds.", param=what) from None
    if isinstance(value, bool) or not math.isfinite(seconds) or seconds < 0 or (seconds == 0 and not allow_zero):
        raise RequestError(400, f"{what} must be a {'non-negative' if allow_zero else 'positive'} number of seconds.",
                           param=what)
    return seconds


def _name(value: Any, what: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise RequestError(400, f"{what} must be 1-64 characters of letters, digits and _.:-", param=what)
    return value
